"""The one place external commands run.

Builders elsewhere return a :class:`Command` (argv, env, cwd, secrets) and do no I/O;
:func:`run` and :func:`open_process` execute it.  The command line is logged before it
runs, with every secret replaced by ``***``; a missing executable raises
:class:`ToolMissing`; a failure raises :class:`CommandFailed` carrying the redacted argv,
the exit code, the stderr tail and the duration.  Every child runs in a process group of its
own and, while a run holds the lock, is written down until it ends (see :mod:`deploy_ops.children`).

Two hooks let a command show work as it happens (see :mod:`deploy_ops.progress`):
:func:`observe_commands` sees every command as it starts (``-v 3`` echoes them), and ``run``'s
``on_line`` receives a long command's output line by line while it runs (``-v 2``).
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import cast

from django.utils.translation import gettext as _

from . import children, process_groups
from .argv import display_argv, redact, redact_argv
from .exceptions import CommandFailed, ToolMissing

logger = logging.getLogger("deploy_ops.runner")

TAIL_CHARS = 4000
# A streaming pipe's buffer: 1 MiB, the most an unprivileged process gets by default.
PIPE_BYTES = 1 << 20
# How long an interrupted or timed-out child's group gets to end before it is killed.
GROUP_END_SECONDS = 5
# Called with each Command as it starts (after the log line); see observe_commands.
_observers: list[Callable[[Command], None]] = []


@dataclass(frozen=True)
class Command:
    argv: tuple[str, ...]
    # Added to the inherited environment; this is where passwords go (PGPASSWORD, MYSQL_PWD).
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: str | None = None
    # Values that must never be shown: redacted from argv, output tails and errors.
    secrets: tuple[str, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "argv", tuple(str(part) for part in self.argv))

    def display(self) -> str:
        return display_argv(redact_argv(self.argv, self.secrets))


@dataclass
class Completed:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    duration: float


def tail(text: str, limit: int = TAIL_CHARS) -> str:
    return text if len(text) <= limit else "…" + text[-limit:]


def find_executable(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise ToolMissing(name, _install_hint(name))
    return found


def _install_hint(name: str) -> str:
    hints = {
        "pg_dump": _(
            "Install the PostgreSQL client tools (Debian: apt-get install postgresql-client), "
            "or set DEPLOY_OPS['BACKUP_EXEC_SERVICE'] to run it inside the database container."
        ),
        "psql": _(
            "Install the PostgreSQL client tools (Debian: apt-get install postgresql-client), or set DEPLOY_OPS['BACKUP_EXEC_SERVICE']."
        ),
        "mysqldump": _(
            "Install the MariaDB/MySQL client (Debian: apt-get install mariadb-client), or set DEPLOY_OPS['BACKUP_EXEC_SERVICE']."
        ),
        "mysql": _("Install the MariaDB/MySQL client (Debian: apt-get install mariadb-client), or set DEPLOY_OPS['BACKUP_EXEC_SERVICE']."),
        "git": _("Install git (Debian: apt-get install git)."),
        "docker": _("Install Docker with the Compose plugin, or set DEPLOY_OPS['RUNTIME'] = 'commands'."),
        "docker-compose": _("Install Compose v2, or set DEPLOY_OPS['COMPOSE_COMMAND'] = ['docker', 'compose']."),
    }
    return hints.get(name, _("Install it, or put it on PATH."))


@contextlib.contextmanager
def observe_commands(observer: Callable[[Command], None]) -> Iterator[None]:
    """While inside, ``observer`` sees every command as it starts (it must mask what it shows)."""
    _observers.append(observer)
    try:
        yield
    finally:
        _observers.remove(observer)


def _announce(command: Command) -> None:
    logger.info("run: %s", command.display())
    for observer in list(_observers):
        observer(command)


def _environment(command: Command) -> dict[str, str]:
    environ = dict(os.environ)
    environ.update(command.env)
    return environ


def _resolved_argv(command: Command) -> list[str]:
    if not command.argv:
        raise ValueError("a Command needs at least the executable")
    executable = command.argv[0]
    if command.cwd and os.sep in executable and not os.path.isabs(executable):
        # "./bin/start" means the one in the command's folder, not in this process's.
        executable = os.path.join(command.cwd, executable)
    return [find_executable(executable), *command.argv[1:]]


def _failure(command: Command, returncode, stdout, stderr, duration, timed_out=False) -> CommandFailed:
    return CommandFailed(
        redact_argv(command.argv, command.secrets),
        returncode,
        stderr_tail=tail(redact(stderr, command.secrets)),
        stdout_tail=tail(redact(stdout, command.secrets)),
        duration=duration,
        timed_out=timed_out,
    )


def _end_group(process: subprocess.Popen) -> None:
    """End the child and everything it started (its group), and reap it."""
    if os.name != "nt":
        process_groups.signal_group(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=GROUP_END_SECONDS)
        except subprocess.TimeoutExpired:
            pass
    process_groups.kill_group(process.pid)  # whatever ignored SIGTERM, grandchildren too
    process.kill()
    process.wait()


@contextlib.contextmanager
def _supervised(command: Command, argv: list[str], **options) -> Iterator[subprocess.Popen]:
    """Start the child in its own group, written down while the run holds the lock; on any
    exception in the body (a timeout, a Ctrl-C), end its whole group before re-raising."""
    process = subprocess.Popen(argv, cwd=command.cwd, env=_environment(command), **process_groups.own_group(), **options)
    entry = children.register(process.pid, command.display())
    try:
        yield process
    except BaseException:
        _end_group(process)
        raise
    finally:
        children.unregister(entry)


def run(
    command: Command,
    *,
    check: bool = True,
    timeout: float | None = None,
    input: bytes | None = None,
    on_line: Callable[[str], None] | None = None,
) -> Completed:
    """Run to completion, capturing stdout and stderr (for commands with small output).

    ``on_line``, for long commands (a build, the migrations): called with each line of output,
    stdout or stderr, secrets redacted, as the command prints it (from a reader thread).
    """
    argv = _resolved_argv(command)
    _announce(command)
    started = time.monotonic()
    if on_line is not None:
        return _run_streaming(command, argv, started, check, timeout, input, on_line)
    stdin = subprocess.PIPE if input is not None else subprocess.DEVNULL
    try:
        with _supervised(command, argv, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as process:
            out, err = process.communicate(input, timeout=timeout)
    except subprocess.TimeoutExpired as expired:
        duration = time.monotonic() - started
        raise _failure(command, None, _text(expired.stdout), _text(expired.stderr), duration, timed_out=True) from None
    duration = time.monotonic() - started
    stdout, stderr = _text(out), _text(err)
    if check and process.returncode != 0:
        raise _failure(command, process.returncode, stdout, stderr, duration)
    return Completed(tuple(command.argv), process.returncode, stdout, stderr, duration)


def _run_streaming(command: Command, argv, started: float, check: bool, timeout, input, on_line) -> Completed:
    captured: dict[str, list[bytes]] = {"stdout": [], "stderr": []}

    def pump(pipe, lines: list[bytes]) -> None:
        for line in iter(pipe.readline, b""):
            lines.append(line)
            on_line(redact(_text(line), command.secrets).rstrip("\r\n"))
        pipe.close()

    stdin = subprocess.PIPE if input is not None else subprocess.DEVNULL
    with _supervised(command, argv, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as process:
        readers = [threading.Thread(target=pump, args=(getattr(process, name), captured[name]), daemon=True) for name in captured]
        for reader in readers:
            reader.start()
        if input is not None and process.stdin is not None:
            with contextlib.suppress(BrokenPipeError):
                process.stdin.write(input)
                process.stdin.close()
        try:
            returncode = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _end_group(process)
            returncode = None
        for reader in readers:
            reader.join()
    duration = time.monotonic() - started
    stdout, stderr = (_text(b"".join(captured[name])) for name in ("stdout", "stderr"))
    if returncode is None:
        raise _failure(command, None, stdout, stderr, duration, timed_out=True)
    if check and returncode != 0:
        raise _failure(command, returncode, stdout, stderr, duration)
    return Completed(tuple(command.argv), returncode, stdout, stderr, duration)


def _text(data) -> str:
    if data is None:
        return ""
    return data.decode("utf-8", "replace") if isinstance(data, bytes) else data


def _widen(pipe: io.BufferedIOBase) -> None:
    """Give a streaming pipe PIPE_BYTES of buffer (Linux's default is 64 KiB), so the dump tool runs on
    while the Python end compresses a chunk, and Python writes on while psql works, as with a file."""
    if PIPE_BYTES and hasattr(fcntl, "F_SETPIPE_SZ"):
        with contextlib.suppress(OSError):  # above /proc/sys/fs/pipe-max-size: the default stays
            fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)


@contextlib.contextmanager
def open_process(command: Command, *, reading: bool) -> Iterator[io.BufferedIOBase]:
    """Stream a long command's stdout (``reading``) or stdin (writing), in constant memory.

    Yields the pipe.  On leaving, waits for the process and raises CommandFailed if it
    exited non-zero (stderr is spooled to a temporary file, so it cannot fill memory).
    If the body raises, the process is killed and the body's error propagates.
    """
    argv = _resolved_argv(command)
    _announce(command)
    started = time.monotonic()
    with (
        tempfile.TemporaryFile() as stderr_file,
        _supervised(
            command,
            argv,
            stdin=subprocess.DEVNULL if reading else subprocess.PIPE,
            stdout=subprocess.PIPE if reading else subprocess.DEVNULL,
            stderr=stderr_file,
        ) as process,
    ):
        # Popen's PIPE end: buffered, with read1 (see databases' dump loops).
        pipe = cast(io.BufferedIOBase, process.stdout if reading else process.stdin)
        _widen(pipe)
        broken_pipe = False
        try:
            yield pipe
        except BrokenPipeError:
            # The process stopped reading (psql hit an SQL error, say): its exit code
            # and stderr below say why, which the broken pipe itself does not.
            broken_pipe = True
        finally:
            with contextlib.suppress(BrokenPipeError):
                pipe.close()
        returncode = process.wait()
        duration = time.monotonic() - started
        if returncode != 0 or broken_pipe:
            stderr_file.seek(0, os.SEEK_END)
            size = stderr_file.tell()
            stderr_file.seek(max(0, size - TAIL_CHARS * 4))
            raise _failure(command, returncode, "", _text(stderr_file.read()), duration)
