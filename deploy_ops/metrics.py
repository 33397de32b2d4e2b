"""Delivery metrics from the deployment records: one computation for the dashboard and ``deploy_report``.

Over a window of N days ending now:

- deploys per week: finished deploys (not the running one, not one refused before it changed
  anything) divided by N/7;
- change failure rate: the share of those deploys that did not end serving the new release
  (failed, rolled back, rollback failed or unverified, interrupted);
- time to restore: for each such failure, from its start to the moment a good release served
  again: its own end when it rolled back by itself, else the end of the next record (a deploy,
  rollback or restore) that succeeded; a failure nothing has repaired yet is counted as open;
- lead time for changes: for each successful deploy, from the deployed commit's time (read from
  git in PROJECT_DIR) to the deploy's end.

Times are medians in seconds, or None where there is nothing to measure.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from django.utils import timezone
from django.utils.translation import gettext as _

from . import humanize
from .conf import ops_settings
from .exceptions import GitError
from .models import DeploymentRecord

Status = DeploymentRecord.Status
WINDOWS = (7, 30, 90)
SUCCESSES = (Status.SUCCEEDED, Status.SUCCEEDED_WITH_WARNINGS)
FAILURES = (Status.FAILED, Status.ROLLED_BACK, Status.ROLLBACK_FAILED, Status.ROLLBACK_UNVERIFIED, Status.INTERRUPTED)
# Not deployments: still going, or stopped before anything changed.
NOT_DEPLOYED = (Status.RUNNING, Status.REFUSED)


@dataclass(frozen=True)
class DeliveryMetrics:
    days: int
    since: datetime
    deploys: int
    deploys_per_week: float
    failed_deploys: int
    change_failure_rate: float | None
    restored: int
    still_failing: int
    time_to_restore: float | None
    lead_time_samples: int
    lead_time: float | None

    def as_json(self) -> dict:
        data = asdict(self)
        data["since"] = self.since.isoformat()
        return data


class CommitTimes:
    """Commit times from the checkout's git history, read once per sha; None when git cannot tell."""

    def __init__(self):
        self._times: dict[str, datetime | None] = {}
        self._repo = None

    def __call__(self, sha: str) -> datetime | None:
        if sha not in self._times:
            self._times[sha] = self._read(sha)
        return self._times[sha]

    def _read(self, sha: str) -> datetime | None:
        import git  # only the dashboard reads commit times: no GitPython in every manage.py start-up

        from .gitrepo import Checkout

        if not sha:
            return None
        try:
            if self._repo is None:
                self._repo = Checkout(ops_settings.project_dir).repo
            return self._repo.commit(sha).committed_datetime
        except (GitError, git.BadName, git.BadObject, ValueError):
            return None


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 1) if values else None


def _restored_at(failure: DeploymentRecord, later: list[DeploymentRecord]) -> datetime | None:
    if failure.status == Status.ROLLED_BACK:
        return failure.finished_at
    for record in later:
        if record.started_at >= failure.started_at and record.status in SUCCESSES and record.finished_at:
            return record.finished_at
    return None


def delivery_metrics(days: int, now: datetime | None = None, commit_times: CommitTimes | None = None) -> DeliveryMetrics:
    now = now or timezone.now()
    since = now - timedelta(days=days)
    commit_times = commit_times or CommitTimes()
    records = list(DeploymentRecord.objects.filter(started_at__gte=since, started_at__lte=now).order_by("started_at"))
    deploys = [r for r in records if r.kind == DeploymentRecord.Kind.DEPLOY and r.status not in NOT_DEPLOYED]
    failures = [r for r in deploys if r.status in FAILURES]
    restore_times, still_failing = [], 0
    for failure in failures:
        restored_at = _restored_at(failure, [r for r in records if r.started_at > failure.started_at])
        if restored_at is None:
            still_failing += 1
        else:
            restore_times.append((restored_at - failure.started_at).total_seconds())
    lead_times = []
    for deploy in deploys:
        if deploy.status not in SUCCESSES or deploy.finished_at is None:
            continue
        committed_at = commit_times(deploy.to_commit)
        if committed_at is not None:
            lead_times.append(max(0.0, (deploy.finished_at - committed_at).total_seconds()))
    return DeliveryMetrics(
        days=days,
        since=since,
        deploys=len(deploys),
        deploys_per_week=round(len(deploys) / (days / 7), 1),
        failed_deploys=len(failures),
        change_failure_rate=round(len(failures) / len(deploys), 3) if deploys else None,
        restored=len(restore_times),
        still_failing=still_failing,
        time_to_restore=_median(restore_times),
        lead_time_samples=len(lead_times),
        lead_time=_median(lead_times),
    )


def every_window(now: datetime | None = None) -> list[DeliveryMetrics]:
    now = now or timezone.now()
    commit_times = CommitTimes()
    return [delivery_metrics(days, now, commit_times) for days in WINDOWS]


def describe(window: DeliveryMetrics) -> list[tuple[str, str]]:
    """The metrics as (label, value) lines, as the dashboard shows them."""
    failures = _("%(failed)d of %(deploys)d") % {"failed": window.failed_deploys, "deploys": window.deploys}
    restore = humanize.duration(window.time_to_restore)
    if window.still_failing:
        restore += " " + _("(%(open)d not restored yet)") % {"open": window.still_failing}
    return [
        (_("Deploys"), str(window.deploys)),
        (_("Deploys per week"), humanize.decimal(window.deploys_per_week, "g")),
        (_("Change failure rate"), f"{humanize.percent(window.change_failure_rate)} ({failures})"),
        (_("Time to restore (median)"), restore),
        (_("Lead time (median)"), humanize.duration(window.lead_time)),
    ]
