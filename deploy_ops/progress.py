"""Progress on long work, for the person at the terminal; nothing at all when nobody watches.

- :class:`ByteProgress`: a backup or a restore says the bytes done, the rate and an estimate of
  the time left (from the database's size, so an estimate), redrawn in place on stderr. When
  stderr is not a terminal (cron, CI, a pipe), or inside :func:`silenced` (``-v 0``), it is quiet.
- :func:`echo_commands`: ``-v 3`` shows every external command as it starts, secrets masked.
- :class:`LastLine`: ``-v 2`` shows a long command's latest output line (the build, the
  migrations) in place of the previous one; the pipeline passes it to the runner as ``on_line``.
"""

from __future__ import annotations

import contextlib
import contextvars
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TextIO

from django.template.defaultfilters import filesizeformat
from django.utils.translation import gettext as _

from . import humanize, runner
from .databases import in_service
from .exceptions import DeployOpsError
from .runner import Command
from .secrets import mask

_enabled = contextvars.ContextVar("deploy_ops_progress", default=True)
# -v 2 and more: long stages show their newest output line (LastLine).
_last_lines = contextvars.ContextVar("deploy_ops_last_lines", default=False)
REDRAW_SECONDS = 0.5


@contextlib.contextmanager
def silenced():
    """No progress drawn inside (``-v 0``)."""
    token = _enabled.set(False)
    try:
        yield
    finally:
        _enabled.reset(token)


def _watched(stream: TextIO) -> bool:
    return _enabled.get() and stream.isatty()


class ByteProgress:
    def __init__(
        self,
        label: str,
        expected: int | Callable[[], int | None] | None,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        """``expected``: the estimated total, or a function that finds it (asked only when someone watches)."""
        self.label, self.clock = label, clock
        self.stream = stream or sys.stderr
        self.active = _watched(self.stream)
        self.expected = expected() if callable(expected) and self.active else (None if callable(expected) else expected)
        self.done = 0
        self.started = clock()
        self._drawn_at = self.started

    def advance(self, count: int) -> None:
        self.done += count
        if self.active and self.clock() - self._drawn_at >= REDRAW_SECONDS:
            self._drawn_at = self.clock()
            self.stream.write("\r\033[K" + self.render())
            self.stream.flush()

    def finish(self, succeeded: bool = True) -> None:
        """The final line on success; on failure only a line break, so the error starts on its own line."""
        if self.active:
            self.stream.write(("\r\033[K" + self.render(finished=True) if succeeded else "") + "\n")
            self.stream.flush()

    def __enter__(self) -> ByteProgress:
        return self

    def __exit__(self, error_type, error, traceback) -> None:
        self.finish(succeeded=error_type is None)

    def render(self, finished: bool = False) -> str:
        elapsed = max(self.clock() - self.started, 1e-6)
        rate = self.done / elapsed
        parts = [f"{self.label}: {filesizeformat(self.done)}", _("%(rate)s/s") % {"rate": filesizeformat(int(rate))}]
        if finished:
            parts.append(_("in %(time)s") % {"time": humanize.duration(elapsed)})
        elif self.expected and rate > 0:
            # The database's size is only an estimate of the dump's: never claim to be done before the end.
            share = min(self.done / self.expected, 0.99)
            left = max(self.expected - self.done, 0) / rate
            parts.append(
                _("about %(percent)d %% of %(total)s, %(left)s left")
                % {
                    "percent": share * 100,
                    "total": filesizeformat(self.expected),
                    "left": humanize.duration(left),
                }
            )
        return ", ".join(parts)

    def chunks(self, source: Iterable[bytes]) -> Iterator[bytes]:
        """``source``'s chunks, counted as they pass."""
        for chunk in source:
            self.advance(len(chunk))
            yield chunk


class MeteredWriter:
    """Passes writes through to ``stream``, counting them on ``progress``."""

    def __init__(self, stream, progress: ByteProgress):
        self.stream, self.progress = stream, progress

    def write(self, data) -> int:
        self.progress.advance(len(data))
        return self.stream.write(data)


def database_size_command(engine) -> Command | None:
    """The client command that prints the database's size in bytes (None for SQLite: a file)."""
    if engine.vendor == "postgresql":
        from .databases.postgresql import connection_arguments

        argv, env, secrets = connection_arguments(engine.settings_dict, engine.exec_service)
        sql = "SELECT pg_database_size(current_database())"
        return in_service(Command(("psql", "-X", "-A", "-t", *argv, "-c", sql), env=env, secrets=secrets), engine.exec_service)
    if engine.vendor == "mysql":
        from .databases.mysql import query_command, quote_string

        schema = quote_string(engine.database_name)
        sql = f"SELECT SUM(data_length + index_length) FROM information_schema.tables WHERE table_schema = {schema}"
        return query_command(engine.settings_dict, sql, engine.exec_service)
    return None


def database_size(engine) -> int | None:
    """The database's size as its server reports it, by the engine's own client; None when it cannot tell."""
    if engine.vendor == "sqlite":
        return engine.path.stat().st_size if engine.path.exists() else None
    command = database_size_command(engine)
    if command is None:
        return None
    try:
        printed = runner.run(command, timeout=30).stdout.strip()
    except DeployOpsError:  # an estimate only: a backup must not fail for want of it
        return None
    return int(printed) if printed.isdigit() else None


@contextlib.contextmanager
def echo_commands(write: Callable[[str], None]):
    """While inside, every external command is shown to ``write`` as it starts, its secrets masked."""
    with runner.observe_commands(lambda command: write("$ " + mask(command.display()))):
        yield


class LastLine:
    """A long command's newest output line, drawn over the previous one on a terminal."""

    def __init__(self, stream: TextIO | None = None, width: int = 100):
        self.stream = stream or sys.stdout
        self.width = width
        self.active = _watched(self.stream)

    def __call__(self, line: str) -> None:
        if self.active and line.strip():
            self.stream.write("\r\033[K  " + mask(line.rstrip())[: self.width])
            self.stream.flush()

    def close(self) -> None:
        if self.active:
            self.stream.write("\r\033[K")
            self.stream.flush()


@contextlib.contextmanager
def last_lines_shown():
    """While inside (``-v 2`` and more), long stages draw their newest output line on a terminal."""
    token = _last_lines.set(True)
    try:
        yield
    finally:
        _last_lines.reset(token)


@contextlib.contextmanager
def last_line_of_long_work(stream: TextIO | None = None):
    """A LastLine to give the runner as ``on_line``; None where nobody watches or below ``-v 2``."""
    line = LastLine(stream) if _last_lines.get() and _enabled.get() else None
    if line is None or not line.active:
        yield None
        return
    try:
        yield line
    finally:
        line.close()
