"""What a backup holds, and what the live database holds: the proof that a dump is whole.

A dump can be syntactically complete (its completion line is there) and still hold the wrong
thing: an empty database opened by mistake, another database, a table left out.  So a backup
states its contents, the tables and the rows of each, read from the dump itself while it
streams (constant memory: a PostgreSQL ``COPY`` block is counted by its newlines, a mysqldump
``INSERT`` by its row separators; an SQLite snapshot is asked directly), and
:func:`missing_from` compares them with the live database: every table it has must be in the
dump, and a table with rows there must have rows in the dump.

The live side is read with the engine's own client (psql, mysql, sqlite3), before the dump
starts, so rows written while the dump runs cannot make a good backup look incomplete.
"""

from __future__ import annotations

import re

from django.utils.translation import gettext as _

from ..runner import Command, run
from . import DatabaseEngine, in_service
from .sqlite import SQLiteEngine, sqlite_live_tables

# table -> rows in the dump; table -> whether it has rows, live.
Tables = dict[str, int]
LiveTables = dict[str, bool]

# How many names an error lists before "and N more".
_SHOWN = 10


class _DumpReader:
    """Reads a plain dump as it streams: statement lines one by one, rows in bulk.

    While ``_rows_of`` names a table, its rows follow one a line (``_count_rows`` counts them in
    C, without splitting); otherwise each line goes to ``_read_line``.  Only an unfinished line
    is carried over to the next chunk.
    """

    def __init__(self):
        self.tables: Tables = {}
        self._carry = b""
        self._rows_of: str | None = None

    def feed(self, chunk: bytes) -> None:
        data = self._carry + bytes(chunk) if self._carry else bytes(chunk)
        self._carry = b""
        position = 0
        while position < len(data):
            if self._rows_of is not None:
                position = self._count_rows(data, position)
                continue
            end = data.find(b"\n", position)
            if end < 0:
                self._carry = data[position:]
                return
            self._read_line(data[position:end])
            position = end + 1

    def _count_rows(self, data: bytes, position: int) -> int:
        """Counts rows from ``position``; returns where they end, or len(data) (carrying what it must)."""
        raise NotImplementedError

    def _read_line(self, line: bytes) -> None:
        raise NotImplementedError


class PostgresDumpReader(_DumpReader):
    """Tables (``CREATE TABLE``) and rows (``COPY ... FROM stdin`` lines up to ``\\.``) of a plain pg_dump."""

    _NAME = rb'(?:"(?:[^"]|"")*"|[^\s."(]+)(?:\.(?:"(?:[^"]|"")*"|[^\s."(]+))?'
    _CREATE = re.compile(rb"^CREATE (?:UNLOGGED )?TABLE (" + _NAME + rb") ")
    _COPY = re.compile(rb"^COPY (" + _NAME + rb") .*FROM stdin;$")
    _END = b"\\.\n"
    _BLOCK_END = b"\n" + _END
    _BACKSLASHES_TRIED = 8

    def __init__(self):
        super().__init__()
        self._at_line_start = True

    def _count_rows(self, data: bytes, position: int) -> int:
        table = self._rows_of
        assert table is not None, "feed() counts rows only while a table's rows follow"
        if self._at_line_start and data.startswith(self._END, position):
            self._rows_of = None
            return position + len(self._END)
        if self._at_line_start and len(data) - position < len(self._END) and self._END.startswith(data[position:]):
            self._carry = data[position:]  # maybe the start of "\.\n": decide with the next chunk
            return len(data)
        end = self._block_end(data, position)
        if end >= 0:
            self.tables[table] += data.count(b"\n", position, end + 1)
            self._rows_of = None
            self._at_line_start = True
            return end + 1 + len(self._END)
        last = data.rfind(b"\n", position)
        if last < 0:
            self._at_line_start = False
            return len(data)
        self.tables[table] += data.count(b"\n", position, last + 1)
        # "\" or "\." after the last newline may begin the end marker: judge them with what follows.
        rest = data[last + 1 :]
        self._at_line_start = True
        if self._END.startswith(rest):
            self._carry = rest
        elif rest:
            self._at_line_start = False
        return len(data)

    def _block_end(self, data: bytes, position: int) -> int:
        """Where ``\\n\\.\\n`` begins from ``position``, or -1.

        A backslash is rare in COPY rows (only escapes), so memchr finds the candidates several
        times faster than a search for the whole marker, whose newlines are everywhere; in rows
        full of escapes (``\\N`` for NULL) the whole-marker search takes over.
        """
        backslash = data.find(b"\\", position + 1)
        for _tried in range(self._BACKSLASHES_TRIED):
            if backslash < 0:
                return -1
            if data.startswith(self._BLOCK_END, backslash - 1):
                return backslash - 1
            backslash = data.find(b"\\", backslash + 1)
        return data.find(self._BLOCK_END, backslash - 1) if backslash >= 0 else -1

    def _read_line(self, line: bytes) -> None:
        found = self._COPY.match(line)
        if found:
            self._rows_of = found[1].decode("utf-8", "replace")
            self.tables.setdefault(self._rows_of, 0)
            self._at_line_start = True
            return
        found = self._CREATE.match(line)
        if found:
            self.tables.setdefault(found[1].decode("utf-8", "replace"), 0)


class MySQLDumpReader(_DumpReader):
    """Tables (``CREATE TABLE``) and rows (the tuples of each ``INSERT INTO ... VALUES``) of a mysqldump.

    MySQL writes an INSERT on one line, ``VALUES (..),(..);``; MariaDB 11 writes ``VALUES`` alone
    and then one row a line, the last ending in ``;``.  A row never spans lines: the dump escapes
    newlines inside values.
    """

    _CREATE = re.compile(rb"^CREATE TABLE `((?:[^`]|``)+)` ")
    _INSERT = re.compile(rb"^INSERT INTO `((?:[^`]|``)+)` VALUES ?")
    # A quoted string as mysqldump writes it (\' and \\ escaped): removed before counting "),(".
    _STRING = re.compile(rb"'(?:[^'\\]|\\.)*'")

    def _count_rows(self, data: bytes, position: int) -> int:
        table = self._rows_of
        assert table is not None, "feed() counts rows only while a table's rows follow"
        end = data.find(b";\n", position)
        if end >= 0:
            self.tables[table] += data.count(b"\n", position, end + 2)
            self._rows_of = None
            return end + 2
        last = data.rfind(b"\n", position)
        self.tables[table] += data.count(b"\n", position, last + 1)
        self._carry = data[max(last + 1, position) :]  # a row's start: its newline is counted next time
        return len(data)

    def _read_line(self, line: bytes) -> None:
        found = self._INSERT.match(line)
        if found:
            name = self._name(found[1])
            values = line[found.end() :]
            self.tables.setdefault(name, 0)
            if values:
                self.tables[name] += self._STRING.sub(b"''", values).count(b"),(") + 1
            else:
                self._rows_of = name
            return
        found = self._CREATE.match(line)
        if found:
            self.tables.setdefault(self._name(found[1]), 0)

    @staticmethod
    def _name(quoted: bytes) -> str:
        return quoted.replace(b"``", b"`").decode("utf-8", "replace")


DUMP_READERS = {"postgresql": PostgresDumpReader, "mysql": MySQLDumpReader}


def dump_reader(vendor: str) -> _DumpReader | None:
    """The reader for a plain SQL dump of ``vendor``; None for SQLite, whose backup is a database file."""
    reader_class = DUMP_READERS.get(vendor)
    return reader_class() if reader_class else None


# -- PostgreSQL ----------------------------------------------------------------------------------
# Ordinary tables pg_dump writes the rows of: not partitioned parents (their partitions hold the
# rows), temporary or foreign tables, system schemas, or objects that belong to an extension.
# FROM ONLY: an inheritance parent's COPY holds its own rows, not its children's.
POSTGRES_LIVE_TABLES_SQL = r"""
SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname),
       (xpath('/row/found/text()',
              query_to_xml(format('SELECT EXISTS (SELECT 1 FROM ONLY %I.%I) AS found', n.nspname, c.relname), false, true, '')))[1]::text
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind = 'r' AND c.relpersistence <> 't'
   AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\_%'
   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                    WHERE d.deptype = 'e' AND ((d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = c.oid)
                       OR (d.classid = 'pg_catalog.pg_namespace'::regclass AND d.objid = n.oid)))
"""


def postgres_live_tables_command(settings_dict: dict, service: str | None = None) -> Command:
    """psql printing ``name NUL true|false NUL`` per table (NUL separators: any name is safe)."""
    from .postgresql import connection_arguments

    argv, env, secrets = connection_arguments(settings_dict, service)
    sql = POSTGRES_LIVE_TABLES_SQL
    return in_service(Command(("psql", "-X", "-A", "-t", "-z", "-0", *argv, "-c", sql), env=env, secrets=secrets), service)


def _postgres_live_tables(engine: DatabaseEngine) -> LiveTables:
    fields = run(postgres_live_tables_command(engine.settings_dict, engine.exec_service), timeout=300).stdout.split("\0")
    # zip drops the empty field after the last separator.
    return {name: found == "true" for name, found in zip(fields[::2], fields[1::2], strict=False)}


# -- MySQL / MariaDB -----------------------------------------------------------------------------
def _mysql_live_tables(engine: DatabaseEngine) -> LiveTables:
    from .mysql import query_command, quote_name, quote_string

    def query(sql: str) -> list[str]:
        finished = run(query_command(engine.settings_dict, sql, engine.exec_service), timeout=300)
        return [line for line in finished.stdout.splitlines() if line]

    database = engine.database_name
    # HEX: the client's batch mode escapes tabs and backslashes; hex digits need no escaping.
    names = [
        bytes.fromhex(line).decode("utf-8")
        for line in query(
            "SELECT HEX(TABLE_NAME) FROM information_schema.TABLES "
            f"WHERE TABLE_SCHEMA = {quote_string(database)} AND TABLE_TYPE = 'BASE TABLE' ORDER BY TABLE_NAME"
        )
    ]
    if not names:
        return {}
    probes = ", ".join(f"EXISTS (SELECT 1 FROM {quote_name(database)}.{quote_name(name)})" for name in names)
    [flags] = query(f"SELECT CONCAT_WS(',', {probes})")
    return {name: flag == "1" for name, flag in zip(names, flags.split(","), strict=True)}


def live_tables(engine: DatabaseEngine) -> LiveTables:
    """Every table of the live database and whether it has rows, by the engine's own client."""
    if isinstance(engine, SQLiteEngine):
        return sqlite_live_tables(engine)
    readers = {"postgresql": _postgres_live_tables, "mysql": _mysql_live_tables}
    return readers[engine.vendor](engine)


def missing_from(found: Tables, live: LiveTables) -> list[str]:
    """What the dump lacks compared with the live database, one sentence each; empty when it matches."""
    absent = [name for name in live if name not in found]
    emptied = [name for name, has_rows in live.items() if has_rows and found.get(name) == 0]
    problems = []
    if absent:
        problems.append(
            _("%(count)s table(s) of the database are not in it: %(tables)s") % {"count": len(absent), "tables": _listed(absent)}
        )
    if emptied:
        problems.append(
            _("%(count)s table(s) have rows in the database but none in it: %(tables)s")
            % {"count": len(emptied), "tables": _listed(emptied)}
        )
    return problems


def differences(found: Tables, recorded: Tables) -> list[str]:
    """How the tables and row counts read from a backup differ from those recorded when it was made."""
    problems = []
    absent = [name for name in recorded if name not in found]
    extra = [name for name in found if name not in recorded]
    changed = [
        _("%(table)s (%(found)s rows, recorded %(recorded)s)") % {"table": name, "found": found[name], "recorded": recorded[name]}
        for name in recorded
        if name in found and found[name] != recorded[name]
    ]
    if absent:
        problems.append(_("recorded table(s) missing: %(tables)s") % {"tables": _listed(absent)})
    if extra:
        problems.append(_("table(s) not recorded: %(tables)s") % {"tables": _listed(extra)})
    if changed:
        problems.append(_("row counts differ: %(tables)s") % {"tables": _listed(changed)})
    return problems


def _listed(names: list[str]) -> str:
    shown = ", ".join(names[:_SHOWN])
    if len(names) <= _SHOWN:
        return shown
    return _("%(tables)s and %(count)s more") % {"tables": shown, "count": len(names) - _SHOWN}
