"""The backup lifecycle after a deploy or a scheduled backup: what is kept, what goes.

Retention (``BACKUP_RETENTION_DAYS``, ``BACKUP_KEEP``) applies to the local folder and to the
off-host storage alike, and never removes a backup that a recovery may need:

- the one ``rollback --quick`` would restore now;
- one that a record of the last ``KEEP_RELEASES`` successful deploys refers to, or any deploy or
  rollback since the oldest of them (the backup a deploy took of the release it replaced).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from django.utils import timezone
from django.utils.translation import gettext as _

from . import storage
from .backups import Backup, prune_backups
from .conf import ops_settings
from .exceptions import DeployOpsError, GitError, LockHeld, PreflightFailed
from .lock import DeployLock
from .models import DeploymentRecord

logger = logging.getLogger("deploy_ops.retention")

LOCK_POLL_SECONDS = 2
SUCCEEDED = [DeploymentRecord.Status.SUCCEEDED, DeploymentRecord.Status.SUCCEEDED_WITH_WARNINGS]


@dataclass
class Cleanup:
    """What one cleanup removed (or, in a dry run, would remove), and what went wrong."""

    local: list[str] = field(default_factory=list)
    remote: list[str] = field(default_factory=list)
    protected: set[str] = field(default_factory=set)
    warnings: list[str] = field(default_factory=list)

    def describe(self) -> str:
        lines = [
            _("Removed %(count)d local backup(s): %(names)s.") % {"count": len(self.local), "names": ", ".join(self.local)}
            if self.local
            else _("Removed 0 local backup(s).")
        ]
        if storage.configured():
            lines.append(
                _("Removed %(count)d off-host cop(y/ies): %(names)s.") % {"count": len(self.remote), "names": ", ".join(self.remote)}
                if self.remote
                else _("Removed 0 off-host cop(y/ies).")
            )
        lines.extend(_("Warning: %(warning)s") % {"warning": warning} for warning in self.warnings)
        return "\n".join(lines)


def quick_rollback_backup() -> str | None:
    """The name of the backup ``rollback --quick`` would restore now: its own rule (rollback.py),
    without its verification, which a cleanup does not need: it only must not delete it."""
    from .gitrepo import Checkout
    from .rollback import newest_backup_of, quick_target

    try:
        head = Checkout(ops_settings.project_dir).head().sha
        return newest_backup_of(quick_target(head).from_commit).backup_name
    except (GitError, PreflightFailed):
        return None


def protected_backups() -> set[str]:
    """Backup names no cleanup may remove (see the module's docstring)."""
    releases = list(
        DeploymentRecord.objects.filter(kind=DeploymentRecord.Kind.DEPLOY, status__in=SUCCEEDED).order_by("-started_at")[
            : ops_settings.KEEP_RELEASES
        ]
    )
    names: set[str] = set()
    if releases:
        since = releases[-1].started_at
        names.update(DeploymentRecord.objects.filter(started_at__gte=since).exclude(backup_name="").values_list("backup_name", flat=True))
    quick = quick_rollback_backup()
    if quick:
        names.add(quick)
    return names


def _made_at(copy: storage.RemoteCopy) -> datetime:
    # An unfinished copy has no metadata; its name still says when it was made, as for a legacy backup.
    return copy.created_at or Backup(path=Path(copy.name), name=copy.name).created_at


def _prune_remote(days: int, keep: int, protected: set[str], dry_run: bool) -> list[str]:
    copies = storage.list_remote()  # newest first
    # Complete copies were verified by reading back when they were made; the newest `keep` stay.
    kept = {copy.name for copy in [copy for copy in copies if copy.complete][:keep]}
    cutoff = timezone.now() - timedelta(days=days)
    doomed = [copy for copy in copies if copy.name not in kept and copy.name not in protected and _made_at(copy) < cutoff]
    if not dry_run:
        for copy in doomed:
            storage.delete_remote(copy)
    return [copy.name for copy in doomed]


def apply_retention(days: int | None = None, keep: int | None = None, dry_run: bool = False) -> Cleanup:
    """Prune both sides by the retention rules, keeping the protected backups.

    A failure on the off-host side is a warning in the result: the local cleanup still counts.
    """
    days = ops_settings.BACKUP_RETENTION_DAYS if days is None else days
    keep = ops_settings.BACKUP_KEEP if keep is None else keep
    cleanup = Cleanup(protected=protected_backups())
    cleanup.local = [backup.name for backup in prune_backups(days=days, keep=keep, dry_run=dry_run, protect=cleanup.protected)]
    if storage.configured():
        try:
            cleanup.remote = _prune_remote(days, keep, cleanup.protected, dry_run)
        except DeployOpsError as error:
            cleanup.warnings.append(_("The off-host copies were not pruned: %(error)s") % {"error": error})
    return cleanup


def after_deploy(operation) -> str:
    """The last step of a successful deploy: note a failed off-host copy, then clean up.

    Never raises: the release is out and serving; what goes wrong here becomes a warning on the
    record (and so in the deploy's notification).  Returns the stage's output.
    """
    lines = []
    backup = operation.backup
    copy_error = ((backup.metadata or {}).get("off_host") or {}).get("error") if backup else ""
    if copy_error:
        values = {"name": backup.name, "error": copy_error}
        operation.warnings.append(_("The backup %(name)s was not copied off the host: %(error)s") % values)
        lines.append(_("Off-host copy of %(name)s FAILED: %(error)s") % values)
    if not ops_settings.BACKUP_AUTO_CLEANUP:
        lines.append(_("Automatic cleanup is off (DEPLOY_OPS['BACKUP_AUTO_CLEANUP'])."))
        return "\n".join(lines)
    try:
        cleanup = apply_retention()
    except Exception as error:  # a bug or a full disk here must not turn a good deploy into a failed one
        operation.warnings.append(
            _("The automatic cleanup of old backups failed: %(error)s") % {"error": f"{type(error).__name__}: {error}"}
        )
        lines.append(_("Cleanup FAILED: %(error)s") % {"error": error})
        return "\n".join(lines)
    operation.warnings.extend(cleanup.warnings)
    lines.append(cleanup.describe())
    if cleanup.local or cleanup.remote:
        _notify_cleanup(operation.recorder.record, cleanup)
    return "\n".join(lines)


def _notify_cleanup(record, cleanup: Cleanup) -> None:
    from .notifications import Level, build_event, send

    event = build_event(Level.INFO, record, message=cleanup.describe())
    event = dataclasses.replace(event, title=_("Old backups cleaned up after the deploy of %(commit)s") % {"commit": record.to_commit[:12]})
    for delivery in send(event):
        if not delivery.ok:
            logger.warning("the cleanup notification via %s failed: %s", delivery.channel, delivery.error)


@contextlib.contextmanager
def lock_for_backup(wait_seconds: float):
    """Hold the deploy lock while a scheduled backup runs: never beside a deploy or a rollback.

    Waits up to ``wait_seconds`` for a running one to finish, then raises LockHeld (exit 3) saying
    so.  A stale lock (its process died) is not taken over: the site may be half-deployed, and a
    human decides (``rollback --status``).
    """
    lock = DeployLock("backup")
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            lock.acquire()
            break
        except LockHeld as held:
            if held.stale or time.monotonic() >= deadline:
                raise LockHeld(_("Backup skipped, nothing was done: %(reason)s") % {"reason": held}, held.holder, held.stale) from None
            time.sleep(min(LOCK_POLL_SECONDS, max(0.0, deadline - time.monotonic())))
    try:
        yield
    finally:
        lock.release()
