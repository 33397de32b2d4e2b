"""PostgreSQL: ``pg_dump`` (plain SQL, so ``gunzip -c FILE | psql`` restores it by hand) and ``psql``.

A restore runs the clearing preamble and the dump in ONE ``psql -1 -v ON_ERROR_STOP=1``
transaction: either the database equals the backup afterwards, or nothing changed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

from django.db.backends.postgresql.client import DatabaseClient

from ..compression import CHUNK
from ..runner import Command, open_process, run
from . import DatabaseEngine, in_service

if TYPE_CHECKING:
    from _typeshed import SupportsWrite  # a file, or a writer stacked on one (hashing, compressing)

# Clears what a plain dump recreates, so that the restored database equals the backup: every
# user schema (tables, sequences, views, functions, types and the extensions in them, including
# objects made after the backup), and large objects.  The public schema comes back empty with
# its owner, privileges and comment as before (PostgreSQL 15 owns it by pg_database_owner;
# pg_dump does not recreate it).  Schemas that belong to an extension go with their extension.
CLEAR_OBJECTS_SQL = r"""
SET client_min_messages = warning;
DO $deploy_ops$
DECLARE
    public_owner text;
    public_acl aclitem[];
    public_comment text;
    schema_name text;
    granted record;
BEGIN
    SELECT nspowner::regrole::text, nspacl, obj_description(oid, 'pg_namespace')
      INTO public_owner, public_acl, public_comment
      FROM pg_catalog.pg_namespace WHERE nspname = 'public';
    FOR schema_name IN
        SELECT n.nspname FROM pg_catalog.pg_namespace n
         WHERE n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\_%'
           AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                            WHERE d.classid = 'pg_catalog.pg_namespace'::regclass AND d.objid = n.oid AND d.deptype = 'e')
    LOOP
        EXECUTE format('DROP SCHEMA %I CASCADE', schema_name);
    END LOOP;
    PERFORM pg_catalog.lo_unlink(oid) FROM pg_catalog.pg_largeobject_metadata;
    CREATE SCHEMA public;
    IF public_owner IS NOT NULL THEN
        EXECUTE format('ALTER SCHEMA public OWNER TO %s', public_owner);
        FOR granted IN SELECT grantee, privilege_type FROM aclexplode(public_acl) LOOP
            EXECUTE format('GRANT %s ON SCHEMA public TO %s', granted.privilege_type,
                           CASE WHEN granted.grantee = 0 THEN 'PUBLIC' ELSE granted.grantee::regrole::text END);
        END LOOP;
        EXECUTE format('COMMENT ON SCHEMA public IS %L', public_comment);
    END IF;
END
$deploy_ops$;
RESET client_min_messages;
"""


def dbname_conninfo(name: str) -> str:
    """``dbname='name'``: libpq reads a -d value containing ``=`` (or a URI) as connection
    parameters, so a NAME such as ``dbname=other`` would pick another database; quoted in a
    conninfo string it is only ever a database name."""
    return "dbname='" + name.replace("\\", "\\\\").replace("'", "\\'") + "'"


def connection_arguments(settings_dict: dict, service: str | None = None) -> tuple[list[str], dict[str, str], tuple[str, ...]]:
    """(argv options, environment, secrets) shared by pg_dump and psql.

    Django's own ``dbshell`` client derives them (USER, HOST, PORT, and OPTIONS service, passfile,
    sslmode, sslrootcert, sslcert, sslkey as libpq environment variables), so every connection
    Django makes, the tools make too; the password goes by PGPASSWORD, never argv.  With a
    ``service`` and no NAME the service file names the database.  Inside a Compose service the
    tools connect through the container's own socket (as the old scripts did), so HOST and PORT,
    which are as seen from Django, are left out.
    """
    connection = {"USER": "", "PASSWORD": "", "HOST": "", "PORT": "", "NAME": "", **settings_dict}
    connection["OPTIONS"] = dict(settings_dict.get("OPTIONS") or {})
    if service:
        connection.update(HOST="", PORT="")
    django_argv, env = DatabaseClient.settings_to_cmd_args_env(connection, [])
    # Django gives "-U user", "-h host", "-p port" as pairs, then the database name when there is one.
    options = [str(argument) for argument in django_argv[1:]]  # the executable is ours to choose
    database = ["-d", dbname_conninfo(options.pop())] if len(options) % 2 else []
    argv = ["--no-password", *options, *database]  # never wait for a password prompt: fail with a message instead
    env = {variable: str(value) for variable, value in (env or {}).items()}
    password = env.get("PGPASSWORD", "")
    return argv, env, (password,) if password else ()


def dump_command(settings_dict: dict, service: str | None = None) -> Command:
    argv, env, secrets = connection_arguments(settings_dict, service)
    return in_service(Command(("pg_dump", *argv), env=env, secrets=secrets), service)


def restore_command(settings_dict: dict, service: str | None = None) -> Command:
    """psql reading the script on stdin: one transaction, stopping at the first error."""
    argv, env, secrets = connection_arguments(settings_dict, service)
    return in_service(Command(("psql", "-X", "-q", "-1", "-v", "ON_ERROR_STOP=1", *argv), env=env, secrets=secrets), service)


def version_command(settings_dict: dict, service: str | None = None) -> Command:
    argv, env, secrets = connection_arguments(settings_dict, service)
    return in_service(Command(("psql", "-X", "-A", "-t", *argv, "-c", "SHOW server_version"), env=env, secrets=secrets), service)


class PostgreSQLEngine(DatabaseEngine):
    vendor = "postgresql"
    version_in_dump = re.compile(rb"^-- Dumped from database version (.+)$", re.MULTILINE)

    def server_version(self) -> str:
        return run(version_command(self.settings_dict, self.exec_service), timeout=60).stdout.strip()

    def dump(self, out: SupportsWrite[bytes]) -> None:
        with open_process(dump_command(self.settings_dict, self.exec_service), reading=True) as pipe:
            # read1: take what the pipe holds now, so pg_dump keeps producing while we compress.
            while chunk := pipe.read1(CHUNK):
                out.write(chunk)

    def restore(self, chunks: Iterable[bytes]) -> None:
        with open_process(restore_command(self.settings_dict, self.exec_service), reading=False) as pipe:
            pipe.write(CLEAR_OBJECTS_SQL.encode())
            for chunk in chunks:
                pipe.write(chunk)
