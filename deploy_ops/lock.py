"""One lock for deploy, rollback and restore: the kernel's.

The lock is an exclusive ``flock`` (``msvcrt.locking`` on Windows) on ``STATE_DIR/deploy.flock``,
a file that is never removed.  The kernel releases it when its process ends, however it ends
(kill -9 included): a lock cannot outlive its holder, two processes cannot both take over a
dead one, and a reused PID means nothing.

The holder's details (what, host, pid, since, record id) are written beside it, in
``STATE_DIR/deploy.lock``, atomically (a temporary file renamed into place) while the lock is
held, and removed before it is released.  So when nobody holds the kernel lock but
``deploy.lock`` is there, a run died while holding it: the lock is *stale*, and the site may be
half-deployed.  A deploy refuses then unless told to break it (``--break-lock``); a rollback or
a restore takes over, because recovering is what they are for.  A ``deploy.lock`` that is empty
or unreadable is stale too (its holder is unknown).  One that names another host is stale here
but cannot be judged from here (its process may run there, on a shared folder whose locks do
not reach this host): it is broken only when the caller names that host, as confirmation.

The two calls are made here rather than through the ``filelock`` library, which makes the same
ones: it would add a dependency for a dozen lines, and the details file would still be ours.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from django.utils import timezone
from django.utils.translation import gettext as _

from . import children
from .audit import compact_journal, mark_interrupted, read_journal
from .conf import ops_settings
from .exceptions import DeployOpsError, LockHeld
from .models import DeploymentRecord, DeploymentStage
from .privatefiles import private_file, write_atomically
from .runtimes import get_runtime

logger = logging.getLogger("deploy_ops.lock")

LOCK_NAME = "deploy.lock"
KERNEL_LOCK_NAME = "deploy.flock"
# flock/locking fail with one of these when another open file holds the lock.
_BUSY = {errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK, errno.EDEADLK}
# inspect_lock() takes the lock for an instant to see whether it is free: a run that starts at that
# instant tries again for this long before it calls the lock held.
BUSY_RETRY_SECONDS = 0.5


def lock_path() -> Path:
    """The holder's details: present while a run holds the lock, or after one died holding it."""
    return ops_settings.state_dir / LOCK_NAME


def kernel_lock_path() -> Path:
    """The file the kernel lock is taken on; it stays, empty, between runs."""
    return ops_settings.state_dir / KERNEL_LOCK_NAME


@dataclass
class LockState:
    held: bool
    holder: dict
    stale: bool
    # The details name another host: whether its process still runs cannot be told from here.
    foreign: bool = False
    # deploy.lock is empty or not JSON, so its holder is unknown.
    unreadable: bool = False

    def describe(self) -> str:
        if not self.held:
            return _("free")
        if self.unreadable:
            return _("stale: its details file is empty or unreadable, and no process holds the lock")
        if not self.holder:
            return _("held: by a process that has not written its details yet")
        holder = self.holder
        # "what" is the holder's own word (deploy, rollback, restore, backup), as it wrote it.
        values = {"what": holder.get("what", "deploy"), "pid": holder.get("pid"), "host": holder.get("host"), "since": holder.get("since")}
        if self.foreign:
            return (
                _(
                    "left by %(what)s by pid %(pid)s on %(host)s since %(since)s, another host: no process here holds it, "
                    "and whether that one still runs cannot be told from here"
                )
                % values
            )
        if self.stale:
            return _("stale: left by %(what)s by pid %(pid)s on %(host)s since %(since)s, which is no longer running") % values
        return _("held: %(what)s by pid %(pid)s on %(host)s since %(since)s") % values


# -- the kernel lock, portable ----------------------------------------------------------------------
def _try_lock(descriptor: int) -> bool:
    try:
        if sys.platform == "win32":
            import msvcrt

            # Byte 0 is the lock; the file stays empty, and a lock past its end is allowed.
            os.lseek(descriptor, 0, os.SEEK_SET)
            msvcrt.locking(descriptor, msvcrt.LK_NBLCK, 1)
        else:
            import fcntl

            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        if error.errno in _BUSY:
            return False
        raise
    return True


def _unlock(descriptor: int) -> None:
    if sys.platform == "win32":
        import msvcrt

        os.lseek(descriptor, 0, os.SEEK_SET)
        msvcrt.locking(descriptor, msvcrt.LK_UNLCK, 1)
    else:
        import fcntl

        fcntl.flock(descriptor, fcntl.LOCK_UN)


def _lock_within(descriptor: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not _try_lock(descriptor):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def _kernel_lock_is_free() -> bool:
    """Whether nobody holds the kernel lock (taken and given back at once to find out)."""
    path = kernel_lock_path()
    if not path.exists():
        return True
    descriptor = private_file(path)
    try:
        if not _try_lock(descriptor):
            return False
        _unlock(descriptor)
        return True
    finally:
        os.close(descriptor)


# -- the holder's details ---------------------------------------------------------------------------
def _details() -> tuple[dict | None, bool]:
    """(the holder's details or None when there is no details file, whether the file is unreadable)."""
    try:
        text = lock_path().read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, False
    except OSError:
        return {}, True
    try:
        holder = json.loads(text)
    except json.JSONDecodeError:
        return {}, True
    # Without the host it names, nobody can tell whose it is.
    return (holder, False) if isinstance(holder, dict) and holder.get("host") else ({}, True)


def _state_without_holder() -> LockState:
    """What deploy.lock says, for a caller that knows no process holds the kernel lock."""
    holder, unreadable = _details()
    if holder is None:
        return LockState(False, {}, False)
    foreign = not unreadable and holder.get("host") != socket.gethostname()
    return LockState(True, holder, True, foreign=foreign, unreadable=unreadable)


def _held_state() -> LockState:
    """A lock a live process holds; its details are written right after it took it, and a moment earlier there are none."""
    holder, _unreadable = _details()
    return LockState(True, holder or {}, False)


def inspect_lock() -> LockState:
    return _state_without_holder() if _kernel_lock_is_free() else _held_state()


class DeployLock:
    """``with DeployLock("deploy", record_id):`` — raises LockHeld if anyone holds it.

    ``break_stale``: take over a stale lock (the caller then marks ``broken``'s record as
    interrupted).  True takes over one left on this host, or one whose details are unreadable;
    a host name takes over one left by that host too (the caller's explicit confirmation).
    A live lock is never taken.
    """

    def __init__(self, what: str, record_id: str = "", break_stale: bool | str = False):
        self.what = what
        self.record_id = record_id
        self.break_stale = break_stale
        self.broken: LockState | None = None
        self._descriptor: int | None = None

    def acquire(self) -> None:
        descriptor = private_file(kernel_lock_path())
        if not _lock_within(descriptor, BUSY_RETRY_SECONDS):
            os.close(descriptor)
            state = _held_state()
            raise LockHeld(_refusal(state), state.holder, state.stale)
        try:
            state = _state_without_holder()
            if state.held and not self._may_break(state):
                raise LockHeld(_refusal(state), state.holder, state.stale)
            if state.held:
                self.broken = state
                logger.warning("took over the deploy lock, %s", state.describe())
            holder = {
                "what": self.what,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "since": timezone.now().isoformat(timespec="seconds"),
                "record": self.record_id,
            }
            write_atomically(lock_path(), json.dumps(holder).encode("utf-8"))
        except BaseException:
            _unlock(descriptor)
            os.close(descriptor)
            raise
        self._descriptor = descriptor

    def _may_break(self, state: LockState) -> bool:
        if state.foreign:
            return isinstance(self.break_stale, str) and self.break_stale == state.holder.get("host")
        return bool(self.break_stale)

    def release(self) -> None:
        """Compact the journal (still under the lock), remove the details, give the lock back."""
        if self._descriptor is None:
            return
        try:
            _compact_journal()
            lock_path().unlink(missing_ok=True)
        finally:
            _unlock(self._descriptor)
            os.close(self._descriptor)
            self._descriptor = None

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc_info):
        self.release()


def _compact_journal() -> None:
    # After every run, under the lock, so no other run appends meanwhile; never worth failing a run for.
    try:
        compact_journal()
    except Exception as error:
        logger.warning("the journal was not compacted (it stays as it was): %s", error)


def _refusal(state: LockState) -> str:
    if state.foreign:
        host = state.holder.get("host")
        return _(
            "The deploy lock %(path)s was %(lock)s. If nothing of deploy_ops runs on %(host)s, "
            "remove that file (no process here holds the lock), or deploy with `--break-lock` (it asks you to confirm) "
            "or `--break-lock=%(host)s`."
        ) % {"path": lock_path(), "lock": state.describe(), "host": host}
    if state.stale:
        return _(
            "The deploy lock %(path)s is %(lock)s. The site may be half-deployed: "
            "check `manage.py rollback --status`, then recover with `manage.py rollback` "
            "or deploy again with --break-lock."
        ) % {"path": lock_path(), "lock": state.describe()}
    return _("Another deploy or rollback is running (%(lock)s). Wait for it to finish.") % {"lock": state.describe()}


def describe_lock_refusal(held: LockHeld) -> str:
    message = str(held)
    record_id = held.holder.get("record")
    snapshot = read_journal().get(record_id) if record_id else None
    if held.stale and snapshot:
        running = [stage["name"] for stage in snapshot["stages"] if stage["status"] == DeploymentStage.Status.RUNNING]
        record = snapshot["record"]
        values = {"kind": _kind_label(record["kind"]), "id": record_id, "sha": record["to_commit"][:12], "started": record["started_at"]}
        if running:
            values["stage"] = repr(running[-1])
            message += "\n" + _("The %(kind)s %(id)s (to %(sha)s) was interrupted during stage %(stage)s, started %(started)s.") % values
        else:
            message += "\n" + _("The %(kind)s %(id)s (to %(sha)s) was interrupted, started %(started)s.") % values
    if held.stale:
        still = work_left_behind()
        if still:
            message += (
                "\n"
                + _("Work of the run that died is still going on (the next deploy or rollback stops it first):")
                + "\n"
                + "\n".join(f"  {line}" for line in still)
            )
    return message


def acquire_lock(lock: DeployLock) -> None:
    """Take ``lock``; its refusal (exit 3) says who holds it and, for a run that died, where it died."""
    try:
        lock.acquire()
    except LockHeld as held:
        raise LockHeld(describe_lock_refusal(held), held.holder, held.stale) from None


def work_left_behind() -> list[str]:
    """What a run that died still has running: host processes, and one-off containers where the runtime has them."""
    found = [child.describe() for child in children.left_behind()]
    # An unreachable engine is reported where the services are (`--status`'s services error); the
    # takeover, which must stop that work, fails loudly on it instead.
    with contextlib.suppress(DeployOpsError):
        found += get_runtime().one_off_work()
    return found


def take_over(broken: LockState | None, runtime, report) -> None:
    """Just after the lock is taken and before anything changes: stop what a run that died left
    running (its host process groups, its one-off containers), then close its record."""
    for line in children.stop_left_behind() + runtime.stop_one_off_work():
        report(_("Stopped, left running by a run that died: %(what)s") % {"what": line}, 0)
    if broken:
        mark_interrupted(broken)
        report(_("Broke the stale lock: %(lock)s") % {"lock": broken.describe()}, 0)


def _kind_label(kind: str) -> str:
    return str(dict(DeploymentRecord.Kind.choices).get(kind, kind))
