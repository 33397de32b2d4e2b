"""Manual recovery: the plans behind ``manage.py rollback``, built from the deploy's undo steps.

Everything that can be checked is checked before anything changes (the commit exists, the
backup exists, verifies and is of this engine, the lock is free); a refusal changes nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from . import signals
from .audit import Recorder
from .backups import Backup, find_backup, list_backups, verify_backup
from .cli import BackupListing
from .conf import ops_settings
from .exceptions import EXIT_NEEDS_HUMAN, EXIT_OK, BackupIncompatible, DeployOpsError, LockHeld, PreflightFailed
from .gitrepo import Checkout
from .lock import DeployLock, inspect_lock
from .models import DeploymentRecord
from .notifications import Level
from .pipeline import describe_lock_refusal, mark_interrupted
from .recovery import (
    COLLECT_STATIC,
    REBUILD_SERVICES,
    RESTORE_DATABASE,
    REVERT_CODE,
    SAFETY_BACKUP,
    START_SERVICES,
    STOP_SERVICES,
    UNAPPLY_MIGRATIONS,
    VERIFY_HEALTH,
    Operation,
    describe_failure,
    notify,
    recover,
)
from .runtimes import get_runtime

SENDER = "deploy_ops.rollback"
CODE_STEPS = {REVERT_CODE, STOP_SERVICES, REBUILD_SERVICES, START_SERVICES, COLLECT_STATIC, VERIFY_HEALTH}
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

    def describe(self) -> list[str]:
        lines = []
        if self.commit:
            lines.append(f"code: check out {self.commit[:12]} ({self.commit_summary}) and rebuild the services")
        if self.unapplied:
            lines.append(
                f"database: take a safety backup, then unapply {', '.join(self.unapplied)} "
                f"({'; '.join(f'migrate {label} {name}' for label, name in self.migration_targets)}) while their files are still here"
            )
        if self.backup:
            lines.append(f"database: take a safety backup, then restore {self.backup.name}")
        if self.reason:
            lines.append(f"why: {self.reason}")
        lines.append("then: start the services and verify their health")
        return lines


def _checkout() -> Checkout:
    return Checkout(ops_settings.project_dir)


def resolve_commit(ref: str) -> tuple[str, str]:
    info = _checkout().resolve(ref, ops_settings.GIT_REMOTE)
    return info.sha, info.summary


def usable_backup(name_or_path: str) -> Backup:
    """The backup, verified and of this database's engine; a refusal (exit 3) otherwise."""
    from .databases import engine_for

    backup = find_backup(name_or_path)
    verify_backup(backup, record=False)  # a check before anything changes writes nothing, not even metadata
    engine = engine_for(ops_settings.BACKUP_DATABASE)
    if backup.engine and backup.engine != engine.vendor:
        raise BackupIncompatible(
            f"{backup.name} is a {backup.engine} backup, but the database {ops_settings.BACKUP_DATABASE!r} is {engine.vendor}."
        )
    return backup


def plan_commit(ref: str) -> RollbackPlan:
    sha, summary = resolve_commit(ref)
    plan = RollbackPlan(commit=sha, commit_summary=summary, steps=set(CODE_STEPS), reason=f"code back to {ref}")
    plan.unapplied, plan.migration_targets = migrations_to_unapply(sha)
    if plan.migration_targets:
        plan.steps.add(UNAPPLY_MIGRATIONS)
    return plan


MIGRATION_FILE = re.compile(r"^(?:(?P<folder>.*)/)?(?P<app>[^/]+)/migrations/(?P<name>\d{4}\w*)\.py$")


def migrations_to_unapply(target_sha: str) -> tuple[list[str], list[tuple[str, str]]]:
    """Applied migrations whose files the target commit does not have, and where to migrate back to.

    The old code must not run on a schema it does not know; Django can reverse the migrations,
    but only while their files exist, so this runs in the current release, before the code goes
    back.  An app's label is taken to be its folder's name (Django's default).
    """
    from django.db import connections
    from django.db.migrations.recorder import MigrationRecorder

    checkout = _checkout()
    applied = MigrationRecorder(connections[ops_settings.BACKUP_DATABASE]).applied_migrations()
    unapplied, folders = [], {}
    for path in checkout.added_files(target_sha, checkout.head().sha):
        found = MIGRATION_FILE.match(path)
        if found and (found["app"], found["name"]) in applied:
            unapplied.append(f"{found['app']}.{found['name']}")
            folders[found["app"]] = path.rsplit("/", 1)[0]
    targets = []
    for app, folder in sorted(folders.items()):
        kept = sorted(name[:-3] for name in checkout.file_names(target_sha, folder) if re.match(r"^\d{4}\w*\.py$", name))
        targets.append((app, kept[-1] if kept else "zero"))
    return sorted(unapplied), targets


def plan_backup(name_or_path: str) -> RollbackPlan:
    return RollbackPlan(backup=usable_backup(name_or_path), steps=set(DATABASE_STEPS), reason=f"database back to {name_or_path}")


def plan_full(ref: str, name_or_path: str) -> RollbackPlan:
    sha, summary = resolve_commit(ref)
    backup = usable_backup(name_or_path)
    return RollbackPlan(commit=sha, commit_summary=summary, backup=backup, steps=CODE_STEPS | DATABASE_STEPS, reason=f"code to {ref}, database to {backup.name}")


def _successful_deploys():
    return DeploymentRecord.objects.filter(
        kind=DeploymentRecord.Kind.DEPLOY,
        status__in=[DeploymentRecord.Status.SUCCEEDED, DeploymentRecord.Status.SUCCEEDED_WITH_WARNINGS],
    ).order_by("-started_at")


def plan_quick() -> RollbackPlan:
    """The last release that deployed successfully before the current one, and the backup
    taken by the deploy that moved past it (its database as that release left it)."""
    head = _checkout().head().sha
    deploys = list(_successful_deploys())
    # Only deploys older than the one that brought the current commit count: after an earlier
    # rollback, newer deploys are releases *ahead* of the current one, not behind it.
    current = next((index for index, record in enumerate(deploys) if record.to_commit == head), None)
    earlier = deploys if current is None else deploys[current + 1 :]
    target = next((record for record in earlier if record.to_commit != head), None)
    if target is None:
        raise PreflightFailed(
            f"No successful deploy before the current {head[:12]} is on record, so there is no "
            "previous release to go back to. Use --commit SHA and/or --backup NAME."
        )
    mover = (
        DeploymentRecord.objects.filter(kind=DeploymentRecord.Kind.DEPLOY, started_at__gt=target.started_at, from_commit=target.to_commit)
        .exclude(backup_name="")
        .order_by("started_at")
        .first()
    )
    if mover is None:
        raise PreflightFailed(
            f"The last good release is {target.to_commit[:12]} (deployed {target.started_at:%Y-%m-%d %H:%M}), but no later "
            "deploy recorded a backup of its database. Use --commit for the code alone, or --full with a backup you choose."
        )
    backup = usable_backup(mover.backup_name)
    reason = (
        f"{target.to_commit[:12]} is the last release that deployed successfully before the current {head[:12]} "
        f"(deployed {target.started_at:%Y-%m-%d %H:%M}); {backup.name} was taken by the deploy that moved past it "
        f"(started {mover.started_at:%Y-%m-%d %H:%M}, {mover.status})."
    )
    return RollbackPlan(
        commit=target.to_commit, commit_summary=target.to_summary, backup=backup, steps=CODE_STEPS | DATABASE_STEPS, reason=reason
    )


def execute(plan: RollbackPlan, report=lambda line, level=1: None) -> int:
    """Run a validated plan under the lock, as a recorded rollback; returns the exit code."""
    if not ops_settings.ROLLBACK_ENABLED:
        raise PreflightFailed("Rollbacks are disabled (DEPLOY_OPS ROLLBACK_ENABLED is false).")
    checkout = _checkout()
    recorder = Recorder(DeploymentRecord.Kind.ROLLBACK, requested_ref=plan.commit or (plan.backup.name if plan.backup else ""))
    # The recovery tool may take over a lock whose process died: that is what it is for.
    lock = DeployLock("rollback", str(recorder.record.id), break_stale=True)
    try:
        lock.acquire()
    except LockHeld as held:
        raise LockHeld(describe_lock_refusal(held), held.holder, held.stale) from None
    try:
        if lock.broken:
            mark_interrupted(lock.broken)
            report(f"Took over the stale lock: {lock.broken.describe()}", 0)
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
        )
        recorder.save()
        operation = Operation(
            checkout=checkout,
            runtime=get_runtime(),
            recorder=recorder,
            report=report,
            health_retries=ops_settings.HEALTH_CHECK_RETRIES,
            health_delay=ops_settings.HEALTH_CHECK_DELAY,
            previous_sha=head.sha,
            target_sha=target_sha,
            backup=plan.backup,
            migration_targets=plan.migration_targets,
        )
        try:
            recover(operation, plan.steps, target_sha, plan.backup, safety_backup_required=True)
        except (Exception, KeyboardInterrupt) as error:
            message = describe_failure(error)
            failed = next((stage.name for stage in reversed(recorder.stages) if stage.status == "failed"), "")
            if failed == SAFETY_BACKUP:
                # It runs first: nothing has changed, so this is a refusal, not a failed rollback.
                recorder.finish(DeploymentRecord.Status.FAILED, failed_stage=failed, error=message)
                raise PreflightFailed(f"No safety backup could be taken, so nothing was restored or changed: {message}") from None
            recorder.finish(DeploymentRecord.Status.ROLLBACK_FAILED, failed_stage=failed, error=message, warnings="\n".join(operation.warnings))
            report(f"ROLLBACK FAILED at {failed}: {message}", 0)
            signals.rollback_finished.send(sender=SENDER, record=recorder.record, succeeded=False)
            notify(Level.ROLLBACK_FAILED, recorder)
            return EXIT_NEEDS_HUMAN
        recorder.finish(DeploymentRecord.Status.SUCCEEDED, warnings="\n".join(operation.warnings))
        report(f"Rolled back in {recorder.record.duration:.1f}s: {target_sha[:12]} is serving.", 0)
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
    try:
        services = [
            {"name": state.name, "state": state.state, "health": state.health, "ok": state.ok}
            for state in get_runtime().service_states()
        ]
        services_error = ""
    except DeployOpsError as error:
        services, services_error = [], str(error)
    lock = inspect_lock()
    return {
        "project": ops_settings.project_name,
        "environment": ops_settings.ENVIRONMENT,
        "current_commit": {"sha": head.sha, "summary": head.summary},
        "last_successful_deploy": record_summary(last_good) if last_good else None,
        "current_is_last_successful": bool(last_good and last_good.to_commit == head.sha),
        "services": services,
        "services_error": services_error,
        "backups": [backup_summary(backup) for backup in list_backups()[:5]],
        "lock": {"state": "free" if not lock.held else ("stale" if lock.stale else "held"), "holder": lock.holder, "description": lock.describe()},
        "recent_records": [record_summary(record) for record in DeploymentRecord.objects.order_by("-started_at")[:5]],
    }


def recent_commits(count: int) -> list[dict]:
    checkout = _checkout()
    ref = f"{ops_settings.GIT_REMOTE}/{ops_settings.GIT_BRANCH}"
    commits = checkout.history(ref, count) if f"refs/remotes/{ref}" in [r.path for r in checkout.repo.refs] else checkout.history("HEAD", count)
    head = checkout.head().sha
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
            "deploys": [
                {"kind": record.kind, "status": record.status, "at": record.started_at.isoformat(), "failed_stage": record.failed_stage}
                for record in deploys.get(commit.sha, [])
            ],
        }
        for commit in commits
    ]

