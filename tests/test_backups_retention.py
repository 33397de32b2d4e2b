"""Automatic cleanup keeps exactly what it must: the newest valid backups, the young ones, the one
`rollback --quick` would restore, and those the records of the last KEEP_RELEASES releases need;
on both sides, local and off-host.  And a scheduled backup never runs beside a deploy."""

import hashlib
import io
import subprocess
import threading
import time
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from deploy_ops import backup_files, backups, retention, storage
from deploy_ops.lock import DeployLock
from deploy_ops.models import DeploymentRecord
from tests.fixtures.offsite import use_storage

pytestmark = pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")
Kind, Status = DeploymentRecord.Kind, DeploymentRecord.Status
DUMP = b"-- PostgreSQL database dump\n-- PostgreSQL database dump complete\n"


def backup_file(directory, days_old: float):
    """A plain-SQL backup dated ``days_old`` ago, with its metadata; returns its name."""
    directory.mkdir(mode=0o700, exist_ok=True)
    moment = timezone.now() - timedelta(days=days_old)
    path = directory / f"backup_{timezone.localtime(moment).strftime('%Y%m%d_%H%M%S')}.sql"
    path.write_bytes(DUMP)  # the same valid dump each time; names and dates tell them apart
    backup_files.write_metadata(
        path, {"engine": "postgresql", "created_at": moment.isoformat(), "size": len(DUMP), "sha256": hashlib.sha256(DUMP).hexdigest()}
    )
    return path.name


def git_head(project) -> str:
    subprocess.run(["git", "init", "-q", str(project)], check=True)
    subprocess.run(
        ["git", "-C", str(project), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "b"], check=True
    )
    return subprocess.run(["git", "-C", str(project), "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()


def record(kind, status, from_commit, to_commit, backup_name, days_ago):
    return DeploymentRecord.objects.create(
        kind=kind,
        status=status,
        from_commit=from_commit,
        to_commit=to_commit,
        backup_name=backup_name,
        started_at=timezone.now() - timedelta(days=days_ago),
    )


@pytest.fixture
def history(db, ops_dirs, settings, tmp_path):
    """Releases a, b, c deployed 40, 30 and 20 days ago, then a rollback to b (the checkout's HEAD):
    the quick rollback would now go to a with the backup deploy b took; the last release (c) needs
    the backup its deploy took.  Plus an unreferenced old backup and two young ones."""
    use_storage(settings, {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(tmp_path / "other-disk")}})
    settings.DEPLOY_OPS = {**settings.DEPLOY_OPS, "KEEP_RELEASES": 1, "BACKUP_KEEP": 1, "BACKUP_RETENTION_DAYS": 7}
    b = git_head(ops_dirs)
    directory = ops_dirs / "backups"
    names = {
        label: backup_file(directory, days)
        for label, days in [("unreferenced", 50), ("before a", 40.1), ("before b", 30.1), ("before c", 20.1), ("young", 2), ("newest", 1)]
    }
    record(Kind.DEPLOY, Status.SUCCEEDED, "0" * 40, "a" * 40, names["before a"], 40)
    record(Kind.DEPLOY, Status.SUCCEEDED, "a" * 40, b, names["before b"], 30)
    record(Kind.DEPLOY, Status.SUCCEEDED, b, "c" * 40, names["before c"], 20)
    record(Kind.ROLLBACK, Status.SUCCEEDED, "c" * 40, b, "", 10)
    for name in names.values():
        storage.copy_off_host(backups.find_backup(name))
    return names


def test_cleanup_removes_only_old_unprotected_backups_on_both_sides(history):
    assert retention.quick_rollback_backup() == history["before b"]

    cleanup = retention.apply_retention()

    doomed = sorted([history["unreferenced"], history["before a"]])
    kept = sorted(set(history.values()) - set(doomed))
    assert sorted(cleanup.local) == doomed and sorted(cleanup.remote) == doomed
    assert sorted(backup.name for backup in backups.list_backups()) == kept
    assert sorted(copy.name for copy in storage.list_remote()) == kept


def test_keep_releases_widens_what_is_kept(history, settings):
    settings.DEPLOY_OPS = {**settings.DEPLOY_OPS, "KEEP_RELEASES": 3}
    cleanup = retention.apply_retention()
    assert cleanup.local == [history["unreferenced"]]


def test_prune_command_dry_run_names_both_sides_and_deletes_nothing(history):
    out = io.StringIO()
    call_command("backups", "prune", "--dry-run", stdout=out)
    assert f"Would delete the off-host copy of {history['unreferenced']}" in out.getvalue()
    assert "Would delete 2 backup(s) and 2 off-host cop(y/ies)." in out.getvalue()
    assert len(backups.list_backups()) == 6 and len(storage.list_remote()) == 6


def test_a_scheduled_backup_skips_while_a_deploy_holds_the_lock_and_says_so(sqlite_target):
    with DeployLock("deploy", "a-running-deploy"):
        with pytest.raises(CommandError, match="Backup skipped, nothing was done: Another deploy or rollback is running") as refused:
            call_command("backups", "create", "--prune", "--wait", "0.3", stdout=io.StringIO(), stderr=io.StringIO())
    assert refused.value.returncode == 3
    assert backups.list_backups() == []


def test_a_scheduled_backup_waits_for_the_deploy_to_finish_then_runs(sqlite_target, db):
    lock = DeployLock("deploy", "a-running-deploy")
    lock.acquire()
    released = threading.Timer(1.0, lock.release)
    released.start()
    started = time.monotonic()
    out = io.StringIO()

    call_command("backups", "create", "--prune", "--wait", "30", stdout=out, stderr=io.StringIO())

    assert time.monotonic() - started >= 1.0
    assert [backup.path for backup in backups.list_backups()] == [backups.find_backup(out.getvalue().strip()).path]


def test_cleanup_can_be_turned_off(history, settings, sqlite_target):
    settings.DEPLOY_OPS = {**settings.DEPLOY_OPS, "BACKUP_AUTO_CLEANUP": False}
    err = io.StringIO()
    call_command("backups", "create", "--prune", stdout=io.StringIO(), stderr=err)
    assert "Not pruned: DEPLOY_OPS['BACKUP_AUTO_CLEANUP'] is off." in err.getvalue()
    assert len(backups.list_backups()) == 7


def test_an_unfinished_remote_copy_goes_once_its_name_is_older_than_the_retention(history, tmp_path):
    copies = tmp_path / "other-disk" / "deploy_ops" / "backups"
    (copies / (history["unreferenced"] + ".json")).unlink()  # its upload stopped before the metadata
    (copies / "backup_20991231_000000.sql").write_bytes(b"partial")  # an unfinished upload dated in the future stays

    cleanup = retention.apply_retention()

    assert history["unreferenced"] in cleanup.remote and not (copies / history["unreferenced"]).exists()
    assert (copies / "backup_20991231_000000.sql").exists()
