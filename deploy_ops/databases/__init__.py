"""Database engines: one module per engine, each with pure command builders and an engine object.

An engine streams a dump of its database into a binary writer (``dump``) and restores one
from an iterable of byte chunks (``restore``) so that a failed restore leaves the database
exactly as it was.  :func:`engine_for` picks the engine for a ``DATABASES`` alias.
"""

from __future__ import annotations

import abc
import re
from typing import BinaryIO, Iterable

from django.conf import settings

from ..conf import ops_settings
from ..exceptions import ConfigurationError
from ..runner import Command


class DatabaseEngine(abc.ABC):
    vendor: str
    # The file kind in backup names: "sql" (a plain SQL dump) or "sqlite3" (a database file).
    file_kind: str = "sql"

    def __init__(self, alias: str, settings_dict: dict):
        self.alias = alias
        self.settings_dict = settings_dict

    @property
    def database_name(self) -> str:
        return str(self.settings_dict.get("NAME") or "")

    @property
    def exec_service(self) -> str | None:
        return ops_settings.BACKUP_EXEC_SERVICE

    # The line of a dump's header that names the server version (saves a query).
    version_in_dump: re.Pattern | None = None

    @abc.abstractmethod
    def server_version(self) -> str: ...

    def version_from_dump(self, head: bytes) -> str | None:
        found = self.version_in_dump.search(head) if self.version_in_dump else None
        return found[1].decode("utf-8", "replace").strip() if found else None

    @abc.abstractmethod
    def dump(self, out: BinaryIO) -> None:
        """Write a complete dump of the database to ``out``."""

    def restore_blockers(self) -> list[str]:
        """What in the live database a restore could not bring back safely (empty: nothing)."""
        return []

    @abc.abstractmethod
    def restore(self, chunks: Iterable[bytes]) -> None:
        """Replace the database with the dump in ``chunks``; all or nothing.

        ``chunks`` raises when the backup turns out to be damaged; the engine must then
        leave the database untouched (the error propagates).
        """


# A complete plain dump has this line near its end; a dump cut short does not.
COMPLETION_MARKERS = {
    "postgresql": b"-- PostgreSQL database dump complete",
    "mysql": b"-- Dump completed",
}
SQLITE_HEADER = b"SQLite format 3\x00"


def sniff_vendor(head: bytes) -> str | None:
    """The engine that wrote a dump, from its first bytes (for backups without metadata)."""
    if head.startswith(SQLITE_HEADER):
        return "sqlite"
    if b"-- PostgreSQL database dump" in head:
        return "postgresql"
    if b"-- MySQL dump" in head or b"-- MariaDB dump" in head:
        return "mysql"
    return None


def in_service(command: Command, service: str | None) -> Command:
    """The command as is, or run inside the Compose ``service`` (env passed by name, never by value)."""
    if not service:
        return command
    from ..runtimes.compose_cli import exec_command

    return exec_command(service, command.argv, command.env, command.secrets)


VENDORS = {
    "django.db.backends.postgresql": "postgresql",
    "django.db.backends.mysql": "mysql",
    "django.db.backends.sqlite3": "sqlite",
}


def vendor_of(settings_dict: dict) -> str | None:
    engine = settings_dict.get("ENGINE", "")
    if engine in VENDORS:
        return VENDORS[engine]
    # Third-party backends built on Django's (django.contrib.gis, django-prometheus, ...).
    for vendor in ("postgresql", "postgis", "mysql", "sqlite"):
        if vendor in engine:
            return {"postgis": "postgresql"}.get(vendor, vendor)
    return None


def engine_for(alias: str) -> DatabaseEngine:
    """The engine object for ``settings.DATABASES[alias]``.

    Read from settings.DATABASES on every call (not from django.db.connections, which caches
    the dict on first use), so an alias added at run time is found.
    """
    databases = settings.DATABASES
    if alias not in databases:
        raise ConfigurationError(
            f"settings.DATABASES has no alias {alias!r} (it has {', '.join(map(repr, databases)) or 'none'}); "
            "pass --database or set DEPLOY_OPS['BACKUP_DATABASE']."
        )
    settings_dict = databases[alias]
    vendor = vendor_of(settings_dict)
    if vendor == "postgresql":
        from .postgresql import PostgreSQLEngine

        return PostgreSQLEngine(alias, settings_dict)
    if vendor == "mysql":
        from .mysql import MySQLEngine

        return MySQLEngine(alias, settings_dict)
    if vendor == "sqlite":
        from .sqlite import SQLiteEngine

        return SQLiteEngine(alias, settings_dict)
    raise ConfigurationError(
        f"DATABASES[{alias!r}] uses {settings_dict.get('ENGINE')!r}; deploy_ops backs up PostgreSQL, MySQL/MariaDB and SQLite."
    )


def restore_blockers(alias: str) -> list[str]:
    """Why the database ``alias`` cannot be restored safely, one sentence each; empty when it can.

    A deploy and every restore refuse before any change while this is not empty, and
    ``check --deploy`` reports it (deploy_ops.E011).
    """
    return engine_for(alias).restore_blockers()
