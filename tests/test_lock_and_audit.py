"""The deploy lock (live, stale, raced) and the audit journal that survives a database restore."""

import json
import os
import socket
import subprocess
import sys

import pytest

from deploy_ops.audit import Recorder, journal_path, read_journal, replay_journal
from deploy_ops.exceptions import LockHeld
from deploy_ops.lock import DeployLock, inspect_lock, lock_path
from deploy_ops.models import DeploymentRecord, DeploymentStage


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_second_lock_is_refused_naming_the_holder(ops_dirs):
    with DeployLock("deploy", "record-1"):
        with pytest.raises(LockHeld) as refused:
            DeployLock("rollback").acquire()
    assert refused.value.holder["pid"] == os.getpid()
    assert refused.value.holder["host"] == socket.gethostname()
    assert f"pid {os.getpid()} on {socket.gethostname()} since" in str(refused.value)
    assert not refused.value.stale
    assert not lock_path().exists()


def test_a_lock_left_by_a_dead_process_is_reported_as_stale_not_taken(ops_dirs):
    lock_path().parent.mkdir(parents=True)
    lock_path().write_text(json.dumps({"what": "deploy", "host": socket.gethostname(), "pid": _dead_pid(), "since": "2026-01-01T00:00:00+00:00", "record": "r"}))
    assert inspect_lock().stale
    with pytest.raises(LockHeld, match="stale.*--break-lock") as refused:
        DeployLock("deploy").acquire()
    assert refused.value.stale
    assert lock_path().exists()


def test_break_stale_takes_over_a_dead_lock_but_never_a_live_one(ops_dirs):
    lock_path().parent.mkdir(parents=True)
    lock_path().write_text(json.dumps({"what": "deploy", "host": socket.gethostname(), "pid": _dead_pid(), "since": "x", "record": "r"}))
    taker = DeployLock("deploy", break_stale=True)
    taker.acquire()
    assert taker.broken is not None and taker.broken.stale
    assert inspect_lock().holder["pid"] == os.getpid()
    with pytest.raises(LockHeld):
        DeployLock("deploy", break_stale=True).acquire()
    taker.release()
    assert not lock_path().exists()


def test_the_lock_file_is_only_readable_by_its_owner(ops_dirs):
    with DeployLock("deploy"):
        if os.name != "nt":
            assert lock_path().stat().st_mode & 0o777 == 0o600


@pytest.mark.django_db
def test_journal_puts_records_back_after_the_database_loses_them(ops_dirs):
    recorder = Recorder(DeploymentRecord.Kind.DEPLOY, requested_ref="main")
    stage = recorder.start_stage("backup")
    recorder.finish_stage(stage, DeploymentStage.Status.SUCCEEDED, "backup_x.sql.gz")
    recorder.finish(DeploymentRecord.Status.ROLLED_BACK, failed_stage="health", to_commit="abc")
    record_id = recorder.record.id

    # What a restore of a pre-deploy backup does to the audit tables:
    DeploymentRecord.objects.all().delete()
    assert replay_journal() == 1

    restored = DeploymentRecord.objects.get(id=record_id)
    assert restored.status == "rolled_back"
    assert restored.failed_stage == "health"
    assert restored.finished_at is not None
    assert [(s.name, s.status, s.output_tail) for s in restored.stages.all()] == [("backup", "succeeded", "backup_x.sql.gz")]


@pytest.mark.django_db
def test_journal_keeps_the_newest_snapshot_and_skips_a_torn_line(ops_dirs):
    recorder = Recorder(DeploymentRecord.Kind.ROLLBACK)
    recorder.save()
    recorder.finish(DeploymentRecord.Status.SUCCEEDED)
    with open(journal_path(), "a") as journal:
        journal.write('{"record": {"id": "torn')
    newest = read_journal()
    assert list(newest) == [str(recorder.record.id)]
    assert newest[str(recorder.record.id)]["record"]["status"] == "succeeded"
