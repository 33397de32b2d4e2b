"""SQLite: the online backup API both ways, so no external tool is needed.

``dump`` copies the live database (a consistent snapshot while the application writes) into
a temporary file beside it and streams that file out.  ``restore`` writes the backup to a
temporary file, checks it, then copies it INTO the live database with the backup API, which
replaces the destination's pages in one write transaction: readers see the old database or
the new one, WAL files stay consistent, and a failure leaves the old database as it was.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from django.utils.translation import gettext as _

from ..compression import CHUNK, CorruptStream
from ..exceptions import BackupError, ConfigurationError
from . import SQLITE_HEADER, DatabaseEngine

if TYPE_CHECKING:
    from _typeshed import SupportsWrite  # a file, or a writer stacked on one (hashing, compressing)

# Seconds to wait for another connection's write lock before giving up.
LOCK_TIMEOUT = 30


def read_only_uri(path: Path) -> str:
    """An SQLite URI that opens ``path`` read-only, whatever its characters.

    Written as ``file:`` + path, a ``#`` in a folder name starts a fragment and a ``?`` a query:
    SQLite would open (and create, empty) another file.  ``as_uri`` percent-encodes them.
    """
    return Path(path).absolute().as_uri() + "?mode=ro"


# -- what a file holds (read by databases.contents: a backup states its tables and rows) ---------
def _tables(connection: sqlite3.Connection) -> list[str]:
    rows = connection.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name"
    )
    return [name for (name,) in rows]


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def sqlite_file_tables(path: Path) -> dict[str, int]:
    """Every table of the SQLite file at ``path`` and its exact row count."""
    with contextlib.closing(sqlite3.connect(read_only_uri(path), uri=True)) as connection:
        return {name: connection.execute(f"SELECT count(*) FROM {_quote(name)}").fetchone()[0] for name in _tables(connection)}


def sqlite_live_tables(engine: SQLiteEngine) -> dict[str, bool]:
    """Every table of the live database and whether it has rows."""
    if not engine.path.exists():
        return {}  # the dump refuses it, with the reason (a plain connect would create it)
    # The plain path, as Django opens it, not the dump's URI: a second way to name the file, so a
    # mistake in either shows up as a difference.
    with contextlib.closing(sqlite3.connect(engine.path, timeout=LOCK_TIMEOUT)) as connection:
        return {
            name: connection.execute(f"SELECT EXISTS (SELECT 1 FROM {_quote(name)})").fetchone()[0] == 1 for name in _tables(connection)
        }


def check_database_file(path: Path) -> None:
    """Raise CorruptStream unless ``path`` is an SQLite database that passes integrity_check."""
    with open(path, "rb") as file:
        if file.read(len(SQLITE_HEADER)) != SQLITE_HEADER:
            raise CorruptStream(_("it is not an SQLite database (the file header is wrong)"))
    try:
        with contextlib.closing(sqlite3.connect(read_only_uri(path), uri=True)) as connection:
            result = [row[0] for row in connection.execute("PRAGMA integrity_check")]
    except sqlite3.DatabaseError as error:
        raise CorruptStream(_("SQLite cannot read it (%(error)s)") % {"error": error}) from None
    if result != ["ok"]:
        raise CorruptStream(_("SQLite's integrity_check failed: %(problems)s") % {"problems": "; ".join(result[:3])})


@contextlib.contextmanager
def _temporary_file(directory: Path):
    descriptor, name = tempfile.mkstemp(prefix=".deploy_ops-", suffix=".sqlite3", dir=directory)
    os.close(descriptor)
    try:
        yield Path(name)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(name)


class SQLiteEngine(DatabaseEngine):
    vendor = "sqlite"
    file_kind = "sqlite3"

    @property
    def path(self) -> Path:
        name = self.database_name
        if not name or name == ":memory:" or "mode=memory" in name:
            raise ConfigurationError(
                _("DATABASES[%(alias)r] is an in-memory SQLite database; there is nothing on disk to back up.") % {"alias": self.alias}
            )
        if name.startswith("file:"):
            # Its query could say anything (another vfs, immutable=1); a path means one file.
            raise ConfigurationError(
                _("DATABASES[%(alias)r]['NAME'] is an SQLite URI (%(uri)s…); give deploy_ops the plain path of the database file.")
                % {"alias": self.alias, "uri": name.split("?")[0]}
            )
        return Path(name)

    def server_version(self) -> str:
        return sqlite3.sqlite_version

    def dump(self, out: SupportsWrite[bytes]) -> None:
        source_path = self.path
        if not source_path.exists():
            raise BackupError(
                _("The SQLite database %(path)s does not exist; check DATABASES[%(alias)r]['NAME'].")
                % {"path": source_path, "alias": self.alias}
            )
        # The snapshot is taken beside the database: that disk holds a database this size already.
        with _temporary_file(source_path.parent) as snapshot:
            with contextlib.closing(sqlite3.connect(read_only_uri(source_path), uri=True, timeout=LOCK_TIMEOUT)) as source:
                with contextlib.closing(sqlite3.connect(snapshot)) as copy:
                    source.backup(copy)
            self.dumped_tables = sqlite_file_tables(snapshot)
            with open(snapshot, "rb") as file:
                while chunk := file.read(CHUNK):
                    out.write(chunk)

    def restore(self, chunks: Iterable[bytes]) -> None:
        target = self.path
        with _temporary_file(target.parent) as restored:
            with open(restored, "wb") as file:
                for chunk in chunks:
                    file.write(chunk)
            check_database_file(restored)
            with contextlib.closing(sqlite3.connect(restored)) as source:
                with contextlib.closing(sqlite3.connect(target, timeout=LOCK_TIMEOUT)) as destination:
                    source.backup(destination)
