"""One lock for deploy and rollback: a file created with O_EXCL (portable to Windows).

The file holds who took it (host, pid, since, what, record id).  A lock whose pid no longer
runs on this host is *stale*: it is reported, never silently taken over.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from django.utils import timezone

from .conf import ops_settings
from .exceptions import LockHeld
from .servectl import is_alive as process_is_alive

LOCK_NAME = "deploy.lock"


def lock_path() -> Path:
    return ops_settings.state_dir / LOCK_NAME


@dataclass
class LockState:
    held: bool
    holder: dict
    stale: bool

    def describe(self) -> str:
        if not self.held:
            return "free"
        who = f"{self.holder.get('what', 'a deploy')} by pid {self.holder.get('pid')} on {self.holder.get('host')} since {self.holder.get('since')}"
        if self.stale:
            return f"stale: left by {who}, which is no longer running"
        return f"held: {who}"


def inspect_lock() -> LockState:
    path = lock_path()
    try:
        holder = json.loads(path.read_text(encoding="utf-8") or "{}")
    except FileNotFoundError:
        return LockState(False, {}, False)
    except (OSError, json.JSONDecodeError):
        holder = {}
    same_host = holder.get("host") == socket.gethostname()
    pid = int(holder.get("pid") or 0)
    stale = same_host and (pid <= 0 or not process_is_alive(pid))
    return LockState(True, holder, stale)


class DeployLock:
    """``with DeployLock("deploy", record_id):`` — raises LockHeld if anyone holds it."""

    def __init__(self, what: str, record_id: str = "", break_stale: bool = False):
        self.what = what
        self.record_id = record_id
        self.break_stale = break_stale
        self.broken: LockState | None = None

    def acquire(self) -> None:
        path = lock_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        state = inspect_lock()
        if state.held and state.stale and self.break_stale:
            self.broken = state
            path.unlink(missing_ok=True)
        elif state.held:
            raise LockHeld(_refusal(state), state.holder, state.stale)
        holder = {
            "what": self.what,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "since": timezone.now().isoformat(timespec="seconds"),
            "record": self.record_id,
        }
        try:
            descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except FileExistsError:
            # Lost a race with another process that started at the same moment.
            raise LockHeld(_refusal(inspect_lock()), inspect_lock().holder) from None
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump(holder, handle)

    def release(self) -> None:
        state = inspect_lock()
        if state.held and state.holder.get("pid") == os.getpid() and state.holder.get("host") == socket.gethostname():
            lock_path().unlink(missing_ok=True)

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc_info):
        self.release()


def _refusal(state: LockState) -> str:
    if state.stale:
        return (
            f"The deploy lock {lock_path()} is {state.describe()}. The site may be half-deployed: "
            "check `manage.py rollback --status`, then recover with `manage.py rollback` "
            "or deploy again with --break-lock."
        )
    return f"Another deploy or rollback is running ({state.describe()}). Wait for it to finish."
