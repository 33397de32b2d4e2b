"""MySQL / MariaDB: ``mysqldump --single-transaction`` and the ``mysql`` client.

DDL commits by itself in MySQL, so one transaction cannot make a restore all-or-nothing.
Instead the dump is loaded into a scratch database first (an SQL error stops there, and the
real database was never touched).  Then, in the real database: the views, triggers, routines
and events are dropped (RENAME TABLE cannot move a table with triggers to another database,
and a view cannot move at all), ONE ``RENAME TABLE`` statement, which MySQL and MariaDB apply
atomically, moves the current tables out to a second scratch database and the restored ones
in, and the restored views, triggers, routines and events are created again from the scratch
database's own definitions (``SHOW CREATE``, with their sql_mode).  A failure after the first
drop is undone: the tables are swapped back and the previous objects recreated.  Both scratch
databases are dropped afterwards.  See docs/BACKUPS.md.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.db.backends.mysql.client import DatabaseClient
from django.utils.translation import gettext as _

from ..compression import CHUNK
from ..exceptions import CommandFailed, DeployOpsError, RestoreRefused, RestoreUndoFailed
from ..runner import Command, open_process, run
from . import DatabaseEngine, in_service

if TYPE_CHECKING:
    from _typeshed import SupportsWrite  # a file, or a writer stacked on one (hashing, compressing)

logger = logging.getLogger("deploy_ops.databases")

CHARSET = "utf8mb4"
# Where the client tools take a connection from the container they run in.
_CONNECTION_OPTIONS = ("host", "port", "unix_socket")


def connection_arguments(settings_dict: dict, service: str | None = None) -> tuple[list[str], dict[str, str], tuple[str, ...]]:
    """(argv options, environment, secrets) shared by mysqldump and mysql.

    Django's own ``dbshell`` client derives them (a HOST starting with "/" is a socket, OPTIONS
    user, password, read_default_file, ssl ca/cert/key and charset), so every connection Django
    makes, the tools make too; the password goes by MYSQL_PWD, never argv.  OPTIONS unix_socket,
    which Django passes to the driver, becomes ``--socket``.  Inside a Compose service the tools
    use the container's own socket, so HOST, PORT and socket (as seen from Django) are left out.
    """
    options = {key: value for key, value in (settings_dict.get("OPTIONS") or {}).items() if key not in ("database", "db")}
    connection = {"USER": "", "PASSWORD": "", "HOST": "", "PORT": "", **settings_dict, "NAME": "", "OPTIONS": options}
    if service:
        connection.update(HOST="", PORT="")
        for key in _CONNECTION_OPTIONS:
            options.pop(key, None)
    elif options.get("unix_socket"):
        connection["HOST"] = options.pop("unix_socket")
        options.pop("host", None)
    argv, env = DatabaseClient.settings_to_cmd_args_env(connection, [])
    argv = argv[1:]  # the executable is ours to choose
    if not options.get("charset"):
        argv.append(f"--default-character-set={CHARSET}")
    env = dict(env or {})
    password = env.get("MYSQL_PWD", "")
    return argv, env, (password,) if password else ()


def dump_command(settings_dict: dict, service: str | None = None) -> Command:
    argv, env, secrets = connection_arguments(settings_dict, service)
    return in_service(
        Command(
            (
                "mysqldump",
                *argv,
                "--single-transaction",  # a consistent InnoDB snapshot without locking the tables
                "--routines",
                "--triggers",
                "--events",
                "--hex-blob",
                "--no-tablespaces",  # needs no PROCESS privilege
                str(settings_dict["NAME"]),
            ),
            env=env,
            secrets=secrets,
        ),
        service,
    )


def load_command(settings_dict: dict, database: str, service: str | None = None) -> Command:
    """``mysql DATABASE`` reading a dump on stdin; stops at the first error."""
    argv, env, secrets = connection_arguments(settings_dict, service)
    return in_service(Command(("mysql", *argv, database), env=env, secrets=secrets), service)


def query_command(settings_dict: dict, sql: str, service: str | None = None, database: str = "") -> Command:
    """``mysql -e SQL``, in ``database`` when given (then the names in SHOW CREATE output are unqualified)."""
    argv, env, secrets = connection_arguments(settings_dict, service)
    in_database = (database,) if database else ()
    command = Command(("mysql", *argv, "--batch", "--skip-column-names", "-e", sql, *in_database), env=env, secrets=secrets)
    return in_service(command, service)


def script_command(settings_dict: dict, database: str, delimiter: str, service: str | None = None) -> Command:
    """``mysql DATABASE`` reading statements on stdin, separated by ``delimiter`` (routine bodies hold ";")."""
    argv, env, secrets = connection_arguments(settings_dict, service)
    return in_service(Command(("mysql", *argv, f"--delimiter={delimiter}", database), env=env, secrets=secrets), service)


def version_command(settings_dict: dict, service: str | None = None) -> Command:
    return query_command(settings_dict, "SELECT VERSION()", service)


def quote_name(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def quote_string(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "''") + "'"


def swap_tables_sql(database: str, scratch: str, trash: str, current: list[str], restored: list[str]) -> str:
    """One RENAME TABLE: the current tables out to ``trash``, the restored ones in from ``scratch``."""
    moves = [f"{quote_name(database)}.{quote_name(table)} TO {quote_name(trash)}.{quote_name(table)}" for table in current]
    moves += [f"{quote_name(scratch)}.{quote_name(table)} TO {quote_name(database)}.{quote_name(table)}" for table in restored]
    return "RENAME TABLE " + ", ".join(moves)


def _tables_sql(database: str) -> str:
    # Sequences and system-versioned tables move with RENAME TABLE like base tables; views do not.
    return (
        "SELECT TABLE_NAME FROM information_schema.TABLES "
        f"WHERE TABLE_SCHEMA = {quote_string(database)} AND TABLE_TYPE NOT IN ('VIEW', 'SYSTEM VIEW', 'TEMPORARY') ORDER BY TABLE_NAME"
    )


def _objects_sql(database: str) -> str:
    """(kind, name, definer) of the views, triggers, routines and events in ``database``: what RENAME TABLE cannot move."""
    schema = quote_string(database)
    return (
        f"SELECT 'view', TABLE_NAME, DEFINER FROM information_schema.VIEWS WHERE TABLE_SCHEMA = {schema} "
        f"UNION ALL SELECT 'trigger', TRIGGER_NAME, DEFINER FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = {schema} "
        f"UNION ALL SELECT LOWER(ROUTINE_TYPE), ROUTINE_NAME, DEFINER FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = {schema} "
        f"UNION ALL SELECT 'event', EVENT_NAME, DEFINER FROM information_schema.EVENTS WHERE EVENT_SCHEMA = {schema}"
    )


# This user, and whether it may create objects for another definer (MariaDB: SET USER or SUPER; MySQL 8: SET_USER_ID).
_ANY_DEFINER_SQL = (
    "SELECT CURRENT_USER(), COUNT(*) FROM information_schema.USER_PRIVILEGES WHERE PRIVILEGE_TYPE IN ('SUPER', 'SET USER', 'SET_USER_ID') "
    "AND GRANTEE = CONCAT('''', SUBSTRING_INDEX(CURRENT_USER(), '@', 1), '''@''', SUBSTRING_INDEX(CURRENT_USER(), '@', -1), '''')"
)


def _foreign_keys_from_elsewhere_sql(database: str) -> str:
    """Foreign keys in other databases that point into ``database``: a swap would leave them on the replaced tables."""
    schema = quote_string(database)
    return (
        "SELECT DISTINCT CONCAT(TABLE_SCHEMA, '.', TABLE_NAME, ' -> ', REFERENCED_TABLE_NAME) FROM information_schema.KEY_COLUMN_USAGE "
        f"WHERE REFERENCED_TABLE_SCHEMA = {schema} AND TABLE_SCHEMA <> {schema} ORDER BY 1"
    )


# Where each SHOW CREATE puts the statement, its sql_mode, its time zone and its collation_connection.
_SHOW_CREATE_COLUMNS = {
    "view": {"create": 1, "collation": 3},
    "trigger": {"create": 2, "sql_mode": 1, "collation": 4},
    "procedure": {"create": 2, "sql_mode": 1, "collation": 4},
    "function": {"create": 2, "sql_mode": 1, "collation": 4},
    "event": {"create": 3, "sql_mode": 1, "time_zone": 2, "collation": 5},
}
# Dropped in this order and created in the reverse one: a trigger or event may call a routine.
_DROP_ORDER = ("event", "trigger", "view", "procedure", "function")
_BATCH_ESCAPES = {"n": "\n", "t": "\t", "0": "\0", "\\": "\\"}


def _unescape(field: str) -> str | None:
    """A field of ``mysql --batch`` output as the server sent it (None for NULL)."""
    if field == "NULL":
        return None
    return re.sub(r"\\(.)", lambda escape: _BATCH_ESCAPES.get(escape[1], escape[0]), field)


@dataclass(frozen=True)
class StoredObject:
    """A view, trigger, procedure, function or event, with what recreating it exactly needs."""

    kind: str
    name: str
    definer: str
    # None when the server hides the definition from this user.
    create: str | None
    sql_mode: str | None = None
    time_zone: str | None = None
    collation: str | None = None

    def __str__(self) -> str:
        return f"{self.kind} {self.name}"

    def create_script(self, delimiter: str, schema_from: str = "", schema_to: str = "") -> str:
        """The statements that recreate it, with qualified names in ``schema_from`` moved to ``schema_to``."""
        create = self.create
        assert create is not None, "restore_blockers() refuses an object whose definition is hidden"
        if schema_from:
            create = create.replace(f"{quote_name(schema_from)}.", f"{quote_name(schema_to)}.")
        # The session settings the object was made under: its body is parsed, and runs, with them.
        settings = [f"SET SESSION sql_mode = {quote_string(self.sql_mode)}"] if self.sql_mode is not None else []
        if self.time_zone:
            settings.append(f"SET SESSION time_zone = {quote_string(self.time_zone)}")
        if self.collation:
            settings.append(f"SET SESSION collation_connection = {quote_string(self.collation)}")
        return "".join(f"{statement}{delimiter}\n" for statement in (*settings, create))

    def drop_sql(self, database: str) -> str:
        return f"DROP {self.kind.upper()} IF EXISTS {quote_name(database)}.{quote_name(self.name)}"


class MySQLEngine(DatabaseEngine):
    vendor = "mysql"
    version_in_dump = re.compile(rb"^-- Server version\s+(.+)$", re.MULTILINE)

    def _query(self, sql: str, database: str = "") -> list[str]:
        finished = run(query_command(self.settings_dict, sql, self.exec_service, database), timeout=300)
        return [line for line in finished.stdout.splitlines() if line]

    def server_version(self) -> str:
        return self._query("SELECT VERSION()")[0]

    def dump(self, out: SupportsWrite[bytes]) -> None:
        with open_process(dump_command(self.settings_dict, self.exec_service), reading=True) as pipe:
            while chunk := pipe.read1(CHUNK):
                out.write(chunk)

    def restore_blockers(self) -> list[str]:
        database = self.database_name
        blockers = [
            _("a foreign key from %(reference)s would stay on the replaced table (a restore swaps the tables of %(database)r)")
            % {"reference": reference, "database": database}
            for reference in self._query(_foreign_keys_from_elsewhere_sql(database))
        ]
        try:
            stored_objects = self._stored_objects(database)
        except RestoreRefused as unreadable:
            return [*blockers, str(unreadable)]
        blockers += [
            _("the definition of %(object)s is hidden from this database user, so it could not be recreated") % {"object": stored}
            for stored in stored_objects
            if stored.create is None
        ]
        if stored_objects:
            user, any_definer = self._query(_ANY_DEFINER_SQL)[0].split("\t")
            blockers += [
                _(
                    "%(object)s is defined by %(definer)s, and %(user)s may not create objects for another definer "
                    "(it needs the SET USER or SUPER privilege), so it could not be recreated"
                )
                % {"object": stored, "definer": stored.definer, "user": user}
                for stored in stored_objects
                if stored.definer != user and any_definer == "0"
            ]
        return blockers

    def _stored_objects(self, database: str) -> list[StoredObject]:
        """Every view, trigger, routine and event in ``database``, with its definition as SHOW CREATE gives it."""
        found = [row.split("\t") for row in self._query(_objects_sql(database))]
        if not found:
            return []
        shows = "; ".join(f"SHOW CREATE {kind.upper()} {quote_name(name)}" for kind, name, _definer in found)
        try:
            # In the database itself, so names in it come unqualified and fit any database.
            shown = self._query(shows, database)
        except CommandFailed as error:
            server_said = [line for line in error.stderr_tail.splitlines() if line.startswith("ERROR")][-1:]
            unreadable = _(
                "the definitions of the views, triggers, routines and events in %(database)r cannot be read by this database user "
                "(it needs SHOW VIEW, TRIGGER, EVENT and the routines' privileges, as ALL on the database gives)"
            ) % {"database": database}
            raise RestoreRefused(unreadable + (f": {server_said[0]}" if server_said else "")) from None
        rows = [[_unescape(field) for field in row.split("\t")] for row in shown]
        stored = []
        for (kind, name, definer), row in zip(found, rows, strict=True):
            columns = _SHOW_CREATE_COLUMNS[kind]
            stored.append(StoredObject(kind, name, definer, **{key: row[index] for key, index in columns.items()}))
        return stored

    def _drop_objects(self, database: str, objects: list[StoredObject]) -> None:
        ordered = sorted(objects, key=lambda stored: _DROP_ORDER.index(stored.kind))
        if ordered:
            self._query("; ".join(stored.drop_sql(database) for stored in ordered))

    def _create_objects(self, database: str, objects: list[StoredObject], schema_from: str = "") -> None:
        """Create ``objects`` in ``database``; views that need a view not yet made are retried after it."""
        # The client keeps at most 15 characters of a delimiter.
        delimiter = f"$${uuid.uuid4().hex[:10]}"
        pending = sorted(objects, key=lambda stored: -_DROP_ORDER.index(stored.kind))
        while pending:
            failed: list[StoredObject] = []
            last_error: CommandFailed | None = None
            for stored in pending:
                script = stored.create_script(delimiter, schema_from, database)
                try:
                    run(script_command(self.settings_dict, database, delimiter, self.exec_service), input=script.encode(), timeout=300)
                except CommandFailed as error:
                    failed.append(stored)
                    last_error = error
            if last_error is not None and len(failed) == len(pending):
                raise last_error
            pending = failed

    def restore(self, chunks: Iterable[bytes]) -> None:
        database = self.database_name
        suffix = uuid.uuid4().hex[:8]
        # Names stay within MySQL's 64 characters.
        scratch, trash = f"{database[:40]}__restore_{suffix}", f"{database[:40]}__replaced_{suffix}"
        kept = False
        self._query(f"CREATE DATABASE {quote_name(scratch)}")
        try:
            with open_process(load_command(self.settings_dict, scratch, self.exec_service), reading=False) as pipe:
                for chunk in chunks:
                    pipe.write(chunk)
            try:
                current_objects, restored_objects = self._stored_objects(database), self._stored_objects(scratch)
            except RestoreRefused as unreadable:
                raise RestoreRefused(
                    _("The restore of %(database)r was refused and nothing changed: %(problem)s.")
                    % {"database": database, "problem": unreadable}
                ) from None
            hidden = sorted({str(stored) for stored in current_objects + restored_objects if stored.create is None})
            if hidden:
                raise RestoreRefused(
                    _(
                        "The restore of %(database)r was refused and nothing changed: the definitions of %(objects)s "
                        "are hidden from this database user, so they could not be recreated (see docs/BACKUPS.md)."
                    )
                    % {"database": database, "objects": ", ".join(hidden)}
                )
            current, restored = self._query(_tables_sql(database)), self._query(_tables_sql(scratch))
            self._query(f"CREATE DATABASE {quote_name(trash)}")
            # A table with triggers cannot move to another database; the scratch copy's go now.
            self._drop_objects(scratch, [stored for stored in restored_objects if stored.kind == "trigger"])
            try:
                self._replace(database, scratch, trash, (current, current_objects), (restored, restored_objects))
            except RestoreUndoFailed:
                kept = True  # the scratch databases hold the tables a human needs
                raise
        finally:
            for leftover in () if kept else (scratch, trash):
                # Cleanup must not hide the restore's own error; a leftover is only logged.
                try:
                    self._query(f"DROP DATABASE IF EXISTS {quote_name(leftover)}")
                except CommandFailed as error:
                    logger.warning("could not drop the scratch database %s: %s", leftover, error)

    def _replace(self, database: str, scratch: str, trash: str, current: tuple, restored: tuple) -> None:
        """Swap the restored tables and objects in; undo on failure.  The live database changes from here on."""
        (current_tables, current_objects), (restored_tables, restored_objects) = current, restored
        swapped = False
        try:
            self._drop_objects(database, current_objects)
            if current_tables or restored_tables:
                self._query(swap_tables_sql(database, scratch, trash, current_tables, restored_tables))
                swapped = True
            self._create_objects(database, restored_objects, schema_from=scratch)
        except DeployOpsError as error:
            try:
                self._drop_objects(database, self._stored_objects(database))
                if swapped:
                    self._query(swap_tables_sql(database, trash, scratch, restored_tables, current_tables))
                    swapped = False
                self._create_objects(database, current_objects)
            except DeployOpsError as undo_error:
                values = {
                    "database": database,
                    "trash": trash,
                    "scratch": scratch,
                    "objects": ", ".join(map(str, current_objects)),
                    "error": error,
                    "undo_error": undo_error,
                }
                if swapped and current_objects:
                    tables = _(
                        "The tables as they were are in the database %(trash)r, the "
                        "restored ones in %(database)r; %(objects)s may be missing."
                    )
                elif swapped:
                    tables = _("The tables as they were are in the database %(trash)r, the restored ones in %(database)r.")
                elif current_objects:
                    tables = _("The tables of %(database)r are as they were; %(objects)s may be missing.")
                else:
                    tables = _("The tables of %(database)r are as they were.")
                sentences = [
                    _("The restore of %(database)r failed (%(error)s), and undoing it failed too (%(undo_error)s).") % values,
                    tables % values,
                    _("The scratch databases %(scratch)r and %(trash)r were kept.") % values,
                    _('Restore the safety backup by hand (docs/RUNBOOK.md, "Restoring a backup by hand").'),
                ]
                raise RestoreUndoFailed(" ".join(sentences)) from error
            logger.warning("the restore of %r failed after the first change and was undone: %s", database, error)
            raise
