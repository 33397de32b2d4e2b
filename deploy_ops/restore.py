"""``backups restore`` as a recovery like a rollback: under the deploy lock, recorded, journaled and notified.

The backup is checked before anything changes (it verifies and is of the target's engine); then
the lock is taken (a live deploy or rollback refuses it, exit 3; a stale lock is taken over,
as a rollback does), and a ``restore`` record runs two stages: ``safety backup`` (unless
skipped) and ``restore database``.  The record survives the restore through the journal.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from django.utils.translation import gettext as _

from .audit import Recorder
from .backups import Backup, RestoreResult, check_restorable, create_backup, current_commit, restore_backup
from .conf import ops_settings
from .exceptions import DeployOpsError, PreflightFailed
from .lock import DeployLock, acquire_lock, take_over
from .models import DeploymentRecord
from .notifications import Level, notify
from .recovery import describe_failure, run_step
from .runtimes import get_runtime
from .stages import RESTORE_DATABASE, SAFETY_BACKUP

Status = DeploymentRecord.Status


@dataclass
class _Steps:
    """What recovery.run_step uses of an Operation: a restore has no code or services to work on."""

    recorder: Recorder
    report: Callable[[str, int], None]


def restore_as_recovery(
    backup: Backup, database: str | None = None, safety_backup: bool = True, report=lambda line, level=1: None
) -> RestoreResult:
    """Restore ``backup`` as a recorded recovery; raises DeployOpsError (exit 3 when nothing changed)."""
    alias = database or ops_settings.BACKUP_DATABASE
    check_restorable(backup, alias)
    recorder = Recorder(DeploymentRecord.Kind.RESTORE, requested_ref=backup.name)
    lock = DeployLock("restore", str(recorder.record.id), break_stale=True)
    acquire_lock(lock)
    try:
        if lock.broken:
            # A run died holding the lock: what it left running goes first (a restore may run without Compose).
            take_over(lock.broken, get_runtime(), report)
        commit = current_commit()
        recorder.update(
            from_commit=commit,
            to_commit=commit,
            backup_name=backup.name,
            backup_sha256=backup.sha256 or "",
            rollback_reason=_("database %(alias)r back to %(backup)s") % {"alias": alias, "backup": backup.name},
        )
        steps = _Steps(recorder, report)
        safety = None
        if safety_backup:
            try:
                safety = run_step(steps, SAFETY_BACKUP, lambda: create_backup(alias))
            except DeployOpsError as error:
                message = describe_failure(error)
                recorder.finish(Status.REFUSED, failed_stage=SAFETY_BACKUP, error=message)
                raise PreflightFailed(
                    _("No safety backup could be taken, so nothing was restored or changed: %(error)s") % {"error": message}
                ) from None
        try:
            result = run_step(steps, RESTORE_DATABASE, lambda: restore_backup(backup, database=database, safety_backup=False, checked=True))
        except (Exception, KeyboardInterrupt) as error:
            recorder.finish(Status.ROLLBACK_FAILED, failed_stage=RESTORE_DATABASE, error=describe_failure(error))
            notify(Level.ROLLBACK_FAILED, recorder)
            raise
        recorder.finish(Status.SUCCEEDED, warnings="\n".join(result.warnings))
        notify(Level.ROLLBACK_SUCCESS, recorder)
        return RestoreResult(safety_backup=safety, warnings=result.warnings)
    finally:
        lock.release()
