"""Process groups: a child started apart from the terminal, and ended with everything it started.

On POSIX the child leads a new session, so its process group id is its pid and a signal to the
group reaches what it started; on Windows it gets a new process group (CTRL_BREAK reaches it)
and ``taskkill /T`` ends the tree.  The runner, the record of children left by a run that died
(``children``) and servectl use these.  Standard library only: servectl runs by its file path.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

POLL_SECONDS = 0.1
KILL_WAIT_SECONDS = 5


def own_group() -> dict:
    """Popen options that put a child in a process group of its own.

    The operator's Ctrl-C (SIGINT to the terminal's foreground group) and a closed terminal then
    reach the parent alone, which ends the child's whole group itself, and the services a start
    command launches do not die with the terminal.
    """
    if sys.platform == "win32":
        return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}
    return {"start_new_session": True}


def is_alive(pid: int) -> bool:
    if sys.platform == "win32":
        return _windows_alive(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # An exited process nobody has reaped yet (a zombie) still answers signal 0.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] != "Z"


if sys.platform == "win32":  # ctypes.windll exists only there, and the type checker knows it

    def _windows_alive(pid: int) -> bool:
        # os.kill(pid, 0) would terminate the process on Windows; ask for its exit code instead.
        import ctypes

        kernel32 = ctypes.windll.kernel32
        handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
        if not handle:
            return False
        try:
            code = ctypes.c_ulong()
            kernel32.GetExitCodeProcess(handle, ctypes.byref(code))
            return code.value == 259  # STILL_ACTIVE
        finally:
            kernel32.CloseHandle(handle)


def group_alive(leader: int) -> bool:
    """Whether the process group led by ``leader`` still has a member (the leader may be gone)."""
    if sys.platform == "win32":
        return is_alive(leader)
    try:
        os.killpg(leader, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def signal_group(leader: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(leader, signum)


def ask_to_end(leader: int) -> None:
    if sys.platform == "win32":
        os.kill(leader, signal.CTRL_BREAK_EVENT)
    else:
        signal_group(leader, signal.SIGTERM)


def kill_group(leader: int) -> None:
    if sys.platform == "win32":
        subprocess.run(["taskkill", "/F", "/T", "/PID", str(leader)], capture_output=True)
    else:
        signal_group(leader, signal.SIGKILL)


def wait_while(condition: Callable[[], bool], seconds: float) -> bool:
    """Poll ``condition`` until it is false or ``seconds`` pass; True if it became false."""
    deadline = time.monotonic() + seconds
    while condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_SECONDS)
    return True


def end_group(leader: int, timeout: float) -> bool:
    """Ask the group led by ``leader`` to end, kill it after ``timeout``; False if something survived."""
    ask_to_end(leader)
    if not wait_while(lambda: group_alive(leader), timeout):
        kill_group(leader)
        wait_while(lambda: group_alive(leader), KILL_WAIT_SECONDS)
    return not group_alive(leader)
