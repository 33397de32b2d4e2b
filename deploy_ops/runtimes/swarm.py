"""Docker Swarm: the project's Compose file deployed as a stack, one `docker stack deploy` per release.

Builds, the release's kept images and the one-off containers (migrate, collectstatic, the
release's own checks) are the Compose runtime's, on the manager: ``compose build`` and ``compose
run`` read the same Compose file the stack is made from, so a migration has the services'
environment, volumes and network.  What differs is the start: ``swarm_stack.py`` (a child
process, see there) deploys the checked-out release as the stack, every built service pinned
to its ``<project>-<service>:<commit12>`` tag, and waits on the engine until it converged.  A
rollback is the same start of the previous release: one stack deploy for every service, not
swarm's per-service ``service rollback``.  States and logs come from the Docker SDK.
"""

from __future__ import annotations

import sys
from datetime import datetime

from django.utils.translation import gettext as _
from docker.errors import DockerException, NotFound

from .. import children
from ..conf import ops_settings
from ..exceptions import ServiceError
from ..runner import Command
from . import swarm_stack
from .base import ServiceState
from .compose import BUILD_TIMEOUT, MARGIN, RUN_LABEL, ComposeRuntime, docker_client
from .compose_cli import compose_argv, one_off_command

SWARM_STACK = swarm_stack.__file__


class SwarmRuntime(ComposeRuntime):
    name = "swarm"

    def stack(self, config: dict | None = None) -> str:
        return ops_settings.SWARM_STACK or (config or self.config())["name"]

    def stack_and_services(self) -> tuple[str, list[str]]:
        """The stack's name and the Compose file's services, from one `compose config`."""
        config = self.config()
        return self.stack(config), sorted(config.get("services") or {})

    def start_commands(self) -> list[Command]:
        argv = [
            sys.executable,
            SWARM_STACK,
            "deploy",
            "--stack",
            self.stack(),
            "--timeout",
            str(ops_settings.START_TIMEOUT),
            "--update-order",
            ops_settings.SWARM_UPDATE_ORDER,
            "--monitor",
            str(ops_settings.SWARM_UPDATE_MONITOR),
        ]
        if ops_settings.REGISTRY:
            argv += ["--registry", ops_settings.REGISTRY]
        return [Command(tuple([*argv, "--", *compose_argv()]), cwd=str(self.project_dir))]

    def stop_commands(self) -> list[Command]:
        # The deploy stops nothing: the stack deploy replaces each service's tasks in the order
        # its update_config says (stop-first: the old task stops just before its new one starts).
        return []

    def stop(self) -> str:
        """A recovery's "stop services": the database is restored next, so no task of the failed
        release may write into it; every service the Compose file builds is scaled to 0 (the
        previous release's stack deploy scales them back)."""
        return self.run_commands(self.scale_to_zero_commands())

    def scale_to_zero_commands(self) -> list[Command]:
        if swarm_problem():
            # Not a manager (`check --deploy`: E050): no task of this stack can be seen or scaled
            # from here, and the restore that comes next must not be kept from running.
            return []
        stack = self.stack()
        # Only the services the stack has: the failed release may have removed one (--prune).
        running = set(self.stack_service_names(stack))
        names = [f"{stack}_{service}" for service in self.app_services() if f"{stack}_{service}" in running]
        return [Command(("docker", "service", "scale", "--detach=false", *(f"{name}=0" for name in names)))] if names else []

    def stack_service_names(self, stack: str) -> list[str]:
        with docker_client() as client:
            try:
                return [service["Spec"]["Name"] for service in client.api.services(filters={"label": f"{swarm_stack.STACK_LABEL}={stack}"})]
            except DockerException as error:
                raise ServiceError(
                    _("Could not list the services of stack %(stack)s: %(error)s") % {"stack": stack, "error": error}
                ) from None

    def app_services(self) -> list[str]:
        """The services that run the release: APP_SERVICES, else every service the Compose file builds."""
        return list(ops_settings.APP_SERVICES) or list(self.built_images())

    def manage_command(self, *arguments: str) -> Command:
        if ops_settings.MANAGE_ON_HOST:
            return super().manage_command(*arguments)
        # No Compose container runs to `exec` into: every manage.py command is a one-off container
        # of the release the Compose image names point at (after the build: the new one).
        return one_off_command(
            ops_settings.WEB_SERVICE, ["python", "manage.py", *arguments], {RUN_LABEL: children.active_record() or "none"}
        )

    # -- a registry, for a swarm of several nodes ---------------------------------------------
    def keep_release_commands(self, sha: str) -> list[Command]:
        """Kept as on Compose; with a REGISTRY also pushed, so every node can pull it (once, at its build)."""
        commands = super().keep_release_commands(sha)
        if not ops_settings.REGISTRY:
            return commands
        project = self.config()["name"]
        for service in self.built_images():
            local = swarm_stack.release_image(project, service, sha)
            pushed = swarm_stack.release_image(project, service, sha, ops_settings.REGISTRY)
            commands += [Command(("docker", "image", "tag", local, pushed)), Command(("docker", "image", "push", pushed))]
        return commands

    def timeout_for(self, command: Command) -> float | None:
        if command.argv[:2] == (sys.executable, SWARM_STACK):
            return ops_settings.START_TIMEOUT + MARGIN
        if command.argv[:3] == ("docker", "service", "scale"):
            return ops_settings.STOP_TIMEOUT + MARGIN
        if command.argv[:3] == ("docker", "image", "push"):
            return BUILD_TIMEOUT  # uploads the release's layers once, as a build downloads them
        return super().timeout_for(command)

    # -- state from the engine -------------------------------------------------------------------
    def service_states(self) -> list[ServiceState]:
        stack, services = self.stack_and_services()
        states = []
        with docker_client() as client:
            for service in services:
                name = f"{stack}_{service}"
                try:
                    inspected = client.api.inspect_service(name)
                    tasks = client.api.tasks(filters={"service": name})
                except NotFound:
                    states.append(
                        ServiceState(
                            service, "missing", detail=_("stack %(stack)s has no service %(service)s") % {"stack": stack, "service": name}
                        )
                    )
                    continue
                except DockerException as error:
                    raise ServiceError(
                        _("Could not inspect the service %(service)s of stack %(stack)s: %(error)s")
                        % {"service": name, "stack": stack, "error": error}
                    ) from None
                states.append(service_state(service, inspected, tasks))
        return states

    def logs_since(self, since: datetime) -> str:
        stack, services = self.stack_and_services()
        lines = []
        with docker_client() as client:
            for service in services:
                try:
                    chunks = client.api.service_logs(f"{stack}_{service}", stdout=True, stderr=True, since=int(since.timestamp()))
                    text = b"".join(chunks).decode("utf-8", "replace")
                except NotFound:
                    continue
                except DockerException as error:
                    raise ServiceError(
                        _("Could not read the logs of %(service)s: %(error)s") % {"service": f"{stack}_{service}", "error": error}
                    ) from None
                lines += [f"{service} | {line}" for line in text.splitlines()]
        return "\n".join(lines)


def swarm_problem() -> str:
    """Why this engine cannot take a stack deploy ('' when it can: it is an active swarm manager)."""
    with docker_client() as client:
        try:
            swarm = client.info().get("Swarm") or {}
        except DockerException as error:
            raise ServiceError(_("Could not ask the Docker engine about its swarm: %(error)s") % {"error": error}) from None
    if swarm.get("LocalNodeState") != "active":
        return _("RUNTIME is 'swarm' but this Docker engine is not part of a swarm (its state: %(state)s).") % {
            "state": swarm.get("LocalNodeState") or "unknown"
        }
    if not swarm.get("ControlAvailable"):
        return _("RUNTIME is 'swarm' but this Docker engine is a swarm worker: stacks are deployed from a manager.")
    return ""


def service_state(service: str, inspected: dict, tasks: list[dict]) -> ServiceState:
    """One service as the pipeline's health stage reads it.  Swarm reports a task "running" only once
    its container's healthcheck passed, so a running task of the service's image is a healthy one."""
    spec = inspected["Spec"]
    image = swarm_stack.base_image(spec["TaskTemplate"]["ContainerSpec"]["Image"])
    progress, failed = swarm_stack.service_progress(inspected, tasks, image)
    release = (spec.get("Labels") or {}).get(swarm_stack.RELEASE_LABEL, "?")
    has_healthcheck = bool((spec["TaskTemplate"]["ContainerSpec"].get("Healthcheck") or {}).get("Test"))
    update = (inspected.get("UpdateStatus") or {}).get("State")
    if progress == "converged":
        return ServiceState(
            service,
            "running",
            "healthy" if has_healthcheck else None,
            detail=_("%(service)s runs release %(release)s") % {"service": spec["Name"], "release": release},
        )
    state = {"failed": f"update {update}" if update else "failed"}.get(progress, update or "starting")
    detail = _("%(service)s (release %(release)s): %(tasks)s") % {
        "service": spec["Name"],
        "release": release,
        "tasks": "; ".join(failed[-3:]) if failed else _("no task of it runs yet"),
    }
    return ServiceState(service, state, detail=detail)
