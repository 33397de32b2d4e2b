"""Backups against the real PostgreSQL server: round trip, damaged files, failing dumps and restores."""

import gzip
import hashlib
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from deploy_ops import backups
from deploy_ops.backup_files import write_metadata
from deploy_ops.databases.postgresql import dbname_conninfo
from deploy_ops.exceptions import BackupCorrupt, BackupIncompatible, CommandFailed, ToolMissing
from tests.fixtures.backups import TARGET, postgres_checksum, psql
from tests.fixtures.databases import POSTGRES, _postgres_admin

pytestmark = [pytest.mark.postgres, pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")]


def change_data(database):
    psql(
        database,
        "DELETE FROM items WHERE id % 3 = 0; UPDATE items SET name = 'changed' WHERE id < 50;"
        "CREATE TABLE added_after_backup (id int); CREATE SCHEMA later; CREATE TABLE later.x (i int);",
    )


def test_round_trip_restores_exactly_the_rows_and_tables_of_the_backup(postgres_target):
    original = postgres_checksum(postgres_target)
    backup = backups.create_backup()
    change_data(postgres_target)
    assert postgres_checksum(postgres_target) != original

    result = backups.restore_backup(backup)

    assert postgres_checksum(postgres_target) == original
    # Objects made after the backup are gone too: the result equals the backup.
    assert psql(postgres_target, "SELECT count(*) FROM pg_namespace WHERE nspname = 'later'") == "0"
    assert result.warnings == []
    assert result.safety_backup is not None and result.safety_backup.path.exists()


def test_restore_keeps_the_public_schema_owner_and_privileges(postgres_target):
    query = "SELECT nspowner::regrole::text || ' ' || coalesce(nspacl::text, '') FROM pg_namespace WHERE nspname = 'public'"
    before = psql(postgres_target, query)
    backup = backups.create_backup(compression="none")
    backups.restore_backup(backup, safety_backup=False)
    assert psql(postgres_target, query) == before


@pytest.mark.parametrize("method, suffix", [("gzip", ".sql.gz"), ("zstd", ".sql.zst"), ("none", ".sql")])
def test_create_names_the_file_by_time_and_compression_and_writes_metadata(postgres_target, method, suffix):
    backup = backups.create_backup(compression=method)
    assert backup.name.startswith("backup_") and backup.name.endswith(suffix)
    assert backups.NAME_PATTERN.match(backup.name)
    metadata = backup.metadata
    assert metadata["engine"] == "postgresql"
    assert metadata["database"] == postgres_target["NAME"]
    assert metadata["server_version"].split()[0][:2].isdigit()
    assert metadata["compression"] == method
    assert metadata["size"] == backup.path.stat().st_size
    assert metadata["commit"] == ""  # the tmp project folder is no git checkout
    assert metadata["deploy_ops_version"]
    assert backups.find_backup(backup.name).metadata == metadata


def test_backup_file_is_0600_in_a_0700_directory(postgres_target):
    backup = backups.create_backup()
    assert stat.S_IMODE(backup.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(backup.metadata_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(backup.path.parent.stat().st_mode) == 0o700


def test_metadata_records_the_git_commit_of_the_project_checkout(postgres_target, ops_dirs):
    subprocess.run(["git", "init", "-q", str(ops_dirs)], check=True)
    subprocess.run(
        ["git", "-C", str(ops_dirs), "-c", "user.email=t@example.org", "-c", "user.name=t", "commit", "-q", "--allow-empty", "-m", "one"],
        check=True,
    )
    head = subprocess.run(["git", "-C", str(ops_dirs), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert backups.create_backup().commit == head


def truncate(path: Path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def flip_one_byte(path: Path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [truncate, flip_one_byte], ids=["truncated", "one-byte-flip"])
def test_a_damaged_backup_fails_verify_naming_the_file_and_restore_refuses_it(postgres_target, damage):
    backup = backups.create_backup()
    change_data(postgres_target)
    changed = postgres_checksum(postgres_target)
    damage(backup.path)

    with pytest.raises(CommandError) as verify_error:
        call_command("backups", "verify", backup.name)
    assert backup.name in str(verify_error.value)
    assert verify_error.value.returncode == 3
    assert backups.find_backup(backup.name).verified is False

    with pytest.raises(BackupCorrupt, match=backup.name):
        backups.restore_backup(backups.find_backup(backup.name))
    assert postgres_checksum(postgres_target) == changed
    # Refused before anything happened: not even a safety backup was taken.
    assert [found.name for found in backups.list_backups()] == [backup.name]


def truncated_with_matching_metadata(backup, keep_contents: bool):
    """The file cut in half and its metadata rewritten to match, as if it had been written so."""
    truncate(backup.path)
    data = backup.path.read_bytes()
    metadata = {**backup.metadata, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    if not keep_contents:
        del metadata["contents"]
    write_metadata(backup.path, metadata)
    return backups.find_backup(backup.name)


def test_a_backup_with_its_contents_recorded_is_checked_by_checksum_and_a_bad_stream_still_changes_nothing(postgres_target, db):
    backup = backups.create_backup()
    change_data(postgres_target)
    changed = postgres_checksum(postgres_target)
    cut = truncated_with_matching_metadata(backup, keep_contents=True)

    # Its contents were proven when it was written, so the checksum is the whole check before the restore ...
    backups.check_restorable(cut, TARGET)
    # ... and the damage is caught in the stream, before psql commits.
    with pytest.raises(CommandError, match="ends early"):
        call_command("backups", "restore", cut.name, "--noinput", "--no-safety-backup")
    assert postgres_checksum(postgres_target) == changed


def test_a_backup_without_its_contents_recorded_is_decompressed_in_full_before_the_restore(postgres_target):
    backup = backups.create_backup()
    change_data(postgres_target)
    changed = postgres_checksum(postgres_target)
    cut = truncated_with_matching_metadata(backup, keep_contents=False)

    with pytest.raises(CommandError, match="ends early") as error:
        call_command("backups", "restore", cut.name, "--noinput")
    assert error.value.returncode == 3  # refused: nothing was changed, not even a safety backup taken
    assert postgres_checksum(postgres_target) == changed
    assert [found.name for found in backups.list_backups()] == [cut.name]


def test_a_dump_with_an_sql_error_in_the_middle_fails_the_restore_showing_the_error_and_changes_nothing(postgres_target, ops_dirs, db):
    backup = backups.create_backup(compression="none")
    text = backup.path.read_text()
    position = text.index("COPY public.items")
    broken = text[:position] + "SELECT no_such_function_deploy_ops();\n" + text[position:]
    legacy = ops_dirs / "backups" / "backup_20250109_120000.sql"
    legacy.write_text(broken)
    change_data(postgres_target)
    changed = postgres_checksum(postgres_target)

    with pytest.raises(CommandError) as error:
        call_command("backups", "restore", str(legacy), "--noinput", "--no-safety-backup")

    assert error.value.returncode == 2
    assert "no_such_function_deploy_ops" in str(error.value)
    assert postgres_checksum(postgres_target) == changed


def test_a_backup_made_by_the_old_script_restores_with_a_warning(postgres_target, ops_dirs):
    original = postgres_checksum(postgres_target)
    legacy = ops_dirs / "backups" / "backup_20250109_120000.sql.gz"
    legacy.parent.mkdir(mode=0o700)
    with open(legacy, "wb") as file:
        dump = subprocess.run(
            ["pg_dump", "-h", POSTGRES["HOST"], "-U", POSTGRES["USER"], postgres_target["NAME"]], capture_output=True, check=True
        )
        file.write(gzip.compress(dump.stdout))
    change_data(postgres_target)

    backup = backups.find_backup("backups/backup_20250109_120000.sql.gz")
    assert backup.metadata is None and backup.engine == "postgresql"
    result = backups.restore_backup(backup, safety_backup=False)

    assert postgres_checksum(postgres_target) == original
    assert len(result.warnings) == 1 and "no checksum could be checked" in result.warnings[0]


def test_restore_refuses_a_backup_of_another_engine(postgres_target, ops_dirs):
    sqlite_backup = ops_dirs / "backups" / "backup_20250109_120000.sqlite3"
    sqlite_backup.parent.mkdir(mode=0o700)
    sqlite_backup.write_bytes(b"SQLite format 3\x00" + bytes(100))
    with pytest.raises(BackupIncompatible, match="is a sqlite backup, but the database 'target' is postgresql"):
        backups.restore_backup(backups.find_backup(sqlite_backup.name))


def assert_no_backup_left(ops_dirs):
    backup_dir = ops_dirs / "backups"
    assert not backup_dir.exists() or list(backup_dir.iterdir()) == []


def test_pg_dump_missing_is_a_clear_error_and_leaves_no_file(postgres_target, ops_dirs, monkeypatch, tmp_path):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    # psql reads the live tables before the dump starts: only pg_dump is missing.
    (empty / "psql").symlink_to(shutil.which("psql"))
    # A context of its own: the database fixture's teardown needs psql on PATH again.
    with (
        monkeypatch.context() as patch,
        pytest.raises(ToolMissing, match=r"^'pg_dump' was not found on this host's PATH\. Install the PostgreSQL client tools"),
    ):
        patch.setenv("PATH", str(empty))
        backups.create_backup()
    assert_no_backup_left(ops_dirs)


def test_an_unknown_role_is_a_clear_authentication_error_and_leaves_no_file(postgres_target, ops_dirs, settings):
    # The server trusts every local role, so a wrong password cannot be provoked; a role that
    # does not exist fails authentication in the same place, before any byte is dumped.
    settings.DATABASES = {**settings.DATABASES, TARGET: {**postgres_target, "USER": "no_such_role_deploy_ops", "PASSWORD": "s3cret-Pw-4"}}
    with pytest.raises(CommandFailed) as error:
        backups.create_backup()
    assert 'role "no_such_role_deploy_ops" does not exist' in str(error.value)
    assert "s3cret-Pw-4" not in str(error.value)
    assert_no_backup_left(ops_dirs)


def test_a_server_that_is_down_is_a_clear_error_and_leaves_no_file(postgres_target, ops_dirs, settings):
    settings.DATABASES = {**settings.DATABASES, TARGET: {**postgres_target, "PORT": "1"}}
    with pytest.raises(CommandFailed) as error:
        backups.create_backup()
    assert "Command failed with exit code " in str(error.value)
    assert "Connection refused" in str(error.value)
    assert_no_backup_left(ops_dirs)


def test_the_command_prints_the_new_backup_path(postgres_target, capsys):
    call_command("backups", "create", "--compress", "zstd")
    printed = Path(capsys.readouterr().out.strip())
    assert printed.exists() and printed.name.endswith(".sql.zst")
    assert os.path.dirname(printed) == str(backups.list_backups()[0].path.parent)


# -- names that mean what they say ----------------------------------------------------------------
def psql_named(name: str, sql: str) -> str:
    """psql into the database called exactly ``name`` (a conninfo string, so '=' in it is no parameter)."""
    return psql({"NAME": dbname_conninfo(name)}, sql)


@pytest.fixture(params=["dbname={decoy}", "dbname={decoy} it's \\"], ids=["parameter", "parameter-quote-backslash"])
def database_named_like_parameters(request, settings, ops_dirs, postgres_database):
    """A database whose NAME, read as connection parameters, names another database (the decoy)."""
    decoy = postgres_database["NAME"]
    psql(postgres_database, "CREATE TABLE decoy_only (i int); INSERT INTO decoy_only VALUES (1);")
    name = request.param.format(decoy=decoy)
    created = _postgres_admin(f'CREATE DATABASE "{name}"')
    assert created.returncode == 0, created.stderr
    psql_named(
        name,
        "CREATE TABLE items (id serial PRIMARY KEY, name text); INSERT INTO "
        "items (name) SELECT 'item ' || n FROM generate_series(1, 500) n;",
    )
    settings.DATABASES = {**settings.DATABASES, TARGET: {**postgres_database, "NAME": name}}
    settings.DEPLOY_OPS = {**settings.DEPLOY_OPS, "BACKUP_DATABASE": TARGET}
    yield name
    _postgres_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_a_database_name_containing_equals_signs_is_the_database_dumped_and_restored(database_named_like_parameters):
    name = database_named_like_parameters
    backup = backups.create_backup()
    assert backup.metadata["contents"] == {"tables": {"public.items": 500}}
    psql_named(name, "DELETE FROM items WHERE id > 100")

    backups.restore_backup(backup, safety_backup=False)

    assert psql_named(name, "SELECT count(*) FROM items") == "500"
    assert psql_named(name, "SELECT count(*) FROM pg_tables WHERE tablename = 'decoy_only'") == "0"


# -- connections as Django makes them -------------------------------------------------------------
def test_a_database_reached_through_a_libpq_service_file_is_dumped_and_restored(postgres_target, settings, tmp_path, monkeypatch):
    # Without the service the tools would reach the server's default database, which has no items.
    service_file = tmp_path / "pg_service.conf"
    service_file.write_text(
        f"[deploy_ops_site]\nhost={POSTGRES['HOST']}\nport={POSTGRES['PORT']}\nuser={POSTGRES['USER']}\ndbname={postgres_target['NAME']}\n"
    )
    monkeypatch.setenv("PGSERVICEFILE", str(service_file))
    settings.DATABASES = {
        **settings.DATABASES,
        TARGET: {"ENGINE": "django.db.backends.postgresql", "NAME": "", "OPTIONS": {"service": "deploy_ops_site"}},
    }
    original = postgres_checksum(postgres_target)
    backup = backups.create_backup()
    assert backup.metadata["contents"] == {"tables": {"public.items": 500}}
    change_data(postgres_target)

    backups.restore_backup(backup, safety_backup=False)

    assert postgres_checksum(postgres_target) == original
