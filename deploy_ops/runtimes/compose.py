"""Docker Compose: the compose command builds, starts and stops; the Docker SDK reports states and logs."""

from __future__ import annotations

import contextlib
import json
import re
from datetime import datetime

import docker
from django.utils.translation import gettext as _
from docker.errors import DockerException, NotFound

from .. import children
from ..conf import ops_settings
from ..exceptions import ServiceError
from ..runner import Command, run
from .base import ServiceRuntime, ServiceState
from .commands import host_manage_command
from .compose_cli import compose_argv, exec_command, one_off_command, slot_argv

# An image build may download and compile packages: generous, but a hung build still ends.
BUILD_TIMEOUT = 3600
# Beyond compose's own --wait-timeout/--timeout, for creating and removing containers.
MARGIN = 60

PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
ONE_OFF_LABEL = "com.docker.compose.oneoff"
# On the one-off containers deploy_ops runs: the record id of the run that started them.
RUN_LABEL = "deploy_ops.record"
ONE_OFF_COMMANDS = {("migrate",), ("collectstatic",)}
# A release's images are tagged with the first 12 characters of its commit.
COMMIT_TAG = re.compile(r"^[0-9a-f]{12}$")


class ComposeRuntime(ServiceRuntime):
    name = "compose"
    # Blue/green: while ``slot`` is set, the web service's commands, states and logs are those of
    # this slot's Compose project (``<project>-<slot>``) instead of the project's own.

    def can_run_side_by_side(self) -> bool:
        # A Swarm stack (a subclass) updates its services in place: it has no slots.
        return type(self) is ComposeRuntime

    def _command(self, *arguments: str) -> Command:
        return Command(tuple(compose_argv(*arguments)), cwd=str(self.project_dir))

    def build_commands(self) -> list[Command]:
        return [self._command("build")]

    def start_commands(self) -> list[Command]:
        # --wait makes the start fail when a container exits or turns unhealthy, not a later stage.
        return [self._command("up", "--detach", "--remove-orphans", "--wait", "--wait-timeout", str(ops_settings.START_TIMEOUT))]

    def stop_commands(self) -> list[Command]:
        # `stop`, not `down`: volumes and containers stay (the failed release's logs can still be
        # read), and with APP_SERVICES the database keeps running for the restore.
        return [self._command("stop", "--timeout", str(ops_settings.STOP_TIMEOUT), *ops_settings.APP_SERVICES)]

    def config_command(self) -> Command:
        return self._command("config", "--format", "json")

    def manage_command(self, *arguments: str) -> Command:
        if ops_settings.MANAGE_ON_HOST:
            return host_manage_command(self.project_dir, arguments)
        argv = ["python", "manage.py", *arguments]
        if arguments[:1] in ONE_OFF_COMMANDS:
            # migrate and collectstatic run in a one-off container of the image Compose points at
            # (the new release's, once built), with the web service's environment and volumes:
            # they need no running release, so they can run before the new one starts.  Labelled
            # with the run's record: if the run dies, the process inside would go on, so the next
            # run finds it by label and kills it first.
            return one_off_command(ops_settings.WEB_SERVICE, argv, {RUN_LABEL: children.active_record() or "none"})
        # The release's own checks run in the serving container.
        if self.slot:
            return self.slot_command(self.slot, "exec", "-T", ops_settings.WEB_SERVICE, *argv)
        return exec_command(ops_settings.WEB_SERVICE, argv)

    # -- blue/green slots --------------------------------------------------------------------------
    # The web service of a release runs in a Compose project of its own, ``<project>-<slot>``,
    # with the slot's ENVIRONMENT (its port, say) and DEPLOY_OPS_SLOT set for the Compose file to
    # read.  Two projects never share a container, so starting one never recreates the other.
    # (docker-rollout scales the service to two containers in one project instead; that needs a
    # proxy that finds containers by DNS, and with host networking two copies cannot share a port.)
    def slot_project(self, slot: str, project: str | None = None) -> str:
        return f"{project or self.project()[0]}-{slot}"

    def slot_command(self, slot: str, *arguments: str, project: str | None = None) -> Command:
        environment = {**ops_settings.PROXY["SLOTS"][slot].get("ENVIRONMENT", {}), "DEPLOY_OPS_SLOT": slot}
        return Command(tuple(slot_argv(self.slot_project(slot, project), *arguments)), env=environment, cwd=str(self.project_dir))

    def start_slot_commands(self, slot: str, sha: str) -> list[Command]:
        """Tag the release's kept images with the slot project's names, then start only its web service
        (no dependencies: the database and the rest serve both releases)."""
        config = self.config()
        project = config["name"]
        tags = [
            Command(
                (
                    "docker",
                    "image",
                    "tag",
                    f"{project}-{service}:{sha[:12]}",
                    image if config["services"][service].get("image") else f"{project}-{slot}-{service}",
                )
            )
            for service, image in self.built_images(config).items()
            if service == ops_settings.WEB_SERVICE
        ]
        up = self.slot_command(
            slot,
            "up",
            "--detach",
            "--no-deps",
            "--no-build",
            "--wait",
            "--wait-timeout",
            str(ops_settings.START_TIMEOUT),
            ops_settings.WEB_SERVICE,
            project=project,
        )
        return [*tags, up]

    def stop_web_commands(self) -> list[Command]:
        """Only the project's own web service stopped: the old release, once a slot serves instead."""
        return [self._command("stop", "--timeout", str(ops_settings.STOP_TIMEOUT), ops_settings.WEB_SERVICE)]

    def remove_slot_commands(self, slot: str) -> list[Command]:
        return [self.slot_command(slot, "down", "--timeout", str(ops_settings.STOP_TIMEOUT))]

    def slots_running(self) -> list[str]:
        """The configured slots that have a container (running or not)."""
        project = self.project()[0]
        with docker_client() as client:
            return [slot for slot in ops_settings.PROXY.get("SLOTS", {}) if _project_containers(client, self.slot_project(slot, project))]

    # -- releases kept as images -----------------------------------------------------------------
    # Compose builds each service into one image name (its `image:`, or <project>-<service>) and
    # `up` starts whatever that name points at, building only when it is missing.  A release is
    # kept by tagging those images <project>-<service>:<commit12> after its build; bringing a
    # release back points the names at its tags again, so `up` starts it without a build.  No
    # override file or edit of the project's Compose file is needed, and a rollback's `up` is
    # the same command as a deploy's.
    keeps_images = True

    def built_images(self, config: dict | None = None) -> dict[str, str]:
        """Each service the Compose file builds, and the image name Compose builds it into."""
        config = config or self.config()
        services = config.get("services") or {}
        return {
            name: service.get("image") or f"{config['name']}-{name}" for name, service in sorted(services.items()) if service.get("build")
        }

    def _release_pairs(self, sha: str) -> list[tuple[str, str]]:
        """(the name Compose uses, the release's own tag) for each built service."""
        config = self.config()  # once: a rollback reads it on its recovery's clock
        return [(image, f"{config['name']}-{service}:{sha[:12]}") for service, image in self.built_images(config).items()]

    def release_images(self, sha: str) -> list[str]:
        return [release for _image, release in self._release_pairs(sha)]

    def keep_release_commands(self, sha: str) -> list[Command]:
        return [Command(("docker", "image", "tag", image, release)) for image, release in self._release_pairs(sha)]

    def use_release_commands(self, sha: str) -> list[Command]:
        return [Command(("docker", "image", "tag", release, image)) for image, release in self._release_pairs(sha)]

    def missing_release_images(self, sha: str) -> list[str]:
        missing = []
        with docker_client() as client:
            for reference in self.release_images(sha):
                try:
                    client.images.get(reference)
                except NotFound:
                    missing.append(reference)
                except DockerException as error:
                    raise ServiceError(
                        _("Could not look for the image %(image)s: %(error)s") % {"image": reference, "error": error}
                    ) from None
        return missing

    def prune_release_images(self, keep: set[str]) -> list[str]:
        config = self.config()
        removed = []
        with docker_client() as client:
            for service in self.built_images(config):
                repository = f"{config['name']}-{service}"
                try:
                    images = client.images.list(name=repository)
                except DockerException as error:
                    raise ServiceError(
                        _("Could not list the images of %(repository)s: %(error)s") % {"repository": repository, "error": error}
                    ) from None
                for image in images:
                    for reference in image.tags:
                        name, _colon, tag = reference.rpartition(":")
                        if name == repository and COMMIT_TAG.match(tag) and tag not in keep:
                            # Untags; the image itself goes only when no other tag holds it.
                            try:
                                client.images.remove(reference)
                            except NotFound:
                                pass
                            except DockerException:
                                continue  # a container still uses it: it stays, and the next prune tries again
                            removed.append(reference)
        return removed

    def one_off_work(self) -> list[str]:
        with docker_client() as client:
            return [_describe_one_off(container) for container in _one_off_containers(client, self.project()[0])]

    def stop_one_off_work(self) -> list[str]:
        stopped = []
        with docker_client() as client:
            for container in _one_off_containers(client, self.project()[0]):
                stopped.append(_describe_one_off(container))
                with contextlib.suppress(NotFound):
                    container.remove(force=True)  # SIGKILL, then gone: --rm's client may be dead too
        return stopped

    def timeout_for(self, command: Command) -> float | None:
        verb_at = len(compose_argv())
        if not ops_settings.COMPOSE_PROJECT and command.argv[verb_at : verb_at + 1] == ("-p",):
            verb_at += 2  # a blue/green slot's command names its own project
        verb = command.argv[verb_at] if len(command.argv) > verb_at else ""
        return {
            "build": BUILD_TIMEOUT,
            "up": ops_settings.START_TIMEOUT + MARGIN,
            "stop": ops_settings.STOP_TIMEOUT + MARGIN,
            "down": ops_settings.STOP_TIMEOUT + MARGIN,
            "config": MARGIN,
        }.get(verb)

    def config(self) -> dict:
        """The project as Compose resolves it (-p, .env, the `name:` key): name, services, their builds."""
        return json.loads(run(self.config_command(), timeout=MARGIN).stdout)

    def project(self) -> tuple[str, list[str]]:
        """The project name and its services."""
        config = self.config()
        return config["name"], sorted(config.get("services", {}))

    def serving_project(self) -> tuple[str, list[str]]:
        """The project whose services a health check and the log scan look at: the slot's, while one is set."""
        project, services = self.project()
        if self.slot:
            return self.slot_project(self.slot, project), [ops_settings.WEB_SERVICE]
        return project, services

    def service_states(self) -> list[ServiceState]:
        return _project_states(*self.serving_project())

    def slot_service_states(self, slot: str) -> list[ServiceState]:
        """While ``slot`` serves: its web service, and the project's other services (its own web service is stopped on purpose)."""
        project, services = self.project()
        web = ops_settings.WEB_SERVICE
        others = [state for state in _project_states(project, [service for service in services if service != web]) if state.name != web]
        return _project_states(self.slot_project(slot, project), [web]) + others

    def logs_since(self, since: datetime) -> str:
        project, _services = self.serving_project()
        lines = []
        with docker_client() as client:
            for container in _project_containers(client, project):
                service = container.labels.get(SERVICE_LABEL, container.name)
                try:
                    text = container.logs(since=since, stdout=True, stderr=True).decode("utf-8", "replace")
                except NotFound:  # removed between the listing and now
                    continue
                except DockerException as error:
                    raise ServiceError(
                        _("Could not read the logs of %(container)s: %(error)s") % {"container": container.name, "error": error}
                    ) from None
                lines += [f"{service} | {line}" for line in text.splitlines()]
        return "\n".join(lines)


def _project_states(project: str, services: list[str]) -> list[ServiceState]:
    """The state of each container of the Compose project ``project``; each of ``services`` without one is missing."""
    states = []
    with docker_client() as client:
        for container in _project_containers(client, project):
            state = container.attrs.get("State", {})
            states.append(
                ServiceState(
                    name=container.labels.get(SERVICE_LABEL, container.name),
                    state=state.get("Status", container.status),
                    health=(state.get("Health") or {}).get("Status"),
                    detail=_describe(container.name, state),
                    exit_code=state.get("ExitCode") if state.get("Status") == "exited" else None,
                )
            )
    created = {state.name for state in states}
    states += [
        ServiceState(service, "missing", detail="no container: it was never created") for service in services if service not in created
    ]
    return states


@contextlib.contextmanager
def docker_client():
    try:
        client = docker.from_env()
    except DockerException as error:
        raise ServiceError(
            _(
                "The Docker engine is not reachable (%(error)s). Start it (e.g. `systemctl start docker`) "
                "or point DOCKER_HOST at it; on a host without Docker set DEPLOY_OPS['RUNTIME'] = 'commands'."
            )
            % {"error": error}
        ) from None
    try:
        yield client
    finally:
        client.close()


def _project_containers(client, project: str) -> list:
    try:
        containers = client.containers.list(all=True, filters={"label": f"{PROJECT_LABEL}={project}"})
    except DockerException as error:
        raise ServiceError(
            _("Could not list the containers of Compose project %(project)r: %(error)s") % {"project": project, "error": error}
        ) from None
    # `compose run` leaves one-off containers that are not services.
    services = [container for container in containers if container.labels.get(ONE_OFF_LABEL) != "True"]
    return sorted(services, key=lambda container: container.name)


def _one_off_containers(client, project: str) -> list:
    """The running one-off containers deploy_ops started for this project (RUN_LABEL)."""
    try:
        return client.containers.list(filters={"label": [f"{PROJECT_LABEL}={project}", RUN_LABEL]})
    except DockerException as error:
        raise ServiceError(
            _("Could not list the one-off containers of Compose project %(project)r: %(error)s") % {"project": project, "error": error}
        ) from None


def _describe_one_off(container) -> str:
    command = " ".join(container.attrs.get("Config", {}).get("Cmd") or [])
    return _("container %(name)s (%(command)s) of record %(record)s") % {
        "name": container.name,
        "command": command,
        "record": container.labels.get(RUN_LABEL),
    }


def _describe(name: str, state: dict) -> str:
    if state.get("Status") == "exited":
        return _("%(name)s exited with code %(code)s") % {"name": name, "code": state.get("ExitCode")}
    return name
