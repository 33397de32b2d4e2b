"""SQLite backups, and the library and command behaviour that no server is needed for:
list, find, verify state, prune policy, naming, the restore confirmation."""

import json
import os
import sqlite3
import subprocess
import time
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from deploy_ops import backup_files, backups, rollback, signals
from deploy_ops.exceptions import BackupCorrupt, BackupError, BackupNotFound, ConfigurationError
from tests.fixtures.backups import sqlite_checksum

pytestmark = pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")


def change_data(path):
    with sqlite3.connect(path) as connection:
        connection.execute("DELETE FROM items WHERE id % 3 = 0")
        connection.execute("UPDATE items SET name = 'changed' WHERE id < 40")
        connection.execute("CREATE TABLE added_after_backup (id INTEGER)")
    connection.close()


@pytest.mark.parametrize("method, suffix", [("gzip", ".sqlite3.gz"), ("zstd", ".sqlite3.zst"), ("none", ".sqlite3")])
def test_round_trip_restores_exactly_the_rows_and_tables_of_the_backup(sqlite_target, method, suffix):
    original = sqlite_checksum(sqlite_target)
    backup = backups.create_backup(compression=method)
    assert backup.name.endswith(suffix) and backup.engine == "sqlite"
    change_data(sqlite_target)

    backups.restore_backup(backup)

    assert sqlite_checksum(sqlite_target) == original


def test_restore_reaches_a_connection_that_stays_open_meanwhile(sqlite_target):
    backup = backups.create_backup()
    change_data(sqlite_target)
    reader = sqlite3.connect(sqlite_target)
    backups.restore_backup(backup, safety_backup=False)
    # The same connection (as a running app holds one) sees the restored rows: pages were copied in, not the file swapped.
    assert reader.execute("SELECT count(*) FROM items").fetchone() == (500,)
    reader.close()


def test_a_damaged_sqlite_backup_fails_verify_and_restore_leaves_the_database_as_it_was(sqlite_target):
    backup = backups.create_backup(compression="none")
    data = bytearray(backup.path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    backup.path.write_bytes(bytes(data))
    change_data(sqlite_target)
    changed = sqlite_checksum(sqlite_target)
    with pytest.raises(BackupCorrupt, match=f"{backup.name} is damaged: its sha256 is"):
        backups.verify_backup(backup)
    with pytest.raises(BackupCorrupt):
        backups.restore_backup(backups.find_backup(backup.name))
    assert sqlite_checksum(sqlite_target) == changed


def test_verify_records_its_result_in_the_metadata(sqlite_target):
    backup = backups.create_backup()
    assert backup.verified is None
    backups.verify_backup(backup)
    stored = json.loads(backup.metadata_path.read_text())["verification"]
    assert stored["ok"] is True and stored["error"] == ""
    assert backups.find_backup(backup.name).verified is True


def test_signals_are_sent_around_backup_and_restore(sqlite_target):
    received = []

    def remember(signal, **kwargs):
        received.append((signal, kwargs.get("database"), getattr(kwargs.get("backup"), "name", None)))

    for signal in (signals.pre_backup, signals.post_backup, signals.pre_restore, signals.post_restore):
        signal.connect(remember, weak=False)
    try:
        backup = backups.create_backup()
        backups.restore_backup(backup, safety_backup=False)
    finally:
        for signal in (signals.pre_backup, signals.post_backup, signals.pre_restore, signals.post_restore):
            signal.disconnect(remember)
    assert received == [
        (signals.pre_backup, "target", None),
        (signals.post_backup, "target", backup.name),
        (signals.pre_restore, "target", backup.name),
        (signals.post_restore, "target", backup.name),
    ]


def test_a_missing_database_file_is_a_clear_error_and_leaves_no_file(sqlite_target, ops_dirs):
    sqlite_target.unlink()
    with pytest.raises(BackupError, match="The SQLite database .* does not exist"):
        backups.create_backup()
    assert list((ops_dirs / "backups").iterdir()) == []


# -- list, find, prune ----------------------------------------------------------------------
def make_backup_file(
    directory,
    days_old: float,
    name_time=None,
    metadata=True,
    content=b"-- PostgreSQL database dump\n-- PostgreSQL database dump complete\n",
):
    """A plain-SQL backup file dated ``days_old`` ago, with metadata as create_backup writes it."""
    import hashlib

    directory.mkdir(mode=0o700, exist_ok=True)
    moment = timezone.now() - timedelta(days=days_old)
    path = directory / f"backup_{timezone.localtime(name_time or moment).strftime('%Y%m%d_%H%M%S')}.sql"
    path.write_bytes(content)
    if metadata:
        backup_files.write_metadata(
            path,
            {"engine": "postgresql", "created_at": moment.isoformat(), "size": len(content), "sha256": hashlib.sha256(content).hexdigest()},
        )
    return path


def test_list_is_newest_first_and_ignores_files_of_other_names(ops_dirs):
    directory = ops_dirs / "backups"
    old, new = make_backup_file(directory, 3), make_backup_file(directory, 1)
    (directory / "notes.txt").write_text("mine")
    (directory / "backup_latest.sql.gz").write_text("not ours")
    assert [backup.name for backup in backups.list_backups()] == [new.name, old.name]


def test_a_bare_name_is_found_in_backup_dir_even_when_the_current_directory_has_a_file_of_that_name(sqlite_target, tmp_path, monkeypatch):
    backup = backups.create_backup()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / backup.name).write_bytes(b"a decoy, not the backup")
    monkeypatch.chdir(elsewhere)

    assert backups.find_backup(backup.name).path == backup.path
    assert rollback.usable_backup(backup.name).path == backup.path
    call_command("backups", "verify", backup.name)  # the decoy would fail its checksum


def test_a_relative_path_with_a_folder_is_read_from_the_current_directory(ops_dirs, tmp_path, monkeypatch):
    in_backup_dir = make_backup_file(ops_dirs / "backups", 1)
    copies = tmp_path / "copies"
    copies.mkdir()
    (copies / in_backup_dir.name).write_bytes(in_backup_dir.read_bytes())
    monkeypatch.chdir(tmp_path)
    assert backups.find_backup(f"copies/{in_backup_dir.name}").path == tmp_path / "copies" / in_backup_dir.name


def test_find_backup_names_what_exists_when_the_name_is_unknown(ops_dirs):
    existing = make_backup_file(ops_dirs / "backups", 1)
    with pytest.raises(
        BackupNotFound, match=f"No backup 'backup_20000101_000000.sql.gz' in .*backups. The backups there are: {existing.name}."
    ):
        backups.find_backup("backup_20000101_000000.sql.gz")


def test_prune_keeps_the_newest_n_even_when_all_are_older_than_the_retention(ops_dirs):
    directory = ops_dirs / "backups"
    paths = [make_backup_file(directory, days) for days in (30, 20, 10, 9)]
    deleted = backups.prune_backups(days=7, keep=2)
    assert sorted(backup.name for backup in deleted) == sorted(path.name for path in paths[:2])
    assert [backup.name for backup in backups.list_backups()] == [paths[3].name, paths[2].name]
    assert not backups.metadata_path_for(paths[0]).exists()


def test_prune_skips_invalid_backups_when_counting_the_ones_it_keeps(ops_dirs):
    directory = ops_dirs / "backups"
    good = make_backup_file(directory, 10)
    broken = make_backup_file(directory, 9, content=b"-- PostgreSQL database dump\n(cut short)")
    deleted = backups.prune_backups(days=7, keep=1)
    assert [backup.name for backup in deleted] == [broken.name]
    assert good.exists()


def test_prune_deletes_only_what_is_older_than_the_retention_and_dry_run_deletes_nothing(ops_dirs):
    directory = ops_dirs / "backups"
    young, old = make_backup_file(directory, 2), make_backup_file(directory, 8)
    (directory / "backup_manual_copy.sql").write_text("not ours")
    assert [backup.name for backup in backups.prune_backups(days=7, keep=1, dry_run=True)] == [old.name]
    assert old.exists()
    assert [backup.name for backup in backups.prune_backups(days=7, keep=1)] == [old.name]
    assert sorted(path.name for path in directory.iterdir()) == sorted(["backup_manual_copy.sql", young.name, young.name + ".json"])


def test_prune_removes_a_day_old_temporary_file_left_by_a_killed_backup_but_not_a_fresh_one(ops_dirs):
    directory = ops_dirs / "backups"
    make_backup_file(directory, 1)
    abandoned, in_progress = directory / ".partial-abandoned", directory / ".partial-in-progress"
    abandoned.write_bytes(b"half a dump")
    in_progress.write_bytes(b"a dump being written")
    two_days_ago = time.time() - 2 * 86400
    os.utime(abandoned, (two_days_ago, two_days_ago))
    backups.prune_backups(days=7, keep=1)
    assert not abandoned.exists()
    assert in_progress.exists()


def test_prune_survives_dangling_partial_symlinks_removing_an_old_one_and_never_following_one(ops_dirs, tmp_path):
    directory = ops_dirs / "backups"
    make_backup_file(directory, 1)
    outside = tmp_path / "not-a-backup.txt"
    outside.write_text("someone else's file")
    old_dangling, fresh_dangling, old_pointing_out = (directory / f".partial-{name}" for name in ("old", "fresh", "out"))
    old_dangling.symlink_to(tmp_path / "gone")
    fresh_dangling.symlink_to(tmp_path / "also-gone")
    old_pointing_out.symlink_to(outside)
    two_days_ago = time.time() - 2 * 86400
    for link in (old_dangling, old_pointing_out):
        os.utime(link, (two_days_ago, two_days_ago), follow_symlinks=False)

    backups.prune_backups(days=7, keep=1)

    assert not old_dangling.is_symlink() and not old_pointing_out.is_symlink()
    assert fresh_dangling.is_symlink()
    assert outside.read_text() == "someone else's file"


def test_prune_refuses_to_keep_fewer_than_one(ops_dirs):
    with pytest.raises(ConfigurationError, match="keep must be 1 or more"):
        backups.prune_backups(keep=0)


def test_two_backups_in_the_same_second_get_different_names(sqlite_target):
    first, second = backups.create_backup(), backups.create_backup()
    assert first.name != second.name and first.path.exists() and second.path.exists()


def test_a_legacy_backup_takes_its_time_from_its_name(ops_dirs):
    path = make_backup_file(ops_dirs / "backups", 0, metadata=False)
    backup = backups.find_backup(path.name)
    assert backup.metadata is None and backup.verified is None and backup.sha256 is None
    assert timezone.localtime(backup.created_at).strftime("backup_%Y%m%d_%H%M%S.sql") == path.name


# -- the command ----------------------------------------------------------------------------
def test_list_json_shows_engine_size_and_verified_state(sqlite_target, capsys):
    backup = backups.create_backup()
    call_command("backups", "verify", "--all")
    capsys.readouterr()
    call_command("backups", "list", "--json")
    [listed] = json.loads(capsys.readouterr().out)
    assert listed["name"] == backup.name
    assert listed["engine"] == "sqlite" and listed["size"] == backup.size and listed["verified"] is True and listed["legacy"] is False


def test_verify_all_exits_non_zero_naming_each_bad_file(ops_dirs, capsys):
    directory = ops_dirs / "backups"
    good = make_backup_file(directory, 2)
    bad = make_backup_file(directory, 1, content=b"-- PostgreSQL database dump\n(cut short)")
    with pytest.raises(CommandError, match=f"1 of 2 backups failed verification: {bad.name}") as error:
        call_command("backups", "verify", "--all")
    assert error.value.returncode == 3
    output = capsys.readouterr()
    assert f"OK {good.name}" in output.out
    assert f"FAILED {bad}" in output.err and "completion line" in output.err


def test_restore_refuses_without_a_terminal_unless_noinput(sqlite_target, monkeypatch):
    backup = backups.create_backup()
    change_data(sqlite_target)
    changed = sqlite_checksum(sqlite_target)
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    with pytest.raises(CommandError, match="stdin is not a terminal. Pass --noinput") as error:
        call_command("backups", "restore", backup.name)
    assert error.value.returncode == 3
    assert sqlite_checksum(sqlite_target) == changed


def test_restore_with_noinput_restores_and_names_the_safety_backup(sqlite_target, capsys, db):
    original = sqlite_checksum(sqlite_target)
    backup = backups.create_backup()
    change_data(sqlite_target)
    call_command("backups", "restore", backup.name, "--noinput")
    output = capsys.readouterr().out
    assert sqlite_checksum(sqlite_target) == original
    [safety] = [found for found in backups.list_backups() if found.name != backup.name]
    assert f"Safety backup of the previous database: {safety.path}" in output


def test_an_unknown_alias_is_a_configuration_error_with_exit_code_3(ops_dirs):
    with pytest.raises(CommandError, match="settings.DATABASES has no alias 'nope'") as error:
        call_command("backups", "create", "--database", "nope")
    assert error.value.returncode == 3
    assert not (ops_dirs / "backups").exists() or os.listdir(ops_dirs / "backups") == []


# -- names and paths that mean what they say ------------------------------------------------------
@pytest.fixture(params=["sq#1", "q?x=1", "p%231 x"], ids=["hash", "question-mark", "percent-space"])
def sqlite_in_an_odd_folder(request, sqlite_target, settings, tmp_path):
    """The sqlite_target database moved into a folder whose name an SQLite URI would misread."""
    folder = tmp_path / request.param
    folder.mkdir()
    moved = folder / "db.sqlite3"
    sqlite_target.rename(moved)
    settings.DATABASES = {**settings.DATABASES, "target": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(moved)}}
    return moved


def test_a_database_in_a_folder_with_uri_characters_is_the_one_backed_up_and_restored(sqlite_in_an_odd_folder):
    original = sqlite_checksum(sqlite_in_an_odd_folder)
    backup = backups.create_backup()
    assert backup.metadata["contents"] == {"tables": {"items": 500}}
    backups.verify_backup(backup)
    change_data(sqlite_in_an_odd_folder)

    backups.restore_backup(backup, safety_backup=False)

    assert sqlite_checksum(sqlite_in_an_odd_folder) == original
    # Misread, "…/sq#1/db.sqlite3" would have opened (and created, empty) "…/sq" beside the folder.
    assert [path.name for path in sqlite_in_an_odd_folder.parent.parent.iterdir() if path.is_file()] == []


def test_an_sqlite_uri_as_name_is_refused_with_a_clear_error(sqlite_target, settings, ops_dirs):
    settings.DATABASES = {**settings.DATABASES, "target": {"ENGINE": "django.db.backends.sqlite3", "NAME": f"file:{sqlite_target}?mode=ro"}}
    with pytest.raises(ConfigurationError, match=r"is an SQLite URI \(file:.*site\.sqlite3…\); give deploy_ops the plain path"):
        backups.create_backup()
    assert not (ops_dirs / "backups").exists() or list((ops_dirs / "backups").iterdir()) == []


def test_a_backup_records_the_commit_of_project_dir_only_when_it_is_the_top_of_a_git_checkout(sqlite_target, ops_dirs, settings):
    def git(*arguments, cwd=ops_dirs):
        return subprocess.run(["git", *arguments], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()

    assert backups.create_backup().metadata["commit"] == ""  # no checkout
    git("init", "--quiet")
    assert backups.create_backup().metadata["commit"] == ""  # a checkout without a commit
    git("-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "--quiet", "--allow-empty", "-m", "one")
    assert backups.create_backup().metadata["commit"] == git("rev-parse", "HEAD")
    inner = ops_dirs / "inner"
    inner.mkdir()
    settings.DEPLOY_OPS = {**settings.DEPLOY_OPS, "PROJECT_DIR": str(inner)}
    assert backups.create_backup().metadata["commit"] == ""  # PROJECT_DIR inside someone else's checkout
