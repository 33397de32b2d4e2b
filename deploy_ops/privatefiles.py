"""Files only their owner can read: LOG_DIR and STATE_DIR are 0700 and what deploy_ops writes there 0600.

The journal holds every stage's output and notifications.log every event: any local user could
read them otherwise.  Folders and files that already exist with looser modes are tightened the
next time they are written.  On Windows the modes are not enforced (access there is by ACL,
inherited from the folder); these calls are harmless there.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

DIRECTORY_MODE = 0o700
FILE_MODE = 0o600


def private_directory(path: Path) -> Path:
    """Create ``path`` (and its parents) if needed; make it 0700 even when it existed."""
    path.mkdir(mode=DIRECTORY_MODE, parents=True, exist_ok=True)
    _tighten(path, DIRECTORY_MODE)
    return path


def _tighten(path: Path, mode: int) -> None:
    if os.name != "nt" and stat.S_IMODE(path.stat().st_mode) != mode:
        os.chmod(path, mode)


@contextlib.contextmanager
def open_private_append(path: Path) -> Iterator[IO[str]]:
    """``open(path, "a")`` in a private folder, for a file that is 0600 even if it existed before."""
    private_directory(path.parent)
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_BINARY", 0), FILE_MODE)
    with os.fdopen(descriptor, "a", encoding="utf-8", newline="\n") as file:
        _tighten(path, FILE_MODE)
        yield file


def private_file(path: Path) -> int:
    """A read-write descriptor of ``path`` (created 0600 if missing, never truncated), in a private folder."""
    private_directory(path.parent)
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_BINARY", 0), FILE_MODE)
    _tighten(path, FILE_MODE)
    return descriptor


def write_atomically(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` all at once: a reader sees the old content or the new, never a part.

    The data goes to a 0600 temporary file beside it, fsynced, then renamed over ``path``; a crash
    at any point leaves the old file as it was (and at worst a ``.partial-*`` file beside it).
    The folder must exist; its mode is the caller's business.
    """
    descriptor, temporary = tempfile.mkstemp(prefix=".partial-", dir=path.parent)  # mode 0600
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temporary)
        raise
    fsync_directory(path.parent)


def fsync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable (POSIX); Windows cannot open a folder, and needs no such step."""
    if os.name == "nt":
        return
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
