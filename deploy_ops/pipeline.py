"""The deploy: an ordered list of named stages, each naming its own undo.

``Deployer.run()`` takes the lock, runs the stages, records and times each one, and on a
failure rolls back with the recovery steps the begun stages ask for (see recovery.py).
"""

from __future__ import annotations

import contextlib
import functools
import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from django.db import DatabaseError, connections
from django.db.migrations.recorder import MigrationRecorder
from django.utils import timezone
from django.utils.connection import ConnectionDoesNotExist
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from . import children, runner, signals
from .audit import Recorder
from .backups import create_backup, list_backups, refuse_restore_blockers
from .conf import ops_settings
from .exceptions import (
    EXIT_NEEDS_HUMAN,
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_ROLLED_BACK,
    DeployOpsError,
    HealthCheckFailed,
    HealthUnverified,
    PreflightFailed,
)
from .gitrepo import Checkout, checkout_command
from .health.checks import ServicesRunning, host_checks, nearest_existing, require_healthy, run_checks
from .humanize import decimal
from .lock import DeployLock, acquire_lock, take_over
from .migration_safety import ZERO_DOWNTIME, MigrationVerdict, choose_strategy, describe_plan, plan_from_json
from .models import DeploymentRecord
from .notifications import Level, notify
from .preflight import refuse_if_unready
from .progress import last_line_of_long_work
from .proxy import configured_proxy, proxy_address, retry_after
from .recovery import (
    COLLECTSTATIC_SKIPPED,
    DEPLOY_RUN,
    FAILED,
    PLANNED,
    ROLLBACK_RUN,
    SKIPPED,
    STARTED,
    SUCCEEDED,
    Operation,
    Progress,
    describe_failure,
    describe_states,
    emit,
    find_slots,
    finished_duration,
    how_images_come_back,
    planned_proxy,
    planned_steps,
    recover,
    remove_unrouted_slots,
    retire_commands,
    retire_old_release,
    run_step,
    runs_side_by_side,
    wait_until_healthy,
)
from .retention import after_deploy
from .runner import Command
from .runtimes import get_runtime
from .secrets import mask
from .stages import (
    COLLECT_STATIC,
    REMOVE_NEW_RELEASE,
    RESTORE_DATABASE,
    RESTORE_IMAGES,
    RETIRE_OLD_RELEASE,
    REVERT_CODE,
    ROUTE_TRAFFIC,
    START_SERVICES,
    STOP_SERVICES,
    SWITCH_BACK,
    VERIFY_HEALTH,
    stage_label,
)

Status = DeploymentRecord.Status
SUCCEEDED_STATUSES = (Status.SUCCEEDED, Status.SUCCEEDED_WITH_WARNINGS)
SENDER = "deploy_ops.pipeline"
PRUNE_IMAGES = "prune images"
# As the checkout's own git calls (gitrepo.Checkout): a hung git ends, and the deploy rolls back.
GIT_TIMEOUT = 300

# What has to be undone once a stage has begun.  Until the migrations run the database cannot
# have changed, so no failure before the migrate stage restores it; until the old release stops,
# nothing has to start again.
AFTER_CHECKOUT = {REVERT_CODE}
AFTER_BUILD = AFTER_CHECKOUT | {RESTORE_IMAGES, VERIFY_HEALTH}
# collectstatic keeps the old files but overwrites same-named ones (and a manifest): the old
# release's files are collected again.
AFTER_COLLECTSTATIC = AFTER_BUILD | {COLLECT_STATIC}
AFTER_OLD_RELEASE_STOPPED = AFTER_COLLECTSTATIC | {STOP_SERVICES, START_SERVICES}
AFTER_MIGRATIONS_BEGAN = AFTER_OLD_RELEASE_STOPPED | {RESTORE_DATABASE}


@dataclass
class DeployOptions:
    ref: str = ""
    dry_run: bool = False
    rollback: bool = True
    health_retries: int | None = None
    health_delay: float | None = None
    break_lock: bool = False
    # Deploy even though the release serving now fails its health check (a fix for a broken site),
    # or with --strategy zero-downtime over migrations that could break the old release.
    force: bool = False
    # "stop-first" or "zero-downtime"; empty: chosen from the migration plan.
    strategy: str = ""


@dataclass(frozen=True)
class Task:
    """One thing a stage does: an external command run through the one runner, or an in-process
    action (a backup, a health probe).  The same task is run by a deploy and shown by --dry-run."""

    command: Command | None = None
    timeout: float | None = None
    action: Callable[[], str] | None = None
    description: str = ""

    def display(self) -> str:
        return self.command.display() if self.command else self.description

    def run(self, on_line: Callable[[str], None] | None = None) -> str:
        if self.command is None:
            assert self.action is not None, "a task without a command is an in-process action"
            return self.action()
        finished = runner.run(self.command, timeout=self.timeout, on_line=on_line)
        return finished.stdout + finished.stderr


@dataclass
class Stage:
    name: str
    undo: frozenset[str]

    def plan(self, deployer: Deployer) -> list[Task]:
        return getattr(deployer, "plan_" + self.name.replace(" ", "_"))()


# The new code takes no request before its migrations ran, and the site is down only from
# "stop" to "start": what is safe while the old release serves (build, collectstatic) runs first.
STAGES = [
    Stage("backup", frozenset()),
    Stage("checkout", frozenset(AFTER_CHECKOUT)),
    Stage("build", frozenset(AFTER_BUILD)),
    Stage("collectstatic", frozenset(AFTER_COLLECTSTATIC)),
    Stage("stop", frozenset(AFTER_OLD_RELEASE_STOPPED)),
    Stage("migrate", frozenset(AFTER_MIGRATIONS_BEGAN)),
    Stage("start", frozenset(AFTER_MIGRATIONS_BEGAN)),
    Stage("health", frozenset(AFTER_MIGRATIONS_BEGAN)),
    Stage("verify", frozenset(AFTER_MIGRATIONS_BEGAN)),
]
# Behind a reverse proxy, the stop stage turns on its maintenance answer (503, Retry-After) and
# this last stage sends the traffic to the verified release again.
ROUTE_STAGE = Stage("route", frozenset(AFTER_MIGRATIONS_BEGAN | {ROUTE_TRAFFIC}))


# Zero-downtime (blue/green): the old release serves until the proxy switches.  The migrations
# that run before the switch are backward compatible, so a failure up to the switch never
# restores the database: the new release's slot is removed and the proxy was never switched.
ZD_AFTER_BUILD = AFTER_CHECKOUT | {RESTORE_IMAGES}
ZD_AFTER_COLLECTSTATIC = ZD_AFTER_BUILD | {COLLECT_STATIC}
ZD_AFTER_START = ZD_AFTER_COLLECTSTATIC | {REMOVE_NEW_RELEASE}
ZERO_DOWNTIME_STAGES = [
    Stage("backup", frozenset()),
    Stage("checkout", frozenset(AFTER_CHECKOUT)),
    Stage("build", frozenset(ZD_AFTER_BUILD)),
    Stage("collectstatic", frozenset(ZD_AFTER_COLLECTSTATIC)),
    Stage("migrate", frozenset(ZD_AFTER_COLLECTSTATIC)),
    Stage("start", frozenset(ZD_AFTER_START)),
    Stage("health", frozenset(ZD_AFTER_START)),
    Stage("verify", frozenset(ZD_AFTER_START)),
    Stage("switch", frozenset(ZD_AFTER_START | {SWITCH_BACK})),
]
# Once the old release is gone (the contract step of expand/contract): a failure here is a
# stop-first recovery, with the database restored, as the old code cannot serve the new schema.
AFTER_SWITCH_MIGRATE_STAGE = Stage("migrate after switch", frozenset(AFTER_MIGRATIONS_BEGAN | {REMOVE_NEW_RELEASE}))


# Stages whose commands may print for minutes: -v 2 shows their newest line on a terminal.
LONG_STAGES = {"build", "migrate", "migrate after switch"}


def stages() -> list[Stage]:
    return STAGES + [ROUTE_STAGE] if ops_settings.PROXY else STAGES


class Deployer:
    def __init__(self, options: DeployOptions, report=lambda line, level=1: None, progress: Progress | None = None):
        self.options = options
        # report: free-form notes (level = the verbosity from which they show); progress: the
        # structured (stage, event, detail) events a caller styles by event.
        self.report = report
        self.progress = progress
        self.recorder = Recorder(DeploymentRecord.Kind.DEPLOY, requested_ref=options.ref or ops_settings.GIT_BRANCH)
        self.lock = DeployLock("deploy", str(self.recorder.record.id), break_stale=options.break_lock)
        # Set by an interactive caller: shown the plan's summary, returns whether to go on.
        self.confirm: Callable[[str], bool] | None = None

    # -- the whole run -------------------------------------------------------------------------
    def run(self) -> int:
        """Deploy; returns the exit code. Raises DeployOpsError (exit 3) when refused before any change."""
        try:
            ops_settings.validate()  # first: a malformed value must be named, not met halfway through
            checkout = Checkout(ops_settings.project_dir)
            runtime = get_runtime()
        except DeployOpsError as error:
            raise as_refusal(error) from None
        self.operation = Operation(
            checkout=checkout,
            runtime=runtime,
            recorder=self.recorder,
            report=self.report,
            progress=self.progress,
            health_retries=self.options.health_retries or ops_settings.HEALTH_CHECK_RETRIES,
            health_delay=ops_settings.HEALTH_CHECK_DELAY if self.options.health_delay is None else self.options.health_delay,
        )
        if self.options.dry_run:
            self.preflight(checkout, take_lock=False)
            self.print_plan()
            return EXIT_OK
        self.preflight(checkout, take_lock=True)
        try:
            if self.confirm and not self.confirm(self.summary()):
                raise PreflightFailed(_("Cancelled at the confirmation prompt."))
            with children.tracking(str(self.recorder.record.id)):
                return self.deploy()
        except BaseException as error:
            # A second Ctrl-C during the rollback, say: the record must not stay "running".
            if self.recorder.record.status == Status.RUNNING and self.recorder.stages:
                self.recorder.finish(
                    Status.INTERRUPTED, error=_("Interrupted: %(kind)s: %(error)s") % {"kind": type(error).__name__, "error": error}
                )
            raise
        finally:
            self.lock.release()

    def preflight(self, checkout: Checkout, take_lock: bool) -> None:
        try:
            ops_settings.validate()
        except DeployOpsError as error:
            raise as_refusal(error) from None
        if take_lock:
            acquire_lock(self.lock)
        try:
            if take_lock:
                take_over(self.lock.broken, self.operation.runtime, self.report)
                remove_unrouted_slots(self.operation.runtime, self.report)
            self._check_ready(checkout)
        except DeployOpsError as error:
            if take_lock:
                self.lock.release()
            raise as_refusal(error) from None

    def _check_ready(self, checkout: Checkout) -> None:
        missing = [tool for tool in _needed_tools() if shutil.which(tool) is None]
        if missing:
            raise PreflightFailed(
                _("Missing on this host: %(tools)s. Install them, or run `manage.py check --deploy` for details.")
                % {"tools": ", ".join(missing)}
            )
        checkout.refuse_if_dirty(_("a deploy must be able to restore this exact tree"))
        # Its rollback restores the backup it takes: a database that cannot be restored is refused now.
        refuse_restore_blockers(ops_settings.BACKUP_DATABASE, _("The deploy was refused"))
        refuse_if_unready(self.operation.runtime, self.options.force, self.report)
        _check_disk_room()
        previous = checkout.head()
        checkout.fetch(ops_settings.GIT_REMOTE)
        target = checkout.resolve(self.options.ref or ops_settings.GIT_BRANCH, ops_settings.GIT_REMOTE)
        self.operation.previous_sha = previous.sha
        self.operation.target_sha = target.sha
        self.choose_strategy(checkout, target.sha)
        self.recorder.update(
            save=False,
            from_commit=previous.sha,
            from_summary=previous.summary[:255],
            to_commit=target.sha,
            to_summary=target.summary[:255],
            strategy=self.strategy.strategy,
        )

    def choose_strategy(self, checkout: Checkout, sha: str) -> None:
        """The strategy, from the target's migration plan, before anything changes; a refusal when
        zero-downtime was asked for but cannot or may not run."""
        # The plan is classified where it can choose (slots behind a proxy, blue/green) or is to be
        # shown (--dry-run); elsewhere every deploy is stop-first and needs no classification.
        can_switch = self.find_slots()
        self.classified, self.unclassified_reason = (None, "")
        if self.options.dry_run or can_switch:
            self.classified, self.unclassified_reason = classify_target(checkout, sha)
        self.strategy = choose_strategy(self.classified, can_switch, self.options.strategy, self.options.force)

    def find_slots(self) -> bool:
        return find_slots(self.operation)

    def zero_downtime(self) -> bool:
        return self.strategy.strategy == ZERO_DOWNTIME

    def stages(self) -> list[Stage]:
        if not self.zero_downtime():
            return stages()
        after = [AFTER_SWITCH_MIGRATE_STAGE] if self.after_switch_migrations() else []
        return ZERO_DOWNTIME_STAGES + after

    def after_switch_migrations(self) -> list[MigrationVerdict]:
        return [migration for migration in self.classified or [] if migration.after_switch]

    def summary(self) -> str:
        record = self.recorder.record
        count = len(self.operation.checkout.pending_commits(record.from_commit, record.to_commit))
        return ngettext(
            "%(from)s (%(from_summary)s) -> %(to)s (%(to_summary)s), %(count)d new commit(s)",
            "%(from)s (%(from_summary)s) -> %(to)s (%(to_summary)s), %(count)d new commit(s)",
            count,
        ) % {
            "from": record.from_commit[:12],
            "from_summary": record.from_summary,
            "to": record.to_commit[:12],
            "to_summary": record.to_summary,
            "count": count,
        }

    def deploy(self) -> int:
        operation, recorder = self.operation, self.recorder
        recorder.save()
        emit(
            operation,
            DEPLOY_RUN,
            STARTED,
            _("Deploying %(target)s (%(summary)s) over %(previous)s")
            % {"target": operation.target_sha[:12], "summary": recorder.record.to_summary, "previous": operation.previous_sha[:12]},
        )
        signals.pre_deploy.send(sender=SENDER, record=recorder.record)
        notify(Level.INFO, recorder)
        begun: list[Stage] = []
        for stage in self.stages():
            begun.append(stage)
            try:
                run_step(operation, stage.name, functools.partial(self.run_stage, stage))
            except (Exception, KeyboardInterrupt) as error:  # any failure, a bug or a Ctrl-C, ends in a rollback
                return self.fail(stage, error, begun)
            if stage.name == "switch":
                self.retire_old_release()
        # Never raises: a failed off-host copy or cleanup is a warning on a deploy that succeeded.
        run_step(operation, "cleanup", lambda: after_deploy(operation))
        if operation.runtime.keeps_images:
            try:
                run_step(operation, PRUNE_IMAGES, self.prune_images)
            except Exception as error:  # as the cleanup: a warning on a deploy that succeeded
                operation.warnings.append(_("Old release images were not pruned: %(error)s") % {"error": describe_failure(error)})
        status = Status.SUCCEEDED_WITH_WARNINGS if operation.warnings else Status.SUCCEEDED
        recorder.finish(status, warnings="\n".join(operation.warnings))
        emit(
            operation,
            DEPLOY_RUN,
            SUCCEEDED,
            _("Deployed %(sha)s in %(duration)ss (%(status)s).")
            % {"sha": operation.target_sha[:12], "duration": decimal(finished_duration(recorder.record), ".1f"), "status": status.label},
        )
        signals.post_deploy.send(sender=SENDER, record=recorder.record)
        notify(Level.WARNING if operation.warnings else Level.SUCCESS, recorder)
        return EXIT_OK

    def fail(self, stage: Stage, error: BaseException, begun: list[Stage]) -> int:
        operation, recorder = self.operation, self.recorder
        message = describe_failure(error)
        recorder.update(failed_stage=stage.name, error=message)
        emit(operation, DEPLOY_RUN, FAILED, _("Stage %(stage)s failed: %(error)s") % {"stage": stage_label(stage.name), "error": message})
        signals.deploy_failed.send(sender=SENDER, record=recorder.record, error=error)
        notify(Level.ERROR, recorder)
        steps = set().union(*(begun_stage.undo for begun_stage in begun))
        if not steps:
            # Nothing had changed (the backup could not be written, say): a refusal, which
            # LastDeployment does not hold against the site.
            recorder.finish(Status.REFUSED, rollback_reason=_("Nothing had changed yet; nothing to undo."))
            emit(operation, ROLLBACK_RUN, SKIPPED, _("Nothing had changed yet; nothing to undo."))
            return EXIT_REFUSED
        if not (self.options.rollback and ops_settings.ROLLBACK_ENABLED and ops_settings.AUTO_ROLLBACK):
            why = _("--no-rollback was given") if not self.options.rollback else _("automatic rollback is disabled")
            recorder.finish(Status.FAILED, rollback_reason=_("Not rolled back: %(why)s.") % {"why": why})
            emit(
                operation,
                ROLLBACK_RUN,
                SKIPPED,
                _("Not rolling back (%(why)s). The site is in the state the failed stage left: a human is needed.") % {"why": why},
            )
            return EXIT_NEEDS_HUMAN
        if RESTORE_DATABASE in steps:
            database = _(
                "The database is restored from this deploy's backup: its migrations had begun, so the schema or the data may no longer "
                "serve the old code."
            )
        elif self.zero_downtime() and any(begun_stage.name == "migrate" for begun_stage in begun):
            database = _(
                "The database is not restored: the migrations that ran beside the old release are backward compatible, "
                "so it still serves the old code, which never stopped serving."
            )
        else:
            database = _("The database is not restored: no migration had run, so it still serves the old code as it is.")
        # The recovery works on the old release again: its health URL, its project.
        operation.health_url, operation.runtime.slot = "", None
        first_line = message.splitlines()[0] if message else ""
        recorder.update(
            rollback_reason=_("Stage %(stage)r failed: %(error)s") % {"stage": stage_label(stage.name), "error": first_line}
            + f"\n{database}"
        )
        emit(
            operation,
            ROLLBACK_RUN,
            STARTED,
            _("Rolling back to %(sha)s: %(steps)s")
            % {"sha": operation.previous_sha[:12], "steps": ", ".join(map(stage_label, planned_steps(steps)))},
        )
        try:
            recover(operation, steps, operation.previous_sha, operation.backup, safety_backup_required=False)
        except Exception as rollback_error:
            # Not verified (the health URL never answered, the services run) is not "the site is down".
            if isinstance(rollback_error, HealthUnverified):
                status, headline, cause = Status.ROLLBACK_UNVERIFIED, _("ROLLBACK NOT VERIFIED"), f"{rollback_error}"
            else:
                status, headline, cause = (
                    Status.ROLLBACK_FAILED,
                    _("ROLLBACK FAILED"),
                    _("The rollback failed too: %(error)s") % {"error": rollback_error},
                )
            recorder.finish(status, warnings="\n".join(operation.warnings), error=f"{message}\n\n{cause}")
            emit(operation, ROLLBACK_RUN, FAILED, _("%(headline)s: %(error)s") % {"headline": headline, "error": rollback_error})
            signals.rollback_finished.send(sender=SENDER, record=recorder.record, succeeded=False)
            notify(Level.ROLLBACK_FAILED, recorder)
            return EXIT_NEEDS_HUMAN
        recorder.finish(Status.ROLLED_BACK, warnings="\n".join(operation.warnings))
        emit(operation, ROLLBACK_RUN, SUCCEEDED, _("Rolled back: %(sha)s is serving again.") % {"sha": operation.previous_sha[:12]})
        signals.rollback_finished.send(sender=SENDER, record=recorder.record, succeeded=True)
        notify(Level.ROLLBACK_SUCCESS, recorder)
        return EXIT_ROLLED_BACK

    # -- the stages: each plans its tasks; a deploy runs them, --dry-run shows them ------------
    def run_stage(self, stage: Stage) -> str:
        if stage.name == "start" and self.zero_downtime():
            self.enter_new_slot()
        if stage.name == "start":
            # The log scan reads from here: what the old release logged before is not this deploy's.
            self.operation.services_started_at = timezone.now()
        with last_line_of_long_work() if stage.name in LONG_STAGES else contextlib.nullcontext() as on_line:
            outputs = [task.run(on_line) for task in stage.plan(self)]
        return "\n".join(output.strip() for output in outputs if output and output.strip())

    def enter_new_slot(self) -> None:
        """From the start stage on, the health and verify stages look at the new release's slot, directly."""
        self.operation.runtime.slot = self.operation.new_slot
        self.operation.health_url = ops_settings.PROXY["SLOTS"][self.operation.new_slot]["HEALTH_CHECK_URL"]

    def commands(self, commands: list[Command]) -> list[Task]:
        """Runtime commands as tasks, each with the runtime's time limit for it."""
        runtime = self.operation.runtime
        return [Task(command, timeout=runtime.timeout_for(command)) for command in commands]

    def plan_backup(self) -> list[Task]:
        where = _("%(compression)s dump of database %(database)r into %(folder)s") % {
            "compression": ops_settings.BACKUP_COMPRESSION,
            "database": ops_settings.BACKUP_DATABASE,
            "folder": ops_settings.backup_dir,
        }
        return [Task(action=self.take_backup, description=where)]

    def take_backup(self) -> str:
        backup = create_backup()
        self.operation.backup = backup
        # The rollback restores only this exact file: its sha256 is checked against the record's.
        self.operation.recorded_sha256 = backup.sha256 or ""
        self.recorder.update(backup_name=backup.name, backup_sha256=backup.sha256 or "")
        return ngettext("%(path)s (%(size)d byte)", "%(path)s (%(size)d bytes)", backup.size) % {"path": backup.path, "size": backup.size}

    def plan_checkout(self) -> list[Task]:
        # The fetch ran in the preflight (a dry run fetches too): the target is resolved from it.
        return [Task(checkout_command(self.operation.checkout.project_dir, self.operation.target_sha), timeout=GIT_TIMEOUT)]

    def plan_build(self) -> list[Task]:
        runtime, sha = self.operation.runtime, self.operation.target_sha
        tasks = self.commands(runtime.build_commands() + runtime.keep_release_commands(sha))
        images = runtime.release_images(sha)
        if images:
            # Kept by commit: a rollback to this release starts them again instead of building.
            tasks.append(
                Task(
                    action=lambda: self.record_images(images),
                    description=_("kept as the release's images: %(images)s") % {"images": ", ".join(images)},
                )
            )
        return tasks

    def record_images(self, images: list[str]) -> str:
        self.recorder.update(images="\n".join(images))
        return _("kept as %(images)s") % {"images": ", ".join(images)}

    def plan_stop(self) -> list[Task]:
        # The old release stops before the migrations: it never meets the new schema, and two
        # releases never write the database at once.
        runtime = self.operation.runtime
        stop = self.commands(runtime.stop_commands())
        proxy = configured_proxy()
        if proxy is None:
            return stop
        if ops_settings.PROXY.get("SLOTS") and runs_side_by_side(runtime):
            # A release that a blue/green deploy left in its slot stops too: stop-first brings the
            # new one up as the project's own web service, at ADDRESS.
            stop += [
                Task(command, timeout=runtime.timeout_for(command))
                for slot in runtime.slots_running()
                for command in runtime.remove_slot_commands(slot)
            ]
        seconds = retry_after()
        maintenance = Task(
            action=lambda: proxy.serve_maintenance(seconds),
            description=_("%(proxy)s answers 503 with Retry-After: %(seconds)s and the maintenance page, then the old release stops")
            % {"proxy": proxy.kind, "seconds": seconds},
        )
        return [maintenance, *stop]

    def plan_route(self) -> list[Task]:
        proxy, address = planned_proxy(), proxy_address()
        return [
            Task(
                action=lambda: proxy.route_to(address),
                description=_("%(proxy)s sends the traffic to %(address)s again") % {"proxy": proxy.kind, "address": address},
            )
        ]

    def plan_start(self) -> list[Task]:
        runtime = self.operation.runtime
        if self.zero_downtime():
            return self.commands(runtime.start_slot_commands(self.operation.new_slot, self.operation.target_sha))
        return self.commands(runtime.start_commands())

    def plan_migrate(self) -> list[Task]:
        runtime = self.operation.runtime
        later = self.after_switch_migrations() if self.zero_downtime() else []
        if not later:
            return self.commands([runtime.manage_command("migrate", "--noinput")])
        # Up to each app's last migration before the switch; the after-switch ones wait.
        assert self.classified is not None, "after-switch migrations are found in the classified plan"
        last_before: dict[str, str] = {}
        for migration in self.classified:
            if not migration.after_switch:
                last_before[migration.app] = migration.name
        return self.commands([runtime.manage_command("migrate", app, name, "--noinput") for app, name in last_before.items()])

    def plan_migrate_after_switch(self) -> list[Task]:
        return self.commands([self.operation.runtime.manage_command("migrate", "--noinput")])

    def plan_switch(self) -> list[Task]:
        proxy, slot = planned_proxy(), self.operation.new_slot
        address = ops_settings.PROXY["SLOTS"][slot]["ADDRESS"]
        description = _(
            "%(proxy)s sends new requests to the new release in slot %(slot)s (%(address)s), then waits for its old workers"
        ) % {
            "proxy": proxy.kind,
            "slot": slot,
            "address": address,
        }
        return [Task(action=lambda: proxy.route_to(address), description=description)]

    def retire_old_release(self) -> None:
        """The old release's containers drained and stopped, once the proxy sends it nothing more.
        The new release serves already: a failure is a warning, not a rollback."""
        operation = self.operation
        try:
            run_step(operation, RETIRE_OLD_RELEASE, lambda: retire_old_release(operation))
        except Exception as error:
            operation.warnings.append(_("The old release could not be stopped: %(error)s") % {"error": describe_failure(error)})

    def plan_collectstatic(self) -> list[Task]:
        if not ops_settings.COLLECT_STATIC:
            return [Task(action=lambda: str(COLLECTSTATIC_SKIPPED), description=str(COLLECTSTATIC_SKIPPED))]
        return self.commands([self.operation.runtime.manage_command("collectstatic", "--noinput")])

    def plan_health(self) -> list[Task]:
        operation = self.operation
        probe = _("GET %(url)s up to %(retries)s times, %(delay)ss apart; service states") % {
            "url": operation.health_url or ops_settings.HEALTH_CHECK_URL,
            "retries": operation.health_retries,
            "delay": operation.health_delay,
        }
        return [Task(action=lambda: wait_until_healthy(operation), description=probe)]

    def plan_verify(self) -> list[Task]:
        runtime = self.operation.runtime
        # The same check classes as /health/, run by the new release itself; the services are
        # inspected from here, as inside the web container the Docker engine is out of reach.
        own_checks = self.commands([runtime.manage_command("check"), runtime.manage_command("healthcheck", "--gate", "--skip-services")])
        # What only the host sees (backups, disk), run here.
        checks = host_checks(leave_out=(ServicesRunning,))
        return own_checks + [
            Task(
                action=lambda: require_healthy(run_checks(checks)),
                description=_("on this host: %(checks)s") % {"checks": ", ".join(map(repr, checks))},
            ),
            Task(action=self.check_services, description=_("every service running and healthy")),
            Task(
                action=self.scan_logs,
                description=_("service logs scanned for %(patterns)s (django-health-check's own records left out)")
                % {"patterns": ops_settings.LOG_ERROR_PATTERNS},
            ),
        ]

    def check_services(self) -> str:
        states = self.operation.runtime.service_states()
        down = [state for state in states if not state.ok]
        if down:
            raise HealthCheckFailed(_("Services not healthy: %(services)s") % {"services": describe_states(down)})
        return ngettext("%(count)d service healthy", "%(count)d services healthy", len(states)) % {"count": len(states)}

    def scan_logs(self) -> str:
        since = self.operation.services_started_at or self.recorder.record.started_at
        matches = find_error_patterns(self.operation.runtime.logs_since(since), ops_settings.LOG_ERROR_PATTERNS)
        if matches:
            raise HealthCheckFailed(_("The service logs show errors since this deploy started:") + "\n" + "\n".join(matches[:10]))
        return _("no error patterns in the logs")

    def prune_images(self) -> str:
        operation = self.operation
        keep = releases_to_keep(operation.target_sha, operation.previous_sha)
        removed = operation.runtime.prune_release_images({sha[:12] for sha in keep})
        return _("removed %(images)s") % {"images": ", ".join(removed)} if removed else _("nothing to remove")

    # -- dry run -------------------------------------------------------------------------------
    def print_plan(self) -> None:
        operation, report = self.operation, self.report
        commits = operation.checkout.pending_commits(operation.previous_sha, operation.target_sha)
        report(
            _("Would deploy %(target)s over %(previous)s.")
            % {"target": operation.target_sha[:12], "previous": operation.previous_sha[:12]},
            0,
        )
        if operation.previous_sha == operation.target_sha:
            report("  " + _("The target is already checked out; a deploy would rebuild and restart the same release."), 0)
        report(_("Commits that would go out (%(count)d):") % {"count": len(commits)}, 0)
        for commit in commits:
            report(f"  {commit.short} {commit.summary}", 0)
        report(_("Migrations the target would apply, each operation classified for the release serving now:"), 0)
        lines = (
            describe_plan(self.classified)
            if self.classified is not None
            else [_("(not classified: %(why)s)") % {"why": self.unclassified_reason}]
        )
        for line in lines:
            report(f"  {line}", 0)
        report(_("Strategy: %(strategy)s, because %(reason)s.") % {"strategy": self.strategy.strategy, "reason": self.strategy.reason}, 0)
        how = how_images_come_back(operation.runtime, operation.previous_sha)
        report(_("A rollback would bring back %(sha)s: %(how)s.") % {"sha": operation.previous_sha[:12], "how": how}, 0)
        report(_("Stages and the commands they would run (the same tasks a deploy runs):"), 0)
        for stage in self.stages():
            if stage.name == "start" and self.zero_downtime():
                self.enter_new_slot()
            for task in stage.plan(self):
                emit(operation, stage.name, PLANNED, task.display())
            if stage.name == "switch":
                for command in retire_commands(operation):
                    emit(operation, RETIRE_OLD_RELEASE, PLANNED, command.display())
        report(_("Dry run: nothing was changed."), 0)


def releases_to_keep(current: str, previous: str) -> set[str]:
    """The commits whose images a prune keeps: the newest KEEP_RELEASES deployed releases, the
    current one, the one it would roll back to, and every one a kept backup was taken of (a
    restore of that backup brings back the schema that release expects)."""
    deployed = DeploymentRecord.objects.filter(kind=DeploymentRecord.Kind.DEPLOY, status__in=SUCCEEDED_STATUSES)
    newest = list(dict.fromkeys(deployed.order_by("-started_at").values_list("to_commit", flat=True)))[: ops_settings.KEEP_RELEASES]
    backed_up = {backup.commit for backup in list_backups()}
    return {current, previous, *newest, *backed_up} - {""}


def as_refusal(error: DeployOpsError) -> DeployOpsError:
    """Before anything changed, every failure is a refusal (exit 3), whatever its kind."""
    return error if error.exit_code == EXIT_REFUSED else PreflightFailed(str(error))


TRACEBACK_START = "Traceback (most recent call last):"
CHAINED_TRACEBACK = ("During handling of the above exception", "The above exception was the direct cause")
# The runtime's "service | " prefix on each line of a Compose log.
SERVICE_PREFIX = re.compile(r"^[\w.-]+ \| ")
# django-health-check logs every failing or warning check at WARNING with the traceback of its
# run(), raised through its own get_result(): a frame in that package marks the machinery's record.
HEALTH_CHECK_FRAME = re.compile(r'File "[^"]*[/\\]health_check[/\\]')


def find_error_patterns(logs: str, patterns: list[str]) -> list[str]:
    """The log lines that show an error pattern, leaving out the health-check machinery's own records.

    A failing check is reported by /health/ itself; its logged traceback says nothing new, and a
    warning (a rolled-back deploy on record) must not fail a healthy release.
    """
    compiled = [re.compile(re.escape(pattern)) for pattern in patterns]
    return [
        line.strip()
        for record in log_records(logs.splitlines())
        if not any(HEALTH_CHECK_FRAME.search(line) for line in record)
        for line in record
        if any(regex.search(line) for regex in compiled)
    ]


def log_records(lines: list[str]) -> list[list[str]]:
    """Lines grouped into log records: a traceback belongs to the line logged before it."""
    records: list[list[str]] = []
    in_traceback = False
    for line in lines:
        body = SERVICE_PREFIX.sub("", line, count=1)
        starts_traceback = body.startswith(TRACEBACK_START) or body.startswith(CHAINED_TRACEBACK)
        continues = bool(records) and (starts_traceback or not body.strip() or (in_traceback and body[:1].isspace()))
        if continues:
            records[-1].append(line)
            in_traceback = in_traceback or starts_traceback
        elif in_traceback:
            records[-1].append(line)  # the exception's own line ends the traceback
            in_traceback = False
        else:
            records.append([line])
            in_traceback = starts_traceback
    return records


@contextlib.contextmanager
def target_worktree(checkout: Checkout, sha: str):
    """A temporary ``git worktree`` of ``sha`` (nothing else changes); yields its path, or raises PreflightFailed."""
    with tempfile.TemporaryDirectory(prefix="deploy_ops_plan_") as folder:
        worktree = Path(folder) / "release"
        added = subprocess.run(
            ["git", "worktree", "add", "--detach", str(worktree), sha], cwd=checkout.project_dir, capture_output=True, text=True
        )
        if added.returncode != 0:
            raise PreflightFailed(_("Could not prepare the target's tree: %(error)s") % {"error": added.stderr.strip()})
        try:
            yield worktree
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(worktree)], cwd=checkout.project_dir, capture_output=True)


def classify_target(checkout: Checkout, sha: str) -> tuple[list[MigrationVerdict] | None, str]:
    """The target release's pending migrations, classified by its own code (``manage.py migration_safety --json``
    in a temporary worktree, given what the serving database has applied); (None, why) when that could not run."""
    try:
        applied = applied_migrations()
    except (DatabaseError, ConnectionDoesNotExist) as error:
        return None, _("the applied migrations could not be read: %(error)s") % {"error": mask(str(error))}
    try:
        with target_worktree(checkout, sha) as worktree:
            classified = subprocess.run(
                [sys.executable, "manage.py", "migration_safety", "--json", "--applied", "-"],
                input=json.dumps(applied),
                cwd=worktree,
                capture_output=True,
                text=True,
                timeout=120,
            )
    except (PreflightFailed, subprocess.TimeoutExpired) as error:
        return None, str(error)
    if classified.returncode != 0:
        last = (
            classified.stderr.strip().splitlines()[-1]
            if classified.stderr.strip()
            else _("exit code %(code)s") % {"code": classified.returncode}
        )
        return None, _("manage.py migration_safety failed in the target: %(error)s") % {"error": mask(last)}
    try:
        return plan_from_json(json.loads(classified.stdout)), ""
    except (ValueError, KeyError, TypeError) as error:
        return None, _("manage.py migration_safety printed no classification: %(error)s") % {"error": error}


def applied_migrations() -> list[str]:
    return sorted(f"{app}.{name}" for app, name in MigrationRecorder(connections[ops_settings.BACKUP_DATABASE]).applied_migrations())


def _needed_tools() -> list[str]:
    from .checks import needed_tools

    return needed_tools()


def _check_disk_room() -> None:
    existing = nearest_existing(ops_settings.backup_dir)
    free_mb = shutil.disk_usage(existing).free // (1024 * 1024)
    newest = next(iter(list_backups()), None)
    # A new backup will be about as big as the last one; ask for that plus the configured margin.
    wanted = ops_settings.BACKUP_MIN_FREE_MB + ((newest.size if newest else 0) // (1024 * 1024))
    if free_mb < wanted:
        raise PreflightFailed(
            _(
                "Only %(free)s MB free in %(folder)s; the backup needs about %(wanted)s MB. Free space or prune backups (`manage.py "
                "backups prune`)."
            )
            % {"free": free_mb, "folder": existing, "wanted": wanted}
        )
