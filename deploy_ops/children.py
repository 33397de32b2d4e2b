"""What a deploy or rollback has running on the host, so that nothing outlives a run that died.

Every command the runner starts runs in a process group of its own (a new session on POSIX,
a new process group on Windows): the operator's Ctrl-C or a closed terminal reaches deploy_ops
only, and deploy_ops ends the child's whole group itself.  While a run holds the lock
(:func:`tracking`), each running child is also written to ``STATE_DIR/children/<pid>.json``
and removed when it ends.  If the run is killed (``kill -9``, a power cut), those files are
what is left: the next run that takes the lock over stops every group still alive
(:func:`stop_left_behind`) before it changes anything, and ``rollback --status`` and a refused
deploy list them (:func:`left_behind`).  One-off containers are the runtime's business
(``ServiceRuntime.one_off_work``).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from django.utils import timezone
from django.utils.translation import gettext as _

from .conf import ops_settings
from .process_groups import end_group, group_alive

FOLDER = "children"
# The record id of the run that holds the lock in this process, while it does.
_active_record: str | None = None


@dataclass(frozen=True)
class Child:
    pid: int
    record: str
    command: str
    since: str
    # The kernel's start time of the process (Linux), so that a reused pid is never taken for it.
    start_time: str = ""

    def describe(self) -> str:
        return _("pid %(pid)s (%(command)s) of record %(record)s, started %(since)s") % {
            "pid": self.pid,
            "command": self.command,
            "record": self.record or "?",
            "since": self.since,
        }


def _folder() -> Path:
    return ops_settings.state_dir / FOLDER


@contextlib.contextmanager
def tracking(record_id: str) -> Iterator[None]:
    """While the lock is held: every child the runner starts is written down until it ends."""
    global _active_record
    _active_record = record_id
    try:
        yield
    finally:
        _active_record = None


def active_record() -> str | None:
    return _active_record


def register(pid: int, command: str) -> Path | None:
    if _active_record is None:
        return None
    folder = _folder()
    folder.mkdir(parents=True, exist_ok=True)
    child = Child(pid, _active_record, command[:300], timezone.now().isoformat(timespec="seconds"), _start_time(pid))
    path = folder / f"{pid}.json"
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(child.__dict__), encoding="utf-8")
    os.replace(temporary, path)
    return path


def unregister(path: Path | None) -> None:
    if path is not None:
        path.unlink(missing_ok=True)


def _start_time(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""  # not Linux: the pid alone has to do
    return stat.rpartition(")")[2].split()[19]


def _written_down() -> list[tuple[Path, Child]]:
    found = []
    folder = _folder()
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            found.append((path, Child(**json.loads(path.read_text(encoding="utf-8")))))
        except (OSError, ValueError, TypeError):
            path.unlink(missing_ok=True)  # torn by the crash: nothing to go on
    return found


def _still_running(child: Child) -> bool:
    # The leader may be gone while what it started runs on; a live leader must be the same process.
    if not group_alive(child.pid):
        return False
    now = _start_time(child.pid)
    return not (child.start_time and now and now != child.start_time)


def left_behind() -> list[Child]:
    """Children of a run that died which still run (read only: for --status and refusals)."""
    return [child for _, child in _written_down() if _still_running(child) and child.record != _active_record]


def stop_left_behind(timeout: float = 10) -> list[str]:
    """End every written-down child group that still runs; returns what was stopped."""
    stopped = []
    for path, child in _written_down():
        if child.record == _active_record:
            continue
        if _still_running(child):
            end_group(child.pid, timeout)
            stopped.append(child.describe())
        path.unlink(missing_ok=True)
    return stopped
