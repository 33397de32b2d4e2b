"""A backup proves what it holds, on the real servers: at creation its tables and rows are compared
with the live database (an empty or partial dump is refused and not kept), they are recorded in
the metadata, and verify compares them again."""

import dataclasses
import json
import sqlite3
from pathlib import Path

import pytest

from deploy_ops import backups
from deploy_ops.databases import mysql as mysql_engine
from deploy_ops.databases import postgresql, sqlite
from deploy_ops.exceptions import BackupCorrupt, BackupError
from tests.fixtures.backups import psql

pytestmark = pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")


def assert_nothing_kept(ops_dirs):
    folder = ops_dirs / "backups"
    assert not folder.exists() or list(folder.iterdir()) == []


def with_extra_arguments(monkeypatch, module, *extra):
    """The engine's real dump command with arguments that leave part of the database out."""
    original = module.dump_command

    def partial(settings_dict, service=None):
        command = original(settings_dict, service)
        return dataclasses.replace(command, argv=(*command.argv, *extra))

    monkeypatch.setattr(module, "dump_command", partial)


def record_other_contents(backup, tables):
    metadata = json.loads(backup.metadata_path.read_text())
    metadata["contents"]["tables"] = tables
    backup.metadata_path.write_text(json.dumps(metadata))
    return backups.find_backup(backup.name)


# -- PostgreSQL -----------------------------------------------------------------------------------
@pytest.fixture
def postgres_with_two_tables(postgres_target):
    psql(postgres_target, 'CREATE TABLE tags (id int); CREATE TABLE "Odd Name" (i int); INSERT INTO "Odd Name" VALUES (1), (2);')
    return postgres_target


@pytest.mark.postgres
def test_a_postgres_backup_records_every_table_and_its_rows(postgres_with_two_tables):
    # An inheritance parent without rows of its own, and a partitioned table: rows sit in the children.
    psql(
        postgres_with_two_tables,
        "CREATE TABLE parent (i int); CREATE TABLE child () INHERITS (parent); INSERT INTO child VALUES (1);"
        "CREATE TABLE measures (i int) PARTITION BY RANGE (i); CREATE TABLE measures_low PARTITION OF measures FOR VALUES FROM (0) TO (10);"
        "INSERT INTO measures VALUES (1), (2), (3);",
    )
    backup = backups.create_backup()
    assert backup.metadata["contents"] == {
        "tables": {
            "public.items": 500,
            "public.tags": 0,
            'public."Odd Name"': 2,
            "public.parent": 0,
            "public.child": 1,
            "public.measures": 0,
            "public.measures_low": 3,
        }
    }
    backups.verify_backup(backup)


@pytest.mark.postgres
def test_verify_fails_a_postgres_backup_whose_rows_differ_from_its_metadata(postgres_target):
    backup = record_other_contents(backups.create_backup(), {"public.items": 499, "public.gone": 3})
    with pytest.raises(
        BackupCorrupt,
        match=r"it does not hold the tables and rows recorded when it was made: "
        r"recorded table\(s\) missing: public.gone; row counts differ: public.items \(500 rows, recorded 499\)",
    ):
        backups.verify_backup(backup)
    assert backups.find_backup(backup.name).verified is False


@pytest.mark.postgres
def test_an_empty_postgres_database_makes_a_backup_of_no_tables(postgres_database, settings, ops_dirs):
    settings.DATABASES = {**settings.DATABASES, "target": postgres_database}
    settings.DEPLOY_OPS = {**settings.DEPLOY_OPS, "BACKUP_DATABASE": "target"}
    backup = backups.create_backup()
    assert backup.metadata["contents"] == {"tables": {}}
    backups.verify_backup(backup)


# -- MySQL / MariaDB ------------------------------------------------------------------------------
@pytest.mark.mysql
def test_a_mysql_backup_records_every_table_and_its_rows(mysql_target):
    backup = backups.create_backup()
    assert backup.metadata["contents"] == {"tables": {"items": 500, "tags": 100}}
    backups.verify_backup(backup)


@pytest.mark.mysql
def test_verify_fails_a_mysql_backup_whose_rows_differ_from_its_metadata(mysql_target):
    backup = record_other_contents(backups.create_backup(), {"items": 500, "tags": 99})
    with pytest.raises(BackupCorrupt, match=r"row counts differ: tags \(100 rows, recorded 99\)"):
        backups.verify_backup(backup)


# -- a partial dump, on both servers --------------------------------------------------------------
@pytest.mark.parametrize(
    "target, engine_module, leave_out, problem",
    [
        pytest.param(
            "postgres_with_two_tables",
            postgresql,
            "--schema-only",
            r"2 table\(s\) have rows in the database but none in it: (public.items, public.\"Odd Name\"|public.\"Odd Name\", public.items)",
            marks=pytest.mark.postgres,
            id="postgres-no-rows",
        ),
        pytest.param(
            "postgres_with_two_tables",
            postgresql,
            "--exclude-table=public.items",
            r"1 table\(s\) of the database are not in it: public.items",
            marks=pytest.mark.postgres,
            id="postgres-a-table-left-out",
        ),
        pytest.param(
            "mysql_target",
            mysql_engine,
            "--no-data",
            r"2 table\(s\) have rows in the database but none in it: items, tags",
            marks=pytest.mark.mysql,
            id="mysql-no-rows",
        ),
        pytest.param(
            "mysql_target",
            mysql_engine,
            "--ignore-table={name}.tags",
            r"1 table\(s\) of the database are not in it: tags",
            marks=pytest.mark.mysql,
            id="mysql-a-table-left-out",
        ),
    ],
)
def test_a_partial_dump_is_refused_at_creation_and_not_kept(request, ops_dirs, monkeypatch, target, engine_module, leave_out, problem):
    database = request.getfixturevalue(target)
    with_extra_arguments(monkeypatch, engine_module, leave_out.format(name=database["NAME"]))
    with pytest.raises(BackupError, match=r"does not hold what the database holds, so it was not kept: " + problem):
        backups.create_backup()
    assert_nothing_kept(ops_dirs)


# -- SQLite ---------------------------------------------------------------------------------------
def test_an_sqlite_backup_records_every_table_and_its_rows(sqlite_target):
    with sqlite3.connect(sqlite_target) as connection:
        connection.execute('CREATE TABLE "we""ird" (i INTEGER)')
    connection.close()
    backup = backups.create_backup()
    assert backup.metadata["contents"] == {"tables": {"items": 500, 'we"ird': 0}}


def test_an_empty_sqlite_dump_is_refused_at_creation_and_not_kept(sqlite_target, settings, ops_dirs, tmp_path, monkeypatch):
    # The old way of opening the file: a '#' in its folder made SQLite open (and create) another, empty one.
    folder = tmp_path / "sq#1"
    folder.mkdir()
    moved = folder / "db.sqlite3"
    sqlite_target.rename(moved)
    settings.DATABASES = {**settings.DATABASES, "target": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(moved)}}
    monkeypatch.setattr(sqlite, "read_only_uri", lambda path: f"file:{Path(path).as_posix()}?mode=ro")
    with pytest.raises(
        BackupError, match=r"does not hold what the database holds, so it was not kept: 1 table\(s\) of the database are not in it: items"
    ):
        backups.create_backup()
    assert_nothing_kept(ops_dirs)


def test_verify_fails_an_sqlite_backup_whose_tables_differ_from_its_metadata(sqlite_target):
    backup = record_other_contents(backups.create_backup(), {"items": 500, "notes": 0})
    with pytest.raises(BackupCorrupt, match=r"recorded table\(s\) missing: notes"):
        backups.verify_backup(backup)
