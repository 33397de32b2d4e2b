"""Argv lists from DEPLOY_OPS['COMMANDS'], run in the checkout: for gunicorn under systemd or
supervisor, for servectl (the demo), for any host without Docker.

Steps: ``build`` (optional), ``start``, ``stop``, ``check`` (optional: exit 0 while the site
runs; it gives the service state), ``migrate`` and ``collectstatic`` (optional: replace
``manage.py migrate``/``collectstatic``; extra arguments are appended).  Otherwise ``manage.py``
runs on the host with the Python that runs deploy_ops.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from django.utils.translation import gettext as _

from ..conf import ops_settings
from ..exceptions import ConfigurationError
from ..runner import Command, run, tail
from ..servectl import starts_in
from .base import ServiceRuntime, ServiceState

CHECK_TIMEOUT = 60
BUILD_TIMEOUT = 3600
STOP_MARGIN = 60
# The error-pattern scan reads at most this much of the end of COMMANDS_LOG_FILE.
LOG_READ_LIMIT = 4 * 1024 * 1024
# Steps that stand in for a manage.py command of the same name.
MANAGE_STEPS = ("migrate", "collectstatic")


def host_manage_command(project_dir: Path, arguments: Sequence[str]) -> Command:
    # The Python that runs deploy_ops has the project's packages: the same one runs the release's manage.py.
    return Command((sys.executable, "manage.py", *arguments), cwd=str(project_dir))


class CommandsRuntime(ServiceRuntime):
    name = "commands"

    def _step(self, name: str) -> list[Command]:
        argv = ops_settings.COMMANDS.get(name)
        return [Command(tuple(argv), cwd=str(self.project_dir))] if argv else []

    def _required_step(self, name: str) -> list[Command]:
        commands = self._step(name)
        if not commands:
            raise ConfigurationError(
                _("RUNTIME is 'commands' but DEPLOY_OPS['COMMANDS'] has no %(step)r step; give it an argv list, e.g. %(example)s.")
                % {"step": name, "example": f"{{'{name}': ['systemctl', '{name}', 'gunicorn']}}"}
            )
        return commands

    def build_commands(self) -> list[Command]:
        return self._step("build")

    def start_commands(self) -> list[Command]:
        return self._required_step("start")

    def stop_commands(self) -> list[Command]:
        return self._required_step("stop")

    def check_commands(self) -> list[Command]:
        return self._step("check")

    def timeout_for(self, command: Command) -> float | None:
        # A step that hangs must not hang the deploy: it fails, and the deploy rolls back.
        limits = {"build": BUILD_TIMEOUT, "start": ops_settings.START_TIMEOUT, "stop": ops_settings.STOP_TIMEOUT + STOP_MARGIN}
        for name, limit in limits.items():
            if list(command.argv) == list(ops_settings.COMMANDS.get(name) or []):
                return limit
        return None

    def manage_command(self, *arguments: str) -> Command:
        if arguments and arguments[0] in MANAGE_STEPS and arguments[0] in ops_settings.COMMANDS:
            step = ops_settings.COMMANDS[arguments[0]]
            return Command((*step, *arguments[1:]), cwd=str(self.project_dir))
        return host_manage_command(self.project_dir, arguments)

    def service_states(self) -> list[ServiceState]:
        checks = self.check_commands()
        if not checks:
            return []
        finished = run(checks[0], check=False, timeout=CHECK_TIMEOUT)
        state = "running" if finished.returncode == 0 else "stopped"
        exit_code = finished.returncode or None
        return [
            ServiceState(ops_settings.WEB_SERVICE, state, detail=tail(finished.stdout + finished.stderr, 500).strip(), exit_code=exit_code)
        ]

    def log_file(self) -> Path | None:
        configured = ops_settings.COMMANDS_LOG_FILE
        if not configured:
            return None
        path = Path(configured)
        return path if path.is_absolute() else self.project_dir / path

    def logs_since(self, since: datetime) -> str:
        path = self.log_file()
        if path is None or not path.is_file():
            return ""
        with open(path, "rb") as log:
            size = log.seek(0, 2)
            log.seek(max(0, size - LOG_READ_LIMIT))
            text = log.read().decode("utf-8", "replace")
        return text_since(text, since)


def text_since(text: str, since: datetime) -> str:
    """The log from the first servectl start marker at or after ``since``.

    A log without markers (written by something other than servectl) is returned whole:
    it cannot tell when its lines were written, so rotate it with each release.
    """
    starts = starts_in(text)
    if not starts:
        return text
    since = since if since.tzinfo else since.astimezone()  # naive means local time
    for started, offset in starts:
        if started >= since:
            return text[offset:]
    return ""
