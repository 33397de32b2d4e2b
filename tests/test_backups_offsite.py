"""Copies off the host through a Django storage, on real servers: OpenSSH's SFTP (django-storages'
SFTPStorage), moto's S3-compatible server (S3Storage), and a FileSystemStorage on another path."""

import hashlib
import io
import json
import os
import sqlite3

import pytest
from django.core.management import CommandError, call_command

from deploy_ops import backup_files, backups, storage
from deploy_ops.exceptions import BackupCorrupt
from tests.fixtures.backups import sqlite_checksum
from tests.fixtures.offsite import use_storage

pytestmark = pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")


def change_data(path):
    with sqlite3.connect(path) as connection:
        connection.execute("DELETE FROM items WHERE id % 3 = 0")
    connection.close()


def run(*arguments) -> str:
    out = io.StringIO()
    call_command(*arguments, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_a_backup_goes_off_host_and_comes_back_when_the_local_copy_is_gone(sqlite_target, offsite, db):
    original = sqlite_checksum(sqlite_target)
    backup = backups.create_backup()
    assert backup.metadata["off_host"]["ok"] is True
    assert offsite.read(backup.name) == backup.path.read_bytes()
    assert json.loads(offsite.read(backup.name + ".json"))["sha256"] == backup.sha256
    assert backup.name in run("backups", "list", "--remote")
    backup.path.unlink()
    backup.metadata_path.unlink()
    change_data(sqlite_target)

    run("backups", "restore", backup.name, "--noinput", "--no-safety-backup")

    assert sqlite_checksum(sqlite_target) == original
    assert backups.find_backup(backup.name).path.read_bytes() == offsite.read(backup.name)


def test_verify_remote_finds_a_copy_damaged_in_place_and_restore_refuses_it(sqlite_target, offsite, db):
    backup = backups.create_backup()
    good = backups.create_backup()
    data = bytearray(offsite.read(backup.name))
    data[len(data) // 2] ^= 0xFF
    offsite.write(backup.name, bytes(data))
    backup.path.unlink()
    change_data(sqlite_target)
    changed = sqlite_checksum(sqlite_target)

    with pytest.raises(CommandError, match=f"1 of 2 off-host copies failed verification: {backup.name}"):
        run("backups", "verify", "--remote")
    with pytest.raises(CommandError, match=f"The copy of {backup.name} in the storage 'offsite' is damaged"):
        run("backups", "restore", backup.name, "--noinput")

    assert sqlite_checksum(sqlite_target) == changed
    assert not backup.path.exists()  # the damaged bytes never took the local backup's name
    storage.verify_remote(next(copy for copy in storage.list_remote() if copy.name == good.name))


def test_the_automatic_rollback_path_fetches_the_backup_it_took_when_the_file_is_gone(sqlite_target, settings, tmp_path, ops_dirs):
    use_storage(settings, {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(tmp_path / "other-disk")}})
    original = sqlite_checksum(sqlite_target)
    backup = backups.create_backup()  # the Backup object a deploy keeps for its rollback
    backup.path.unlink()
    change_data(sqlite_target)

    backups.restore_backup(backup, safety_backup=False)

    assert sqlite_checksum(sqlite_target) == original


def test_a_storage_that_is_down_leaves_a_good_local_backup_and_says_why(sqlite_target, settings, sftp_server):
    use_storage(settings, sftp_server.storage())
    sftp_server.stop()
    out, err = io.StringIO(), io.StringIO()

    call_command("backups", "create", stdout=out, stderr=err)

    backup = backups.find_backup(out.getvalue().strip())
    backups.verify_backup(backup)
    assert backup.metadata["off_host"]["ok"] is False
    assert "Could not copy" in backup.metadata["off_host"]["error"]
    assert "Not copied off the host: Could not copy" in err.getvalue()


def test_an_unfinished_remote_copy_is_listed_as_such_and_never_fetched(sqlite_target, settings, tmp_path):
    root = tmp_path / "other-disk"
    use_storage(settings, {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(root)}})
    backup = backups.create_backup()
    (root / "deploy_ops/backups" / (backup.name + ".json")).unlink()  # as if the upload stopped before its metadata
    backup.path.unlink()

    assert "unfinished copy (no metadata)" in run("backups", "list", "--remote")
    with pytest.raises(BackupCorrupt, match="its upload never finished"):
        backups.find_backup(backup.name)


def test_a_copy_larger_than_the_sftp_read_ahead_window_comes_back_byte_for_byte(settings, ops_dirs, sftp_server, tmp_path):
    use_storage(settings, sftp_server.storage())
    path = tmp_path / "backup_20250109_120000.sql"
    data = os.urandom(storage._SFTP_WINDOW + 3 * storage._PIECE + 12345)  # the first piece, a full window, and a short one
    path.write_bytes(data)
    backup = backups.Backup(path, path.name, {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)})

    storage.copy_off_host(backup)
    fetched = storage.fetch(path.name, tmp_path / "fetched")

    assert fetched.read_bytes() == data


def test_backup_freshness_tells_a_stale_off_host_copy_from_a_stale_backup(sqlite_target, settings, sftp_server):
    from datetime import timedelta

    from django.utils import timezone
    from health_check.exceptions import ServiceWarning

    from deploy_ops.health.checks import BackupFreshness

    use_storage(settings, sftp_server.storage())
    copied = backups.create_backup()
    BackupFreshness().run()  # fresh here and there
    copied.metadata["created_at"] = (timezone.now() - timedelta(hours=30)).isoformat()
    backup_files.write_metadata(copied.path, copied.metadata)  # as if made yesterday
    sftp_server.stop()
    storage.backup_storage().close()  # its session outlives the server's listener; the next backup must reconnect
    backups.create_backup()  # fresh, but its copy failed

    with pytest.raises(
        ServiceWarning,
        match=rf"Local backups are fresh, but the newest off-host copy, {copied.name}, is 30.0 hours old \(limit 26\)\. "
        r"The last copy failed: Could not copy",
    ):
        BackupFreshness().run()  # a warning, not a failure: the local backups are fresh


def test_rollback_backup_fetches_a_backup_whose_local_file_is_gone(sqlite_target, offsite, db):
    from deploy_ops import rollback

    backup = backups.create_backup()
    backup.path.unlink()
    backup.metadata_path.unlink()

    plan = rollback.plan_backup(backup.name)

    assert plan.backup.path == backup.path and plan.backup.path.read_bytes() == offsite.read(backup.name)
