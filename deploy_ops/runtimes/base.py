"""What the deploy needs from whatever runs the services (Docker Compose, systemd, ...)."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from ..runner import Command


@dataclass(frozen=True)
class ServiceState:
    name: str
    # As the engine says it: "running", "exited", "restarting", "missing", ...
    state: str
    # "healthy", "unhealthy", "starting", or None where the service has no healthcheck.
    health: str | None = None
    detail: str = ""
    # How a stopped service's process (or the commands runtime's check step) exited, where known;
    # shown by the health check instead of detail. Left out of ==: detail already tells states apart.
    exit_code: int | None = field(default=None, compare=False)

    @property
    def ok(self) -> bool:
        return self.state == "running" and self.health in (None, "healthy")


class ServiceRuntime(abc.ABC):
    """Each step is a builder (``*_commands``, pure, for dry runs and tests) plus the action."""

    name: str

    def __init__(self, project_dir: Path):
        self.project_dir = Path(project_dir)

    @abc.abstractmethod
    def build_commands(self) -> list[Command]: ...

    @abc.abstractmethod
    def start_commands(self) -> list[Command]: ...

    @abc.abstractmethod
    def stop_commands(self) -> list[Command]: ...

    @abc.abstractmethod
    def manage_command(self, *arguments: str) -> Command:
        """``manage.py <arguments>`` in the release being deployed (in the web service, or on the host)."""

    @abc.abstractmethod
    def service_states(self) -> list[ServiceState]:
        """Every service and its state; empty where the runtime cannot tell."""

    @abc.abstractmethod
    def logs_since(self, since: datetime) -> str:
        """What the services logged since ``since`` (for the error-pattern scan); '' where unknown."""

    # -- releases kept as images (Compose); a runtime without images builds each time ----------
    # True where a release's images are kept by commit and a rollback starts them without a build.
    keeps_images = False

    def release_images(self, sha: str) -> list[str]:
        """The image references the release ``sha`` is kept as; [] where the runtime keeps none."""
        return []

    def keep_release_commands(self, sha: str) -> list[Command]:
        """Just after a build: tag what was built as the release ``sha``."""
        return []

    def use_release_commands(self, sha: str) -> list[Command]:
        """Before a start: point the services at the kept images of the release ``sha``."""
        return []

    def missing_release_images(self, sha: str) -> list[str]:
        """Which of ``release_images(sha)`` the engine no longer has."""
        return []

    def prune_release_images(self, keep: set[str]) -> list[str]:
        """Remove the kept images of every release whose commit (12 characters) is not in ``keep``; returns them."""
        return []

    def one_off_work(self) -> list[str]:
        """Work this runtime runs apart from the services (one-off containers) that is still going on."""
        return []

    def stop_one_off_work(self) -> list[str]:
        """Stop that work (of a run that died, found by the next one); returns what was stopped."""
        return []

    # -- blue/green slots (Compose); a runtime without slots updates in place ------------------
    # While set, the web service's commands, states and logs are those of this slot's release.
    slot: str | None = None

    def can_run_side_by_side(self) -> bool:
        """True where a new release can start in a slot while the old one still serves."""
        return False

    def start_slot_commands(self, slot: str, sha: str) -> list[Command]:
        """Start the release ``sha``'s web service in ``slot``, beside the serving one."""
        raise NotImplementedError(f"The {self.name} runtime has no slots: a release cannot start beside the serving one.")

    def stop_web_commands(self) -> list[Command]:
        """Stop only the old release's web service, once a slot serves instead."""
        raise NotImplementedError(f"The {self.name} runtime has no slots: its web service is never stopped on its own.")

    def remove_slot_commands(self, slot: str) -> list[Command]:
        """Remove ``slot``'s web service; [] where the runtime has no slots (nothing to remove)."""
        return []

    def slots_running(self) -> list[str]:
        """The slots that have a container; [] where the runtime has no slots."""
        return []

    # The actions run the builders' commands through the one runner; a runtime may refine them.
    def build(self) -> str:
        return self.run_commands(self.build_commands())

    def start(self) -> str:
        return self.run_commands(self.start_commands())

    def stop(self) -> str:
        return self.run_commands(self.stop_commands())

    def manage(self, *arguments: str, timeout: float | None = None) -> str:
        from ..runner import run

        finished = run(self.manage_command(*arguments), timeout=timeout)
        return finished.stdout + finished.stderr

    def run_commands(self, commands: list[Command]) -> str:
        """Run commands from this runtime's builders through the one runner; their output joined."""
        from ..runner import run

        output = []
        for command in commands:
            finished = run(command, timeout=self.timeout_for(command))
            output.append(finished.stdout + finished.stderr)
        return "".join(output)

    def timeout_for(self, command: Command) -> float | None:
        return None
