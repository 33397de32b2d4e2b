"""The undo pieces shared by the automatic rollback and ``manage.py rollback``.

Each deploy stage names the recovery steps it needs once it has begun (see
``Stage.undo``); a rollback runs the union of those steps, always in ``STEP_ORDER``:
a safety backup of the current database when it will be restored, the code, then the services down, the database back,
the previous release rebuilt and started, and its health verified.  A manual rollback picks the same steps by hand.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, TypeVar
from urllib.parse import urlsplit

from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from .audit import Recorder
from .backups import Backup, create_backup, file_sha256, restore_backup
from .conf import ops_settings
from .exceptions import BackupCorrupt, DeployOpsError, HealthCheckFailed, HealthUnverified
from .gitrepo import Checkout
from .humanize import decimal
from .models import DeploymentRecord, DeploymentStage
from .probe import probe_health
from .proxy import MAINTENANCE, ReverseProxy, configured_proxy, proxy_address, retry_after
from .runtimes import ServiceRuntime
from .secrets import mask
from .stages import (
    COLLECT_STATIC,
    REMOVE_NEW_RELEASE,
    RESTORE_DATABASE,
    RESTORE_IMAGES,
    RETIRE_OLD_RELEASE,
    REVERT_CODE,
    ROUTE_TRAFFIC,
    SAFETY_BACKUP,
    START_BESIDE,
    START_SERVICES,
    STEP_ORDER,
    STOP_SERVICES,
    SWITCH_BACK,
    SWITCH_TRAFFIC,
    UNAPPLY_MIGRATIONS,
    VERIFY_HEALTH,
    stage_label,
)


def report_nothing(line: str, level: int = 1) -> None:
    """The report of an operation nobody reads."""


@dataclass
class Operation:
    """What a deploy or a rollback works on, and what it learns as it goes."""

    checkout: Checkout
    runtime: ServiceRuntime
    recorder: Recorder
    report: Callable[[str, int], None] = report_nothing
    health_retries: int = 3
    health_delay: float = 10
    # Filled in by the stages.
    previous_sha: str = ""
    target_sha: str = ""
    backup: Backup | None = None
    # The sha256 a record holds for ``backup`` when the backup was chosen from that record.
    recorded_sha256: str = ""
    # (app label, migration to go back to, or "zero") for a code-only rollback past migrations.
    migration_targets: list[tuple[str, str]] = field(default_factory=list)
    services_started_at: datetime | None = None
    # Blue/green: where the proxy sent the traffic before the deploy (the old release), the slot
    # the new release starts in, and the URL its health is checked at ("" : HEALTH_CHECK_URL).
    serving_address: str = ""
    new_slot: str = ""
    health_url: str = ""
    warnings: list[str] = field(default_factory=list)
    # The structured progress callback (stage, event, detail); without one, events become report lines.
    progress: Progress | None = None


# -- progress ---------------------------------------------------------------------------------
# Progress is reported as (stage, event, detail): a caller styles and filters by event, never by
# searching the words of a line.  The whole run's own events use these stage names.
Progress = Callable[[str, str, str], None]
DEPLOY_RUN = "deploy"
ROLLBACK_RUN = "rollback"
STARTED = "started"
SUCCEEDED = "succeeded"
FAILED = "failed"
SKIPPED = "skipped"
# --dry-run: one command (or in-process action) the stage would run, as it would run it.
PLANNED = "planned"


def emit(operation, stage: str, event: str, detail: str = "") -> None:
    """Send a progress event to the operation's callback; without one, as a report line.

    ``operation`` is an Operation or anything with ``report`` (restore.py's steps).
    """
    progress = getattr(operation, "progress", None)
    if progress is not None:
        progress(stage, event, detail)
    else:
        operation.report(*progress_line(stage, event, detail))


def command_progress(stdout, style, verbosity: int) -> Progress:
    """The progress callback of a management command: its lines, failures in the error style."""

    def progress(stage: str, event: str, detail: str) -> None:
        line, level = progress_line(stage, event, detail)
        if verbosity >= level:
            stdout.write(style.ERROR(line) if event == FAILED else line)

    return progress


def progress_line(stage: str, event: str, detail: str) -> tuple[str, int]:
    """The text of a progress event and the verbosity from which it is shown."""
    if stage in (DEPLOY_RUN, ROLLBACK_RUN):
        return detail, 0
    label = stage_label(stage)
    return {
        STARTED: ("  " + _("%(stage)s ...") % {"stage": label}, 2),
        SUCCEEDED: ("  " + _("%(stage)s: ok (%(duration)s)") % {"stage": label, "duration": detail}, 1),
        FAILED: ("  " + _("%(stage)s: FAILED after %(duration)s") % {"stage": label, "duration": detail}, 1),
        PLANNED: (f"  {label}: {detail}", 0),
    }.get(event, (f"  {label}: {event} {detail}".rstrip(), 1))


# -- health -----------------------------------------------------------------------------------
def wait_until_healthy(operation: Operation) -> str:
    """HEALTH_CHECK_URL answers 200 and every service is running and healthy, within the retries."""
    url = operation.health_url or ops_settings.HEALTH_CHECK_URL
    problem = ""
    for attempt in range(1, operation.health_retries + 1):
        probe = probe_health(url)
        bad_services = [state for state in operation.runtime.service_states() if not state.ok]
        if probe.healthy and not bad_services:
            operation.warnings.extend(_health_warnings(probe.body))
            return _("%(url)s answered 200 on try %(attempt)s") % {"url": url, "attempt": attempt}
        if not probe.healthy:
            problem = probe.problem()
        else:
            problem = _("services not healthy: %(services)s") % {"services": describe_states(bad_services)}
        operation.report(
            "    "
            + _("health try %(attempt)s/%(retries)s: %(problem)s")
            % {"attempt": attempt, "retries": operation.health_retries, "problem": problem},
            2,
        )
        if attempt < operation.health_retries:
            time.sleep(operation.health_delay)
    raise HealthCheckFailed(
        _("Not healthy after %(retries)s tries: %(problem)s") % {"retries": operation.health_retries, "problem": problem}
    )


def describe_states(states) -> str:
    """Services that are not healthy, as "web is unhealthy, worker is exited"."""
    return ", ".join(_("%(service)s is %(state)s") % {"service": s.name, "state": s.health or s.state} for s in states)


def _health_warnings(body: str) -> list[str]:
    """/health/ answers 200 with warnings (django-health-check's "Warning: ..." results)."""
    try:
        results = json.loads(body)
    except ValueError:
        return []
    if not isinstance(results, dict):
        return []
    return [f"{name}: {result}" for name, result in results.items() if isinstance(result, str) and result.startswith("Warning")]


# -- the steps ----------------------------------------------------------------------------------
def revert_code(operation: Operation, sha: str) -> str:
    operation.checkout.checkout(sha)
    return _("checked out %(sha)s %(summary)s") % {"sha": sha[:12], "summary": operation.checkout.summary(sha)}


def stop_services(operation: Operation) -> str:
    # Behind a proxy, the stopped window answers 503 with Retry-After, never a refused connection.
    # A proxy that cannot be switched must not keep a recovery from bringing the release back.
    proxy, notice = configured_proxy(), ""
    if proxy:
        try:
            notice = proxy.serve_maintenance(retry_after()) + "\n"
        except DeployOpsError as error:
            operation.warnings.append(
                _("The proxy could not answer with its maintenance page while the services were stopped: %(error)s") % {"error": error}
            )
    runtime = operation.runtime
    if proxy and (ops_settings.PROXY or {}).get("SLOTS") and runs_side_by_side(runtime):
        # A release serving from a blue/green slot stops too: the recovery starts the release it
        # brings back as the project's own web service, at ADDRESS.
        notice += "".join(runtime.run_commands(runtime.remove_slot_commands(slot)) for slot in runtime.slots_running())
    return notice + runtime.stop()


def planned_proxy() -> ReverseProxy:
    """The proxy of a traffic step, which is only planned where DEPLOY_OPS['PROXY'] is set."""
    proxy = configured_proxy()
    assert proxy is not None, "a traffic step is only planned behind a configured proxy"
    return proxy


def route_traffic(operation: Operation) -> str:
    return planned_proxy().route_to(proxy_address())


def switch_back(operation: Operation) -> str:
    return planned_proxy().route_to(operation.serving_address)


def remove_new_release(operation: Operation) -> str:
    runtime = operation.runtime
    output = runtime.run_commands(runtime.remove_slot_commands(operation.new_slot))
    return _("Removed the new release's slot %(slot)s.") % {"slot": operation.new_slot} + ("\n" + output if output.strip() else "")


def runs_side_by_side(runtime: ServiceRuntime) -> bool:
    """Whether the runtime can start a release beside the serving one (blue/green slots)."""
    return runtime.can_run_side_by_side()


def find_slots(operation: Operation) -> bool:
    """Whether a release can start beside the serving one behind the proxy (blue/green).  Sets the
    operation's serving address and the slot the other release starts in."""
    found = slot_beside(operation.runtime)
    if found is None:
        return False
    operation.serving_address, operation.new_slot = found
    return True


def slot_beside(runtime: ServiceRuntime) -> tuple[str, str] | None:
    """Where the proxy sends the traffic now and the slot a release can start in beside it: a proxy
    with two SLOTS that routes to a release now, and a runtime that runs side by side; else None."""
    proxy = configured_proxy()
    slots = (ops_settings.PROXY or {}).get("SLOTS") or {}
    if not (proxy and slots and runs_side_by_side(runtime)):
        return None
    routed = proxy.routed_to()
    if routed is None or routed == MAINTENANCE:
        return None
    return routed, next(slot for slot, config in slots.items() if config["ADDRESS"] != routed)


def start_beside(operation: Operation, sha: str) -> str:
    runtime, slot = operation.runtime, operation.new_slot
    runtime.slot = None
    output = runtime.run_commands(runtime.start_slot_commands(slot, sha))
    # From here the health check looks at the release in its slot, directly.
    runtime.slot = slot
    operation.health_url = ops_settings.PROXY["SLOTS"][slot]["HEALTH_CHECK_URL"]
    return output


def switch_traffic(operation: Operation) -> str:
    return planned_proxy().route_to(ops_settings.PROXY["SLOTS"][operation.new_slot]["ADDRESS"])


def retire_commands(operation: Operation) -> list:
    """Stop the release the proxy no longer sends traffic to: its slot, or the project's own web service
    (only that: the database and the rest serve the other release too)."""
    runtime = operation.runtime
    old_slot = next((slot for slot, config in ops_settings.PROXY["SLOTS"].items() if config["ADDRESS"] == operation.serving_address), None)
    return runtime.remove_slot_commands(old_slot) if old_slot else runtime.stop_web_commands()


def retire_old_release(operation: Operation) -> str:
    runtime = operation.runtime
    runtime.slot = None
    try:
        return runtime.run_commands(retire_commands(operation))
    finally:
        runtime.slot = operation.new_slot


def remove_unrouted_slots(runtime, report) -> None:
    """A blue/green slot the proxy does not send traffic to serves nobody: a new release that a run
    which died had started (killed before its switch), or an old one it could not stop.  Removed
    when the next run takes over, before anything else; the proxy stays where it is."""
    proxy = configured_proxy()
    slots = (ops_settings.PROXY or {}).get("SLOTS") or {}
    if not (proxy and slots and runs_side_by_side(runtime)):
        return
    routed = proxy.routed_to()
    for slot in runtime.slots_running():
        if slots[slot]["ADDRESS"] != routed:
            runtime.run_commands(runtime.remove_slot_commands(slot))
            report(_("Removed the slot %(slot)s, which the proxy sends no traffic to (left by a run that died).") % {"slot": slot}, 0)


def safety_backup(operation: Operation) -> Backup:
    return create_backup()


def restore_database(operation: Operation, backup: Backup) -> str:
    if operation.recorded_sha256 and file_sha256(backup.path) != operation.recorded_sha256:
        # Checked again here: the file may have been swapped while the operator read the plan.
        raise BackupCorrupt(_("%(name)s is not the backup on record: its sha256 changed since the plan was made.") % {"name": backup.name})
    result = restore_backup(backup, safety_backup=False)
    operation.warnings.extend(result.warnings)
    return _("restored %(name)s") % {"name": backup.name}


def unapply_migrations(operation: Operation) -> str:
    return "".join(operation.runtime.manage("migrate", label, name, "--noinput") for label, name in operation.migration_targets)


def restore_images(operation: Operation, sha: str) -> str:
    """Point the services at the kept images of ``sha``; build (and keep) them only when they are gone."""
    runtime = operation.runtime
    images = runtime.release_images(sha)
    if runtime.keeps_images:
        missing = runtime.missing_release_images(sha)
        if not missing:
            runtime.run_commands(runtime.use_release_commands(sha))
            operation.recorder.update(images="\n".join(images))
            return _("started from the kept images, no build: %(images)s") % {"images": ", ".join(images)}
        operation.warnings.append(
            _("The images of %(sha)s were gone (%(images)s): the rollback had to build them.")
            % {"sha": sha[:12], "images": ", ".join(missing)}
        )
    output = runtime.build() + runtime.run_commands(runtime.keep_release_commands(sha))
    operation.recorder.update(images="\n".join(images))
    return (_("built, as its images were gone") + "\n" if runtime.keeps_images else "") + output


def images_kept(runtime, sha: str) -> bool | None:
    """Whether the release ``sha`` can come back without a build; None where the runtime keeps no
    images (it runs its build step) or the engine cannot be asked."""
    if not runtime.keeps_images:
        return None
    try:
        return not runtime.missing_release_images(sha)
    except DeployOpsError:
        return None


def how_images_come_back(runtime: ServiceRuntime, sha: str) -> str:
    """How a rollback would bring the release ``sha``'s services back, for plans and dry runs."""
    if not runtime.keeps_images:
        return _("run its build step (this runtime keeps no images)")
    kept = images_kept(runtime, sha)
    if kept is None:
        return _("start its kept images, or build them where they are gone (the engine could not be asked which)")
    if kept:
        return _("start its kept images, no build (%(images)s)") % {"images": ", ".join(runtime.release_images(sha))}
    return _("BUILD it again: its images are gone (%(images)s)") % {"images": ", ".join(runtime.missing_release_images(sha))}


def start_services(operation: Operation) -> str:
    return operation.runtime.start()


COLLECTSTATIC_SKIPPED = gettext_lazy("skipped: COLLECT_STATIC is False, the release collects its static files when it starts")


def collect_static(operation: Operation) -> str:
    if not ops_settings.COLLECT_STATIC:
        return str(COLLECTSTATIC_SKIPPED)
    return operation.runtime.manage("collectstatic", "--noinput")


def verify_health(operation: Operation) -> str:
    try:
        return wait_until_healthy(operation)
    except HealthCheckFailed as error:
        if not _only_the_url_is_silent(operation):
            raise
        raise HealthUnverified(
            _(
                "Every rollback step ran and every service reports running, but %(url)s never answered, so the previous "
                "release could not be verified (not known to be down). Check the site and DEPLOY_OPS['HEALTH_CHECK_URL']."
            )
            % {"url": ops_settings.HEALTH_CHECK_URL}
            + f"\n{error}"
        ) from None


def _only_the_url_is_silent(operation: Operation) -> bool:
    """ "Could not verify" rather than "verified down": nothing listens where the URL points, and
    services that are known to run (an HTTP error answer is a verdict; silence is not)."""
    if _something_listens(ops_settings.HEALTH_CHECK_URL, ops_settings.HEALTH_CHECK_TIMEOUT):
        return False
    try:
        states = operation.runtime.service_states()
    except DeployOpsError:
        return False
    return bool(states) and all(state.ok for state in states)


def _something_listens(url: str, timeout: float) -> bool:
    parts = urlsplit(url)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        with socket.create_connection((parts.hostname or "", port), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


def describe_failure(error: BaseException) -> str:
    if isinstance(error, KeyboardInterrupt):
        return _("Interrupted by the operator (Ctrl-C).")
    # Masked: the error may quote a release's output, and it is printed, recorded and sent.
    return mask(str(error) if isinstance(error, DeployOpsError) else f"{type(error).__name__}: {error}")


def planned_steps(steps: set[str]) -> list[str]:
    """The steps a recovery will run, in order (a restore or an unapply brings its safety backup;
    behind a proxy, stopping the services brings the traffic back at the end)."""
    if steps & {RESTORE_DATABASE, UNAPPLY_MIGRATIONS}:
        steps = steps | {SAFETY_BACKUP}
    if STOP_SERVICES in steps and ops_settings.PROXY:
        steps = steps | {ROUTE_TRAFFIC}
    return [name for name in STEP_ORDER if name in steps]


class RecordedWork(Protocol):
    """What run_step needs of the work it records a step of: an Operation, or restore.py's steps."""

    @property
    def recorder(self) -> Recorder: ...

    @property
    def report(self) -> Callable[[str, int], None]: ...


StepResult = TypeVar("StepResult")


def run_step(operation: RecordedWork, name: str, action: Callable[[], StepResult]) -> StepResult:
    """Run one named step as a recorded stage; report it; re-raise its error after recording."""
    recorder = operation.recorder
    stage = recorder.start_stage(name)
    emit(operation, name, STARTED)
    try:
        result = action()
    except (Exception, KeyboardInterrupt) as error:
        recorder.finish_stage(stage, DeploymentStage.Status.FAILED, describe_failure(error))
        emit(operation, name, FAILED, f"{decimal(finished_duration(stage), '.1f')}s")
        raise
    recorder.finish_stage(stage, DeploymentStage.Status.SUCCEEDED, result if isinstance(result, str) else "")
    emit(operation, name, SUCCEEDED, f"{decimal(finished_duration(stage), '.1f')}s")
    return result


def finished_duration(finished: DeploymentRecord | DeploymentStage) -> float:
    """The seconds a record or a stage took, which the Recorder has just set as it finished it."""
    assert finished.duration is not None, "the Recorder sets the duration as it finishes"
    return finished.duration


def recover(operation: Operation, steps: set[str], to_sha: str, backup: Backup | None, safety_backup_required: bool) -> None:
    """Run the chosen recovery steps in STEP_ORDER.  Raises the first step's error.

    A restore or an unapply is always preceded by a safety backup of the current database.  When it is
    required (manual recovery) its failure stops everything; in an automatic rollback it is
    best effort, because bringing the previous release back matters more.
    """

    def restore_chosen_backup() -> str:
        # Planned only with a backup: the deploy's own (its first stage), or the one the rollback chose.
        assert backup is not None, "a database restore is only planned with a backup"
        return restore_database(operation, backup)

    actions: dict[str, Callable[[], str]] = {
        REVERT_CODE: lambda: revert_code(operation, to_sha),
        STOP_SERVICES: lambda: stop_services(operation),
        UNAPPLY_MIGRATIONS: lambda: unapply_migrations(operation),
        RESTORE_DATABASE: restore_chosen_backup,
        RESTORE_IMAGES: lambda: restore_images(operation, to_sha),
        START_SERVICES: lambda: start_services(operation),
        COLLECT_STATIC: lambda: collect_static(operation),
        VERIFY_HEALTH: lambda: verify_health(operation),
        ROUTE_TRAFFIC: lambda: route_traffic(operation),
        SWITCH_BACK: lambda: switch_back(operation),
        START_BESIDE: lambda: start_beside(operation, to_sha),
        SWITCH_TRAFFIC: lambda: switch_traffic(operation),
        RETIRE_OLD_RELEASE: lambda: retire_old_release(operation),
        REMOVE_NEW_RELEASE: lambda: remove_new_release(operation),
    }
    end_own_work(operation)
    for name in planned_steps(steps):
        if name == SAFETY_BACKUP:
            _run_safety_backup(operation, required=safety_backup_required)
        else:
            run_step(operation, name, actions[name])


def end_own_work(operation: Operation) -> None:
    """What an interrupted step may have left behind, before anything else runs.

    A Ctrl-C reaches the whole foreground process group, so GitPython's long-lived ``git
    cat-file`` may be dead (the next read would fail with a broken pipe): start afresh.  A
    one-off container (``compose run`` of migrate) goes on after its client was stopped: end it.
    """
    operation.checkout.forget_git_processes()
    try:
        for line in operation.runtime.stop_one_off_work():
            operation.report("    " + _("stopped %(what)s") % {"what": line}, 1)
    except DeployOpsError as error:
        operation.warnings.append(_("Could not look for one-off containers still running: %(error)s") % {"error": error})


def _run_safety_backup(operation: Operation, required: bool) -> None:
    """A required safety backup's failure stops the recovery; an optional one's becomes a warning."""
    try:
        backup = run_step(operation, SAFETY_BACKUP, lambda: safety_backup(operation))
    except DeployOpsError as error:
        if required:
            raise
        operation.warnings.append(_("No safety backup before the restore: %(error)s") % {"error": error})
        return
    operation.report("    " + _("safety backup: %(path)s") % {"path": backup.path}, 1)
