"""MySQL / MariaDB: ``mysqldump --single-transaction`` and the ``mysql`` client.

DDL commits by itself in MySQL, so one transaction cannot make a restore all-or-nothing.
Instead the dump is loaded into a scratch database first (an SQL error stops there, and the
real database was never touched); then ONE ``RENAME TABLE`` statement, which MySQL and
MariaDB apply atomically, moves the current tables out to a second scratch database and the
restored ones in.  Both scratch databases are dropped afterwards.  Views, triggers, stored
routines and events cannot be moved by RENAME TABLE, so a backup or database holding any of
them is refused (restore those by hand, see docs/BACKUPS.md).
"""

from __future__ import annotations

import logging
import re
import uuid
from typing import BinaryIO, Iterable

from ..compression import CHUNK
from ..exceptions import BackupError, CommandFailed
from ..runner import Command, open_process, run
from . import DatabaseEngine, in_service

logger = logging.getLogger("deploy_ops.databases")

CHARSET = "utf8mb4"


def connection_arguments(settings_dict: dict, service: str | None = None) -> tuple[list[str], dict[str, str], tuple[str, ...]]:
    """(argv options, environment, secrets) shared by mysqldump and mysql.

    Inside a Compose service the tools use the container's own socket, so HOST and PORT
    (as seen from Django) are left out.
    """
    options = settings_dict.get("OPTIONS") or {}
    argv = []
    # --defaults-file must come first, or the client ignores it.
    if options.get("read_default_file"):
        argv.append(f"--defaults-file={options['read_default_file']}")
    if not service:
        if options.get("unix_socket"):
            argv.append(f"--socket={options['unix_socket']}")
        elif settings_dict.get("HOST"):
            argv.append(f"--host={settings_dict['HOST']}")
        if settings_dict.get("PORT"):
            argv.append(f"--port={settings_dict['PORT']}")
    if settings_dict.get("USER"):
        argv.append(f"--user={settings_dict['USER']}")
    argv.append(f"--default-character-set={options.get('charset') or CHARSET}")
    password = str(settings_dict.get("PASSWORD") or "")
    env = {"MYSQL_PWD": password} if password else {}
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


def query_command(settings_dict: dict, sql: str, service: str | None = None) -> Command:
    argv, env, secrets = connection_arguments(settings_dict, service)
    return in_service(Command(("mysql", *argv, "--batch", "--skip-column-names", "-e", sql), env=env, secrets=secrets), service)


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


def _objects_sql(database: str) -> str:
    """Views, triggers, routines and events in ``database``: what RENAME TABLE cannot move."""
    schema = quote_string(database)
    return (
        f"SELECT CONCAT('view ', TABLE_NAME) FROM information_schema.VIEWS WHERE TABLE_SCHEMA = {schema} "
        f"UNION ALL SELECT CONCAT('trigger ', TRIGGER_NAME) FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = {schema} "
        f"UNION ALL SELECT CONCAT(LOWER(ROUTINE_TYPE), ' ', ROUTINE_NAME) FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = {schema} "
        f"UNION ALL SELECT CONCAT('event ', EVENT_NAME) FROM information_schema.EVENTS WHERE EVENT_SCHEMA = {schema}"
    )


def _tables_sql(database: str) -> str:
    return (
        "SELECT TABLE_NAME FROM information_schema.TABLES "
        f"WHERE TABLE_SCHEMA = {quote_string(database)} AND TABLE_TYPE = 'BASE TABLE' ORDER BY TABLE_NAME"
    )


class MySQLEngine(DatabaseEngine):
    vendor = "mysql"
    version_in_dump = re.compile(rb"^-- Server version\s+(.+)$", re.MULTILINE)

    def _query(self, sql: str) -> list[str]:
        finished = run(query_command(self.settings_dict, sql, self.exec_service), timeout=300)
        return [line for line in finished.stdout.splitlines() if line]

    def server_version(self) -> str:
        return self._query("SELECT VERSION()")[0]

    def dump(self, out: BinaryIO) -> None:
        with open_process(dump_command(self.settings_dict, self.exec_service), reading=True) as pipe:
            while chunk := pipe.read1(CHUNK):
                out.write(chunk)

    def restore(self, chunks: Iterable[bytes]) -> None:
        database = self.database_name
        suffix = uuid.uuid4().hex[:8]
        # Names stay within MySQL's 64 characters.
        scratch, trash = f"{database[:40]}__restore_{suffix}", f"{database[:40]}__replaced_{suffix}"
        self._query(f"CREATE DATABASE {quote_name(scratch)}")
        try:
            with open_process(load_command(self.settings_dict, scratch, self.exec_service), reading=False) as pipe:
                for chunk in chunks:
                    pipe.write(chunk)
            unmovable = self._query(_objects_sql(scratch)) + self._query(_objects_sql(database))
            if unmovable:
                raise BackupError(
                    f"The restore of {database!r} was refused and nothing changed: it holds {', '.join(unmovable[:5])}, "
                    "which an atomic table swap cannot move. Restore this backup by hand (see docs/BACKUPS.md)."
                )
            current, restored = self._query(_tables_sql(database)), self._query(_tables_sql(scratch))
            if current or restored:
                self._query(f"CREATE DATABASE {quote_name(trash)}")
                self._query(swap_tables_sql(database, scratch, trash, current, restored))
        finally:
            for leftover in (scratch, trash):
                # Cleanup must not hide the restore's own error; a leftover is only logged.
                try:
                    self._query(f"DROP DATABASE IF EXISTS {quote_name(leftover)}")
                except CommandFailed as error:
                    logger.warning("could not drop the scratch database %s: %s", leftover, error)
