"""Pure builders for the Compose command line, shared by the runtime and container-side backups."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..conf import ops_settings
from ..runner import Command


def compose_argv(*arguments: str) -> list[str]:
    """COMPOSE_COMMAND with the project's -f files and -p name, then ``arguments``."""
    argv = list(ops_settings.COMPOSE_COMMAND)
    for compose_file in ops_settings.COMPOSE_FILES:
        argv += ["-f", compose_file]
    if ops_settings.COMPOSE_PROJECT:
        argv += ["-p", ops_settings.COMPOSE_PROJECT]
    return argv + list(arguments)


def slot_argv(project: str, *arguments: str) -> list[str]:
    """As compose_argv, for the blue/green slot project ``project`` (its own -p)."""
    argv = list(ops_settings.COMPOSE_COMMAND)
    for compose_file in ops_settings.COMPOSE_FILES:
        argv += ["-f", compose_file]
    return argv + ["-p", project, *arguments]


def exec_command(service: str, argv: Sequence[str], env: Mapping[str, str] | None = None, secrets: Sequence[str] = ()) -> Command:
    """``compose exec -T SERVICE argv`` with ``env`` passed by name only (-e NAME), never by value on argv."""
    env = dict(env or {})
    names = []
    for name in sorted(env):
        names += ["-e", name]
    return Command(
        tuple(compose_argv("exec", "-T", *names, service, *argv)),
        env=env,
        cwd=str(ops_settings.project_dir),
        secrets=tuple(secrets),
    )


def one_off_command(service: str, argv: Sequence[str], labels: Mapping[str, str]) -> Command:
    """``compose run --rm --no-deps -T --label K=V SERVICE argv``: a container of its own, found again by its labels."""
    label_options = []
    for name in sorted(labels):
        label_options += ["--label", f"{name}={labels[name]}"]
    return Command(
        tuple(compose_argv("run", "--rm", "--no-deps", "-T", *label_options, service, *argv)),
        cwd=str(ops_settings.project_dir),
    )
