"""Health-check backends for django-health-check (v4 API) and the synchronous runner the deploy uses.

Every check is a small dataclass whose ``run()`` raises ``ServiceUnavailable`` (the site is not
fine) or ``ServiceWarning`` (it serves, but someone should look) with a sentence naming the cause.
Those sentences reach whoever may read /health/'s details, so they name the service, an exit
code and a short reason, never a command line, captured output or an absolute path; the full
error goes to the ``deploy_ops.health`` logger on the server.
Checks that read the database run thread-sensitively (``sync_to_async``), so they share the
request's connection instead of opening one in a worker thread that nobody closes.

The same configured list (``DEPLOY_OPS['HEALTH_CHECKS']``) feeds the ``/health/`` view and
:func:`run_checks`; the deploy gates on :func:`deploy_gate_checks`, a subset of that list, so what
the monitor sees and what the deploy gates on cannot drift apart.  ``HOST_HEALTH_CHECKS`` holds
what only the host can see (the Docker engine, the backup folder): ``/health/`` runs inside the
web container, so those run in ``manage.py healthcheck`` on the host and the deploy's verify stage.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import logging
import os
import shutil
import sys
from collections.abc import Iterable
from pathlib import Path

from asgiref.sync import async_to_sync, sync_to_async
from django.apps import apps
from django.db import DatabaseError, connections
from django.db.migrations.executor import MigrationExecutor
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.recorder import MigrationRecorder
from django.utils import timezone
from django.utils.module_loading import import_string
from django.utils.translation import gettext as _
from git.refs.symbolic import SymbolicReference
from health_check.base import HealthCheck, HealthCheckResult
from health_check.checks import Database
from health_check.exceptions import ServiceUnavailable, ServiceWarning

from ..conf import ops_settings
from ..exceptions import CommandFailed, DeployOpsError, GitError, HealthCheckFailed, ToolMissing
from ..migration_safety import waiting_for_switch
from ..models import DeploymentRecord
from ..proxy.serving import serving_service_states
from ..runtimes import ServiceRuntime, get_runtime

logger = logging.getLogger("deploy_ops.health")

DEPLOY_KINDS = (DeploymentRecord.Kind.DEPLOY, DeploymentRecord.Kind.ROLLBACK)
Status = DeploymentRecord.Status


def _short_reason(error: DeployOpsError) -> str:
    # A CommandFailed message holds the command line and its output: only its outcome is shown.
    if isinstance(error, CommandFailed):
        return _("its command timed out") if error.timed_out else _("its command exited with code %(code)s") % {"code": error.returncode}
    return type(error).__name__


def _database_problem(what: str, alias: str, error: DatabaseError) -> ServiceUnavailable:
    """``what``: a translated sentence with %(alias)r and %(error)s."""
    # Only the error's class: a driver's message may quote connection details.
    return ServiceUnavailable(what % {"alias": alias, "error": type(error).__name__})


@dataclasses.dataclass
class ServicesRunning(HealthCheck):
    """Every service of the runtime is running and, where it has a healthcheck, healthy.

    Those of the release that serves: once a blue/green slot serves, its web service and the
    project's other services (the project's own web service is stopped on purpose)."""

    # None: the configured runtime (DEPLOY_OPS['RUNTIME']), looked up at run time.
    runtime: ServiceRuntime | None = dataclasses.field(default=None, repr=False)

    # `docker compose ps` can take a few seconds on a busy host; a class attribute, not a field.
    timeout = datetime.timedelta(seconds=15)

    def run(self):
        try:
            states = serving_service_states(self.runtime or get_runtime())
        except ToolMissing as error:
            # Typical inside the web container, which has no Docker CLI: the site still serves.
            raise ServiceWarning(
                _(
                    "The services cannot be inspected from here: %(tool)r is not installed. "
                    "ServicesRunning belongs in DEPLOY_OPS['HOST_HEALTH_CHECKS'], which the host runs, not in HEALTH_CHECKS."
                )
                % {"tool": Path(error.executable).name}
            ) from None
        except DeployOpsError as error:
            logger.warning("ServicesRunning: the service runtime could not list the services: %s", error)
            raise ServiceUnavailable(
                _("The service runtime could not list the services (%(reason)s); the server's log has the details.")
                % {"reason": _short_reason(error)}
            ) from None
        problems = [_describe_service(state) for state in states if not state.ok]
        if problems:
            raise ServiceUnavailable(" ".join(problems))


def _describe_service(state) -> str:
    # Not state.detail: under the commands runtime it is the check step's captured output.
    # The states and health words are the runtime's own (Docker's "exited", "unhealthy"), left as they are.
    values = {"name": state.name, "state": state.state, "code": state.exit_code, "health": state.health}
    if state.state == "missing":
        return _("Service %(name)r is missing: no container was created for it.") % values
    if state.state != "running":
        if state.exit_code is not None:
            return _("Service %(name)r is %(state)s, not running (exit code %(code)s).") % values
        return _("Service %(name)r is %(state)s, not running.") % values
    if state.health == "starting":
        return _("Service %(name)r is running but its healthcheck has not passed yet (starting).") % values
    return _("Service %(name)r is running but its healthcheck reports %(health)s.") % values


@dataclasses.dataclass
class MigrationsApplied(HealthCheck):
    """No migration on disk is unapplied in the database (``migrate --check``)."""

    alias: str = "default"

    async def run(self):
        await sync_to_async(self.check_plan)()

    def check_plan(self):
        try:
            names = pending_migrations(self.alias)
        except DatabaseError as error:
            raise _database_problem(
                _("The migration state could not be read from database %(alias)r (%(error)s)."), self.alias, error
            ) from None
        if names:
            # A contract step (after-switch) runs once the old release is gone: the release works before it.
            waiting = waiting_for_switch(names, self.alias)
            names = [name for name in names if name not in waiting]
        if names:
            shown = ", ".join(names[:10])
            if len(names) > 10:
                shown = _("%(names)s and %(count)d more") % {"names": shown, "count": len(names) - 10}
            raise ServiceUnavailable(
                _("%(count)d migration(s) not applied to database %(alias)r: %(names)s. Run `manage.py migrate`.")
                % {"count": len(names), "alias": self.alias, "names": shown}
            )


# Building the migration graph from disk costs milliseconds per poll, so the plan is kept until
# the applied set (a COUNT and MAX of its ids, one cheap query) or a migrations folder (a stat
# each) changes.  Recording a migration adds a row with a higher id; unrecording one removes a row.
_plans: dict[str, tuple[tuple, list[str]]] = {}


def _applied_fingerprint(connection) -> tuple | None:
    table = connection.ops.quote_name(MigrationRecorder.Migration._meta.db_table)
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT COUNT(*), MAX(id) FROM {table}")
            return tuple(cursor.fetchone())
    except DatabaseError:
        return None  # no table yet: nothing is applied; the full plan below says what is pending


def pending_migrations(alias: str = "default") -> list[str]:
    """``app.name`` of every migration ``migrate`` would apply to ``alias``, in order."""
    connection = connections[alias]
    key = (_applied_fingerprint(connection), _migration_folders())
    cached = _plans.get(alias)
    if key[0] is not None and cached and cached[0] == key:
        return cached[1]
    executor = MigrationExecutor(connection)
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    names = [f"{migration.app_label}.{migration.name}" for migration, _backwards in plan]
    # The loader has imported every migrations package now, so their folders are known.
    _plans[alias] = ((key[0], _migration_folders()), names)
    return names


def _migration_folders() -> tuple:
    found: list[tuple[str, int | None]] = []
    for app in apps.get_app_configs():
        module = sys.modules.get(MigrationLoader.migrations_module(app.label)[0] or "")
        for folder in getattr(module, "__path__", ()):
            try:
                found.append((folder, os.stat(folder).st_mtime_ns))
            except OSError:
                found.append((folder, None))
    return tuple(found)


def latest_deployment() -> DeploymentRecord | None:
    """The newest deploy or rollback that did something: a refusal changed nothing, so it says nothing about the site."""
    return DeploymentRecord.objects.filter(kind__in=DEPLOY_KINDS).exclude(status=Status.REFUSED).order_by("-started_at").first()


@dataclasses.dataclass
class LastDeployment(HealthCheck):
    """The newest deploy or rollback did not fail, hang or die; a rolled-back deploy is a warning."""

    async def run(self):
        await sync_to_async(self.check_record)()

    def check_record(self):
        try:
            record = latest_deployment()
        except DatabaseError as error:
            raise _database_problem(
                _("The deployment records could not be read from database %(alias)r (%(error)s)."), "default", error
            ) from None
        if record is None:
            return
        values = {
            "what": _last_run(record),
            # A phrase the sentences below put after their verb ("failed at stage 'migrate'").
            "stage": _(" at stage %(stage)r") % {"stage": record.failed_stage} if record.failed_stage else "",
        }
        status = record.status
        if status == Status.ROLLBACK_FAILED:
            raise ServiceUnavailable(
                _(
                    "%(what)s failed%(stage)s and its rollback failed too: the site may run a half-updated release. "
                    "A human is needed: see `manage.py rollback --status`."
                )
                % values
            )
        if status == Status.FAILED and record.kind == DeploymentRecord.Kind.ROLLBACK:
            raise ServiceUnavailable(
                _("%(what)s failed%(stage)s: the site may run a half-restored release. See `manage.py rollback --status`.") % values
            )
        if status == Status.FAILED:
            raise ServiceUnavailable(_("%(what)s failed%(stage)s and was not rolled back. See `manage.py rollback --status`.") % values)
        if status == Status.INTERRUPTED:
            raise ServiceUnavailable(
                _(
                    "%(what)s was interrupted%(stage)s (its process died): the site may run a half-updated release. "
                    "See `manage.py rollback --status`."
                )
                % values
            )
        if status == Status.RUNNING:
            minutes = (timezone.now() - record.started_at).total_seconds() / 60
            limit = ops_settings.DEPLOY_STUCK_MINUTES
            if minutes > limit:
                raise ServiceUnavailable(
                    _(
                        "%(what)s is stuck: still running after %(minutes).0f minutes (limit %(limit)s). "
                        "Check process %(pid)s on %(host)s, then `manage.py rollback --status`."
                    )
                    % {**values, "minutes": minutes, "limit": limit, "pid": record.pid, "host": record.host or _("the host")}
                )
            return
        if status == Status.ROLLBACK_UNVERIFIED:
            # This check runs inside the site, so the site answers: the health URL itself is what failed.
            raise ServiceWarning(
                _(
                    "%(what)s failed%(stage)s; its rollback ran every step but HEALTH_CHECK_URL never answered to verify it. "
                    "Check DEPLOY_OPS['HEALTH_CHECK_URL']."
                )
                % values
            )
        if status == Status.ROLLED_BACK:
            if record.from_commit:
                raise ServiceWarning(
                    _("%(what)s failed%(stage)s and was rolled back to %(commit)s; the previous release is serving.")
                    % {**values, "commit": record.from_commit[:12]}
                )
            raise ServiceWarning(_("%(what)s failed%(stage)s and was rolled back; the previous release is serving.") % values)


def _last_run(record: DeploymentRecord) -> str:
    """The subject of LastDeployment's sentences: "The last deploy (to abc123, started 2026-01-09 12:00 UTC)"."""
    values = {
        "target": record.to_commit[:12] or record.requested_ref or _("an unknown commit"),
        "started": f"{record.started_at:%Y-%m-%d %H:%M}",
    }
    if record.kind == DeploymentRecord.Kind.ROLLBACK:
        return _("The last rollback (to %(target)s, started %(started)s UTC)") % values
    return _("The last deploy (to %(target)s, started %(started)s UTC)") % values


@dataclasses.dataclass
class BackupFreshness(HealthCheck):
    """The newest verified backup (or, with none verified, the newest unchecked one) is young enough."""

    # None: DEPLOY_OPS['BACKUP_MAX_AGE_HOURS'], read at run time so settings changes apply.
    max_age_hours: float | None = None

    def run(self):
        from ..backups import list_backups

        backups = list_backups()
        if not backups:
            raise ServiceUnavailable(_("There is no backup in BACKUP_DIR. Make one with `manage.py backups create`."))
        verified = [backup for backup in backups if backup.verified]
        # verified=False means verification failed: such a backup never counts as fresh.
        unchecked = [backup for backup in backups if backup.verified is None]
        candidates = verified or unchecked
        if not candidates:
            raise ServiceUnavailable(_("Every backup failed verification. Make a new one with `manage.py backups create`."))
        newest = max(candidates, key=lambda backup: backup.created_at)
        limit = ops_settings.BACKUP_MAX_AGE_HOURS if self.max_age_hours is None else self.max_age_hours
        hours = (timezone.now() - newest.created_at).total_seconds() / 3600
        if hours > limit:
            values = {"name": newest.name, "hours": hours, "limit": f"{limit:g}"}
            if verified:
                message = _(
                    "The newest verified backup, %(name)s, is %(hours).1f hours old (limit %(limit)s). "
                    "Check the backup schedule (`manage.py backups create`)."
                )
            else:
                message = _(
                    "The newest (unverified) backup, %(name)s, is %(hours).1f hours old (limit %(limit)s). "
                    "Check the backup schedule (`manage.py backups create`)."
                )
            raise ServiceUnavailable(message % values)
        if ops_settings.BACKUP_STORAGE:
            _check_off_host_copy(backups, limit)


def _check_off_host_copy(backups, limit: float) -> None:
    """Local backups are fresh; a warning (not a failure) when their off-host copies are not.

    Read from the metadata create_backup writes after each copy: a monitor's poll never opens
    a connection to the storage.
    """
    copied = [backup for backup in backups if ((backup.metadata or {}).get("off_host") or {}).get("ok")]
    if not copied:
        raise ServiceWarning(
            _("No backup has been copied off the host to the storage %(storage)r yet; see the backups' off_host errors.")
            % {"storage": ops_settings.BACKUP_STORAGE}
        )
    newest = max(copied, key=lambda backup: backup.created_at)
    hours = (timezone.now() - newest.created_at).total_seconds() / 3600
    if hours > limit:
        failed = next((backup for backup in backups if ((backup.metadata or {}).get("off_host") or {}).get("error")), None)
        message = _("Local backups are fresh, but the newest off-host copy, %(name)s, is %(hours).1f hours old (limit %(limit)s).") % {
            "name": newest.name,
            "hours": hours,
            "limit": f"{limit:g}",
        }
        if failed:
            message += " " + _("The last copy failed: %(error)s") % {"error": failed.metadata["off_host"]["error"]}
        raise ServiceWarning(message)


def nearest_existing(path: Path) -> Path:
    """``path`` or its closest existing parent (BACKUP_DIR may not exist before the first backup)."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


@dataclasses.dataclass
class BackupDiskSpace(HealthCheck):
    """The disk that holds BACKUP_DIR has at least BACKUP_MIN_FREE_MB free."""

    min_free_mb: int | None = None

    def run(self):
        wanted = ops_settings.BACKUP_MIN_FREE_MB if self.min_free_mb is None else self.min_free_mb
        free_mb = shutil.disk_usage(nearest_existing(ops_settings.backup_dir)).free // (1024 * 1024)
        if free_mb < wanted:
            raise ServiceUnavailable(
                _(
                    "Only %(free)s MB free on the disk holding the backups (want %(wanted)s MB): "
                    "the next backup, and so the next deploy, may fail. Free space or prune old backups."
                )
                % {"free": free_mb, "wanted": wanted}
            )


def expected_commit() -> str | None:
    """The commit deploy_ops last put in place: None while a deploy runs or when nothing is known."""
    newest = DeploymentRecord.objects.filter(kind__in=DEPLOY_KINDS).order_by("-started_at")
    for status, to_commit, from_commit in newest.values_list("status", "to_commit", "from_commit")[:20]:
        if status == Status.RUNNING:
            return None
        if status in (Status.SUCCEEDED, Status.SUCCEEDED_WITH_WARNINGS) and to_commit:
            return to_commit
        if status == Status.ROLLED_BACK and from_commit:
            return from_commit
    return None


@dataclasses.dataclass
class RunningCommit(HealthCheck):
    """The checkout's HEAD is the commit of the last successful deploy or rollback.

    A mismatch is a warning: the site may well serve, but the code was changed by hand, so the
    audit trail and the next rollback's idea of "the previous release" are wrong.
    """

    async def run(self):
        await sync_to_async(self.check_head)()

    def check_head(self):
        from ..gitrepo import Checkout

        try:
            expected = expected_commit()
        except DatabaseError as error:
            raise _database_problem(
                _("The deployment records could not be read from database %(alias)r (%(error)s)."), "default", error
            ) from None
        if not expected:
            return
        try:
            checkout = Checkout(ops_settings.project_dir)
        except GitError:
            # Code copied into an image without .git: there is nothing to compare here.
            return
        try:
            # Read from the ref files: Checkout.head() starts a `git cat-file` per call, too slow per poll.
            head = SymbolicReference.dereference_recursive(checkout.repo, "HEAD")
        except ValueError:
            return  # no commit yet
        finally:
            checkout.repo.close()
        if head != expected:
            raise ServiceWarning(
                _(
                    "The checkout is at %(head)s but the last successful deploy put %(expected)s in place: "
                    "the code was changed outside deploy_ops. Deploy again or roll back to restore a known release."
                )
                % {"head": head[:12], "expected": expected[:12]}
            )


# -- the configured list and the synchronous runner ----------------------------------------------

# What the deploy's integrity stage gates on (a subset of the configured list, same options).
GATE_CHECKS = (Database, MigrationsApplied, ServicesRunning)


def _resolve(entry) -> tuple[type[HealthCheck], dict]:
    if isinstance(entry, str):
        path, options = entry, {}
    else:
        path, options = entry
    check_class = import_string(path) if isinstance(path, str) else path
    return check_class, dict(options)


def configured_check_entries() -> list:
    """DEPLOY_OPS['HEALTH_CHECKS'] as the view's ``checks``: dotted paths or (path, kwargs)."""
    return [entry if isinstance(entry, str) else tuple(entry) for entry in ops_settings.HEALTH_CHECKS]


def configured_checks() -> list[HealthCheck]:
    return [check_class(**options) for check_class, options in map(_resolve, ops_settings.HEALTH_CHECKS)]


def host_checks(leave_out: tuple[type[HealthCheck], ...] = ()) -> list[HealthCheck]:
    """DEPLOY_OPS['HOST_HEALTH_CHECKS']: what only the host can see (the services, the backups, their disk)."""
    return [
        check_class(**options)
        for check_class, options in map(_resolve, ops_settings.HOST_HEALTH_CHECKS)
        if not issubclass(check_class, leave_out)
    ]


def deploy_gate_checks() -> list[HealthCheck]:
    """The configured database, migration and service checks (in either list): the deploy's integrity gate."""
    return [
        check_class(**options)
        for check_class, options in map(_resolve, ops_settings.HEALTH_CHECKS + ops_settings.HOST_HEALTH_CHECKS)
        if issubclass(check_class, GATE_CHECKS)
    ]


@dataclasses.dataclass(frozen=True)
class CheckOutcome:
    name: str
    # False only for a failure; a warning is ok (the site serves) with warning=True.
    ok: bool
    warning: bool
    message: str

    @classmethod
    def from_result(cls, result: HealthCheckResult) -> CheckOutcome:
        error = result.error
        return cls(
            name=repr(result.check),
            ok=error is None or isinstance(error, ServiceWarning),
            warning=isinstance(error, ServiceWarning),
            message="" if error is None else str(error),
        )


def is_failure(error) -> bool:
    """What turns /health/ to HTTP 500 and fails the deploy gate: any error but a warning."""
    return error is not None and not isinstance(error, ServiceWarning)


async def _gather(checks: list[HealthCheck]) -> list[HealthCheckResult]:
    return await asyncio.gather(*(check.get_result() for check in checks))


def run_checks(checks: Iterable[HealthCheck] | None = None) -> list[CheckOutcome]:
    """Run checks (default: the configured ones) exactly as /health/ does; callable from sync code.

    ``async_to_sync`` runs the database checks back in the calling thread, on its connection.
    """
    checks = configured_checks() if checks is None else list(checks)
    return [CheckOutcome.from_result(result) for result in async_to_sync(_gather)(checks)]


def require_healthy(outcomes: Iterable[CheckOutcome]) -> str:
    """A one-line-per-check summary; HealthCheckFailed naming every failing check."""
    outcomes = list(outcomes)
    failing = [outcome for outcome in outcomes if not outcome.ok]
    if failing:
        raise HealthCheckFailed(
            _("Health checks failed: %(failures)s") % {"failures": "; ".join(f"{o.name}: {o.message}" for o in failing)}
        )
    return "\n".join(f"{o.name}: {o.message or _('OK')}" for o in outcomes)
