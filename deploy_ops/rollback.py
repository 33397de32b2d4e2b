"""Manual recovery: the plans behind ``manage.py rollback``, built from the deploy's undo steps.

Everything that can be checked is checked before anything changes (the commit exists, the
backup exists, verifies and is of this engine, the lock is free); a refusal changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.utils.timesince import timesince
from django.utils.translation import gettext as _

from . import children, signals
from .audit import Recorder
from .backups import Backup, check_restorable, file_sha256, find_backup, list_backups
from .cli import BackupListing
from .conf import ops_settings
from .exceptions import (
    EXIT_NEEDS_HUMAN,
    EXIT_OK,
    BackupCorrupt,
    DeployOpsError,
    HealthUnverified,
    PreflightFailed,
)
from .gitrepo import Checkout
from .humanize import decimal
from .lock import DeployLock, acquire_lock, inspect_lock, take_over, work_left_behind
from .migration_safety import STOP_FIRST, ZERO_DOWNTIME, blocking_operations, classify_applied
from .migration_targets import migrations_to_unapply, refuse_forward_migrations
from .models import DeploymentRecord
from .notifications import Level, notify
from .probe import probe_health
from .proxy import configured_proxy
from .proxy.serving import serving_release, serving_service_states
from .recovery import (
    FAILED,
    ROLLBACK_RUN,
    SUCCEEDED,
    Operation,
    Progress,
    describe_failure,
    emit,
    end_own_work,
    find_slots,
    finished_duration,
    how_images_come_back,
    images_kept,
    recover,
    remove_unrouted_slots,
    slot_beside,
)
from .runtimes import get_runtime
from .stages import (
    COLLECT_STATIC,
    RESTORE_DATABASE,
    RESTORE_IMAGES,
    RETIRE_OLD_RELEASE,
    REVERT_CODE,
    SAFETY_BACKUP,
    START_BESIDE,
    START_SERVICES,
    STOP_SERVICES,
    SWITCH_TRAFFIC,
    UNAPPLY_MIGRATIONS,
    VERIFY_HEALTH,
    stage_label,
)

SENDER = "deploy_ops.rollback"
CODE_STEPS = {REVERT_CODE, STOP_SERVICES, RESTORE_IMAGES, START_SERVICES, COLLECT_STATIC, VERIFY_HEALTH}
DATABASE_STEPS = {STOP_SERVICES, RESTORE_DATABASE, START_SERVICES, VERIFY_HEALTH}


@dataclass
class RollbackPlan:
    """What a rollback will do, decided and validated before anything changes."""

    commit: str = ""
    commit_summary: str = ""
    backup: Backup | None = None
    reason: str = ""
    steps: set[str] = field(default_factory=set)
    # For a code-only rollback past migrations: what to unapply, and the migrate targets.
    unapplied: list[str] = field(default_factory=list)
    migration_targets: list[tuple[str, str]] = field(default_factory=list)
    # Set when the backup was chosen from a record: the file must still be the one that record took.
    recorded_sha256: str = ""

    def describe(self) -> list[str]:
        lines = []
        if self.commit:
            how = how_images_come_back(get_runtime(), self.commit)
            lines.append(
                _("code: check out %(sha)s (%(summary)s) and %(how)s")
                % {"sha": self.commit[:12], "summary": self.commit_summary, "how": how}
            )
        if self.unapplied:
            commands = "; ".join(f"migrate {label} {name}" for label, name in self.migration_targets)
            lines.append(
                _("database: take a safety backup, then unapply %(migrations)s (%(commands)s) while their files are still here")
                % {"migrations": ", ".join(self.unapplied), "commands": commands}
            )
        if self.backup:
            lines.append(_("database: take a safety backup, then restore %(name)s") % {"name": self.backup.name})
            lines.append(
                "  "
                + _(
                    "%(name)s is %(age)s old (taken %(taken)s): every write made since then will be replaced (the safety backup keeps them)"
                )
                % {
                    "name": self.backup.name,
                    "age": timesince(self.backup.created_at),
                    "taken": f"{self.backup.created_at:%Y-%m-%d %H:%M:%S %Z}",
                }
            )
        if self.reason:
            lines.append(_("why: %(reason)s") % {"reason": self.reason})
        if START_BESIDE in self.steps:
            lines.append(
                _(
                    "then: start it beside the serving release, verify its health there, switch the proxy to it, and stop the release it "
                    "leaves"
                )
            )
        elif ops_settings.PROXY and self.steps & {STOP_SERVICES}:
            lines.append(
                _(
                    "then: start the services and verify their health; meanwhile the proxy answers 503 with Retry-After, "
                    "and it gets the traffic again once they are verified"
                )
            )
        else:
            lines.append(_("then: start the services and verify their health"))
        return lines


def _checkout() -> Checkout:
    return Checkout(ops_settings.project_dir)


def resolve_commit(ref: str) -> tuple[str, str]:
    checkout = _checkout()
    checkout.refuse_if_dirty(_("moving the code would have to overwrite them"))
    info = checkout.resolve(ref, ops_settings.GIT_REMOTE)
    return info.sha, info.summary


def usable_backup(name_or_path: str) -> Backup:
    """The backup, verified, of this database's engine, restorable as things stand; a refusal (exit 3) otherwise."""
    backup = find_backup(name_or_path)
    check_restorable(backup, ops_settings.BACKUP_DATABASE)
    return backup


def plan_commit(ref: str) -> RollbackPlan:
    sha, summary = resolve_commit(ref)
    refuse_forward_migrations(sha, ref)
    plan = RollbackPlan(commit=sha, commit_summary=summary, steps=set(CODE_STEPS), reason=_("code back to %(ref)s") % {"ref": ref})
    plan.unapplied, plan.migration_targets = migrations_to_unapply(sha)
    if plan.migration_targets:
        plan.steps.add(UNAPPLY_MIGRATIONS)
    return without_downtime(plan)


# Blue/green: the release comes back beside the serving one; nothing stops, the database stays.
BESIDE_STEPS = {REVERT_CODE, RESTORE_IMAGES, COLLECT_STATIC, START_BESIDE, VERIFY_HEALTH, SWITCH_TRAFFIC, RETIRE_OLD_RELEASE}


def without_downtime(plan: RollbackPlan) -> RollbackPlan:
    """The plan as a rollback without downtime where it can be one: the code goes back, a proxy
    switches between two slots, the release's images are kept, and every migration applied since
    that release is backward compatible (its schema still serves the old code), so neither an
    unapply nor a restore is needed.  Otherwise the plan as it was (stop-first), and why."""
    runtime = get_runtime()
    beside = slot_beside(runtime) if plan.commit else None
    if beside is None or images_kept(runtime, plan.commit) is not True:
        return plan
    applied_since = plan.unapplied or migrations_to_unapply(plan.commit)[0]
    verdicts = classify_applied(applied_since)
    if blocking_operations(verdicts) or any(migration.after_switch for migration in verdicts):
        plan.reason += "\n" + _(
            "Not without downtime: a migration applied since %(commit)s could break it (see `deploy --dry-run`), "
            "so the database goes back as well."
        ) % {"commit": plan.commit[:12]}
        return plan
    if applied_since:
        database = _("the migrations applied since (%(names)s) are backward compatible, so the schema and the data still serve it") % {
            "names": ", ".join(applied_since)
        }
    else:
        database = _("no migration was applied since, so the schema and the data still serve it")
    plan.reason += "\n" + _(
        "Without downtime: %(commit)s starts in slot %(slot)s beside the serving release, and the proxy switches once it is "
        "verified. The database is not restored: %(database)s."
    ) % {"commit": plan.commit[:12], "slot": beside[1], "database": database}
    plan.steps, plan.backup, plan.recorded_sha256 = set(BESIDE_STEPS), None, ""
    plan.unapplied, plan.migration_targets = [], []
    return plan


def plan_backup(name_or_path: str) -> RollbackPlan:
    return RollbackPlan(
        backup=usable_backup(name_or_path), steps=set(DATABASE_STEPS), reason=_("database back to %(backup)s") % {"backup": name_or_path}
    )


def plan_full(ref: str, name_or_path: str) -> RollbackPlan:
    sha, summary = resolve_commit(ref)
    backup = usable_backup(name_or_path)
    return RollbackPlan(
        commit=sha,
        commit_summary=summary,
        backup=backup,
        steps=CODE_STEPS | DATABASE_STEPS,
        reason=_("code to %(ref)s, database to %(backup)s") % {"ref": ref, "backup": backup.name},
    )


def _successful_deploys():
    return DeploymentRecord.objects.filter(
        kind=DeploymentRecord.Kind.DEPLOY,
        status__in=[DeploymentRecord.Status.SUCCEEDED, DeploymentRecord.Status.SUCCEEDED_WITH_WARNINGS],
    ).order_by("-started_at")


# A deploy in these states did not take its code back, so it may be what brought the current commit
# ("running" is one whose process died: were it alive, the lock would stop this rollback).
BROUGHT_ITS_COMMIT = [
    DeploymentRecord.Status.RUNNING,
    DeploymentRecord.Status.SUCCEEDED,
    DeploymentRecord.Status.SUCCEEDED_WITH_WARNINGS,
    DeploymentRecord.Status.INTERRUPTED,
    DeploymentRecord.Status.FAILED,
    DeploymentRecord.Status.ROLLBACK_FAILED,
]


def quick_target(head: str) -> DeploymentRecord:
    """The deploy that brought ``head``; its ``from_commit`` is the release that served before.

    Records are read newest first.  A rollback that brought ``head`` back means the release it
    left was rolled back away from: it is never a target, and the search goes on to the deploy
    that brought ``head`` in the first place.
    """
    rolled_away: set[str] = set()
    brought_head = DeploymentRecord.objects.filter(to_commit=head).exclude(from_commit=head).order_by("-started_at")
    for record in brought_head:
        if record.kind == DeploymentRecord.Kind.ROLLBACK and record.status != DeploymentRecord.Status.REFUSED:
            rolled_away.add(record.from_commit)
        elif record.kind == DeploymentRecord.Kind.DEPLOY and record.status in BROUGHT_ITS_COMMIT:
            if record.from_commit and record.from_commit not in rolled_away:
                return record
    raise PreflightFailed(
        _(
            "No deploy on record brought the current %(sha)s over an earlier release, so there is no "
            "previous release to go back to. Use --commit SHA and/or --backup NAME."
        )
        % {"sha": head[:12]}
    )


def newest_backup_of(commit: str) -> DeploymentRecord:
    """The newest deploy (whatever its outcome) that backed up the database while ``commit`` served."""
    taker = (
        DeploymentRecord.objects.filter(kind=DeploymentRecord.Kind.DEPLOY, from_commit=commit)
        .exclude(backup_name="")
        .order_by("-started_at")
        .first()
    )
    if taker is None:
        raise PreflightFailed(
            _(
                "No deploy on record backed up the database while %(sha)s was serving. "
                "Use --commit for the code alone, or --full with a backup you choose."
            )
            % {"sha": commit[:12]}
        )
    return taker


def plan_quick() -> RollbackPlan:
    """Back to the release that served before the current one, with the newest backup taken while it served."""
    checkout = _checkout()
    checkout.refuse_if_dirty(_("moving the code would have to overwrite them"))
    head = checkout.head().sha
    bringer = quick_target(head)
    target = bringer.from_commit
    taker = newest_backup_of(target)
    backup = usable_backup(taker.backup_name)
    check_recorded_checksum(backup, taker)
    reason = _(
        "%(target)s was serving when the current %(head)s was deployed (deploy of %(brought_at)s, %(brought_status)s); "
        "%(backup)s is the newest backup taken while it served (by the deploy of %(taken_at)s, %(taken_status)s)."
    ) % {
        "target": target[:12],
        "head": head[:12],
        "brought_at": f"{bringer.started_at:%Y-%m-%d %H:%M}",
        "brought_status": bringer.get_status_display(),
        "backup": backup.name,
        "taken_at": f"{taker.started_at:%Y-%m-%d %H:%M}",
        "taken_status": taker.get_status_display(),
    }
    return without_downtime(
        RollbackPlan(
            commit=target,
            commit_summary=bringer.from_summary or checkout.summary(target),
            backup=backup,
            steps=CODE_STEPS | DATABASE_STEPS,
            reason=reason,
            recorded_sha256=taker.backup_sha256,
        )
    )


def give_back_if_never_switched(operation: Operation, recorder: Recorder, head_sha: str) -> None:
    """A rollback without downtime that failed before its switch: the release it started beside
    is removed and the code goes back to what still serves (best effort: the site never stopped)."""
    names = {stage.name for stage in recorder.stages}
    if START_BESIDE not in names or SWITCH_TRAFFIC in names:
        return
    operation.runtime.slot = None
    try:
        operation.runtime.run_commands(operation.runtime.remove_slot_commands(operation.new_slot))
        operation.checkout.checkout(head_sha)
    except Exception as error:
        operation.warnings.append(_("The release started beside could not be removed: %(error)s") % {"error": describe_failure(error)})


def check_recorded_checksum(backup: Backup, record: DeploymentRecord) -> None:
    """A backup chosen from a record must be the file that record took, not only match its own metadata."""
    if record.backup_sha256 and file_sha256(backup.path) != record.backup_sha256:
        raise BackupCorrupt(
            _(
                "%(name)s is not the backup the %(kind)s %(id)s took: its sha256 differs from the one "
                "on record (the file and its metadata were replaced). Nothing was changed; choose a backup with --full."
            )
            % {"name": backup.name, "kind": record.get_kind_display(), "id": record.id}
        )


def execute(plan: RollbackPlan, report=lambda line, level=1: None, progress: Progress | None = None) -> int:
    """Run a validated plan under the lock, as a recorded rollback; returns the exit code."""
    if not ops_settings.ROLLBACK_ENABLED:
        raise PreflightFailed(_("Rollbacks are disabled (DEPLOY_OPS ROLLBACK_ENABLED is false)."))
    checkout = _checkout()
    recorder = Recorder(DeploymentRecord.Kind.ROLLBACK, requested_ref=plan.commit or (plan.backup.name if plan.backup else ""))
    # The recovery tool may take over a lock whose process died: that is what it is for.
    lock = DeployLock("rollback", str(recorder.record.id), break_stale=True)
    acquire_lock(lock)
    try:
        runtime = get_runtime()
        take_over(lock.broken, runtime, report)
        remove_unrouted_slots(runtime, report)
        head = checkout.head()
        target_sha = plan.commit or head.sha
        recorder.update(
            save=False,
            from_commit=head.sha,
            from_summary=head.summary[:255],
            to_commit=target_sha,
            to_summary=(plan.commit_summary or head.summary)[:255],
            backup_name=plan.backup.name if plan.backup else "",
            backup_sha256=(plan.backup.sha256 or "") if plan.backup else "",
            rollback_reason=plan.reason,
            strategy=ZERO_DOWNTIME if START_BESIDE in plan.steps else STOP_FIRST,
        )
        recorder.save()
        operation = Operation(
            checkout=checkout,
            runtime=runtime,
            recorder=recorder,
            report=report,
            progress=progress,
            health_retries=ops_settings.HEALTH_CHECK_RETRIES,
            health_delay=ops_settings.HEALTH_CHECK_DELAY,
            previous_sha=head.sha,
            target_sha=target_sha,
            backup=plan.backup,
            recorded_sha256=plan.recorded_sha256,
            migration_targets=plan.migration_targets,
        )
        if START_BESIDE in plan.steps and not find_slots(operation):
            raise PreflightFailed(
                _("The proxy no longer sends the traffic to a release, so the rollback cannot start beside it. Nothing was changed.")
            )
        try:
            with children.tracking(str(recorder.record.id)):
                recover(operation, plan.steps, target_sha, plan.backup, safety_backup_required=True)
        except (Exception, KeyboardInterrupt) as error:
            end_own_work(operation)
            give_back_if_never_switched(operation, recorder, head.sha)
            message = describe_failure(error)
            failed = next((stage.name for stage in reversed(recorder.stages) if stage.status == "failed"), "")
            if failed == SAFETY_BACKUP:
                # It runs first: nothing has changed, so this is a refusal, not a failed rollback.
                recorder.finish(DeploymentRecord.Status.REFUSED, failed_stage=failed, error=message)
                raise PreflightFailed(
                    _("No safety backup could be taken, so nothing was restored or changed: %(error)s") % {"error": message}
                ) from None
            if isinstance(error, HealthUnverified):
                recorder.finish(
                    DeploymentRecord.Status.ROLLBACK_UNVERIFIED, failed_stage=failed, error=message, warnings="\n".join(operation.warnings)
                )
                emit(operation, ROLLBACK_RUN, FAILED, _("ROLLBACK NOT VERIFIED: %(error)s") % {"error": message})
                signals.rollback_finished.send(sender=SENDER, record=recorder.record, succeeded=False)
                notify(Level.ROLLBACK_FAILED, recorder)
                raise  # exit 2, saying what is known: not verified, rather than "failed"
            recorder.finish(
                DeploymentRecord.Status.ROLLBACK_FAILED, failed_stage=failed, error=message, warnings="\n".join(operation.warnings)
            )
            emit(
                operation,
                ROLLBACK_RUN,
                FAILED,
                _("ROLLBACK FAILED at %(stage)s: %(error)s") % {"stage": stage_label(failed), "error": message},
            )
            signals.rollback_finished.send(sender=SENDER, record=recorder.record, succeeded=False)
            notify(Level.ROLLBACK_FAILED, recorder)
            return EXIT_NEEDS_HUMAN
        recorder.finish(DeploymentRecord.Status.SUCCEEDED, warnings="\n".join(operation.warnings))
        emit(
            operation,
            ROLLBACK_RUN,
            SUCCEEDED,
            _("Rolled back in %(duration)ss: %(sha)s is serving.")
            % {"duration": decimal(finished_duration(recorder.record), ".1f"), "sha": target_sha[:12]},
        )
        signals.rollback_finished.send(sender=SENDER, record=recorder.record, succeeded=True)
        notify(Level.ROLLBACK_SUCCESS, recorder)
        return EXIT_OK
    finally:
        lock.release()


# -- what the operator looks at -------------------------------------------------------------------
def record_summary(record: DeploymentRecord) -> dict:
    return {
        "id": str(record.id),
        "kind": record.kind,
        "status": record.status,
        "from_commit": record.from_commit,
        "to_commit": record.to_commit,
        "to_summary": record.to_summary,
        "strategy": record.strategy,
        "backup": record.backup_name,
        "failed_stage": record.failed_stage,
        "started_at": record.started_at.isoformat(),
        "duration": record.duration,
    }


def backup_summary(backup: Backup) -> dict:
    """The one JSON shape of a listed backup (deploy_ops.cli.BackupListing)."""
    return BackupListing.of(backup).as_json()


def status() -> dict:
    checkout = _checkout()
    head = checkout.head()
    last_good = _successful_deploys().first()
    # The release the proxy routes to: a blue/green slot once a zero-downtime deploy moved the site there.
    serving = serving_release()
    try:
        runtime = get_runtime()
        services = [
            {"name": state.name, "state": state.state, "health": state.health, "ok": state.ok} for state in serving_service_states(runtime)
        ]
        services_error = ""
        project = serving.project(runtime)
    except DeployOpsError as error:
        services, services_error, project = [], str(error), None
    probe = probe_health(serving.health_url)
    lock = inspect_lock()
    # A live holder's children are its own business; after a run died, they are what it left running.
    left_behind = work_left_behind() if not lock.held or lock.stale else []
    return {
        "project": ops_settings.project_name,
        "environment": ops_settings.ENVIRONMENT,
        "current_commit": {"sha": head.sha, "summary": head.summary},
        "last_successful_deploy": record_summary(last_good) if last_good else None,
        "current_is_last_successful": bool(last_good and last_good.to_commit == head.sha),
        "serving": {
            "slot": serving.slot,
            "compose_project": project,
            "health_url": serving.health_url,
            "health_status": probe.status,
            "healthy": probe.healthy,
            "problem": "" if probe.healthy else probe.problem(),
        },
        "services": services,
        "services_error": services_error,
        "backups": [backup_summary(backup) for backup in list_backups()[:5]],
        "lock": {
            "state": "free" if not lock.held else ("stale" if lock.stale else "held"),
            "holder": lock.holder,
            "description": lock.describe(),
        },
        "work_left_behind": left_behind,
        # Where the reverse proxy sends the traffic ("maintenance": it answers 503 itself); None without one.
        "proxy_routes_to": proxy.routed_to() if (proxy := configured_proxy()) else None,
        "recent_records": [record_summary(record) for record in DeploymentRecord.objects.order_by("-started_at")[:5]],
    }


def recent_commits(count: int) -> list[dict]:
    checkout = _checkout()
    ref = f"{ops_settings.GIT_REMOTE}/{ops_settings.GIT_BRANCH}"
    commits = (
        checkout.history(ref, count) if f"refs/remotes/{ref}" in [r.path for r in checkout.repo.refs] else checkout.history("HEAD", count)
    )
    head = checkout.head().sha
    runtime = get_runtime()
    shas = [commit.sha for commit in commits]
    deploys: dict[str, list[DeploymentRecord]] = {}
    for record in DeploymentRecord.objects.filter(to_commit__in=shas).order_by("-started_at"):
        deploys.setdefault(record.to_commit, []).append(record)
    return [
        {
            "sha": commit.sha,
            "summary": commit.summary,
            "author": commit.author,
            "committed_at": commit.committed_at.isoformat(),
            "current": commit.sha == head,
            # True: it comes back from its kept images, without a build; None where the runtime keeps none.
            "images_kept": images_kept(runtime, commit.sha),
            "deploys": [
                {"kind": record.kind, "status": record.status, "at": record.started_at.isoformat(), "failed_stage": record.failed_stage}
                for record in deploys.get(commit.sha, [])
            ],
        }
        for commit in commits
    ]
