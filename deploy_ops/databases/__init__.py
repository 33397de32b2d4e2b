"""Database engines: one module per engine, each with pure command builders and an engine object.

An engine streams a dump of its database into a binary writer (``dump``) and restores one
from an iterable of byte chunks (``restore``) so that a failed restore leaves the database
exactly as it was.  :func:`engine_for` picks the engine for a ``DATABASES`` alias.
"""

from __future__ import annotations

import abc
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.conf import settings
from django.utils.module_loading import import_string
from django.utils.translation import gettext as _

from ..conf import ops_settings
from ..exceptions import ConfigurationError
from ..runner import Command

if TYPE_CHECKING:
    from _typeshed import SupportsWrite  # a file, or a writer stacked on one (hashing, compressing)


class DatabaseEngine(abc.ABC):
    vendor: str
    # The file kind in backup names: "sql" (a plain SQL dump) or "sqlite3" (a database file).
    file_kind: str = "sql"
    # The tables and row counts of the last dump, for an engine whose dump no reader can parse
    # (SQLite's is a database file): its dump() sets them.
    dumped_tables: dict[str, int] | None = None

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
    def dump(self, out: SupportsWrite[bytes]) -> None:
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


@dataclass(frozen=True)
class Vendor:
    """What deploy_ops backs a database vendor up with."""

    engine_class: str  # dotted path of its DatabaseEngine
    host_tools: tuple[str, ...]  # the client tools a backup and a restore run on the host


# The one table of supported databases: the system checks (E003, the tools E010 looks for) and
# engine_for read it, so they cannot disagree.
VENDORS = {
    "postgresql": Vendor("deploy_ops.databases.postgresql.PostgreSQLEngine", ("pg_dump", "psql")),
    "mysql": Vendor("deploy_ops.databases.mysql.MySQLEngine", ("mysqldump", "mysql")),
    "sqlite": Vendor("deploy_ops.databases.sqlite.SQLiteEngine", ()),
}
# Django's own backends (GeoDjango's are built on them), by ENGINE.
ENGINE_VENDORS = {
    "django.db.backends.postgresql": "postgresql",
    "django.contrib.gis.db.backends.postgis": "postgresql",
    "django.db.backends.mysql": "mysql",
    "django.contrib.gis.db.backends.mysql": "mysql",
    "django.db.backends.sqlite3": "sqlite",
    "django.contrib.gis.db.backends.spatialite": "sqlite",
}


def vendor_of(settings_dict: dict) -> str | None:
    """The vendor deploy_ops backs this database up as, or None when it cannot back it up.

    Another backend built on one of Django's (django-prometheus, django-tenants, ...) says which
    by its DatabaseWrapper's ``vendor``, as ``connection.vendor`` does.
    """
    engine = settings_dict.get("ENGINE", "")
    if engine in ENGINE_VENDORS:
        return ENGINE_VENDORS[engine]
    try:
        vendor = import_string(f"{engine}.base.DatabaseWrapper").vendor
    except Exception:  # a backend that cannot be imported here is one Django cannot use either
        return None
    return vendor if vendor in VENDORS else None


def host_tools(settings_dict: dict) -> tuple[str, ...]:
    """The client tools backing up and restoring this database runs on the host."""
    vendor = vendor_of(settings_dict)
    return VENDORS[vendor].host_tools if vendor else ()


def engine_for(alias: str) -> DatabaseEngine:
    """The engine object for ``settings.DATABASES[alias]``.

    Read from settings.DATABASES on every call (not from django.db.connections, which caches
    the dict on first use), so an alias added at run time is found.
    """
    databases = settings.DATABASES
    if alias not in databases:
        raise ConfigurationError(
            _("settings.DATABASES has no alias %(alias)r (it has %(aliases)s); pass --database or set DEPLOY_OPS['BACKUP_DATABASE'].")
            % {"alias": alias, "aliases": ", ".join(map(repr, databases)) or _("none")}
        )
    settings_dict = databases[alias]
    vendor = vendor_of(settings_dict)
    if vendor is None:
        raise ConfigurationError(
            _("DATABASES[%(alias)r] uses %(engine)r; deploy_ops backs up PostgreSQL, MySQL/MariaDB and SQLite.")
            % {"alias": alias, "engine": settings_dict.get("ENGINE")}
        )
    return import_string(VENDORS[vendor].engine_class)(alias, settings_dict)


def restore_blockers(alias: str) -> list[str]:
    """Why the database ``alias`` cannot be restored safely, one sentence each; empty when it can.

    A deploy and every restore refuse before any change while this is not empty, and
    ``check --deploy`` reports it (deploy_ops.E011).
    """
    return engine_for(alias).restore_blockers()
