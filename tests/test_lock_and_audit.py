"""The deploy lock (live, stale, raced, killed, foreign, corrupt) and the audit journal that survives a database restore."""

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from deploy_ops.audit import Recorder, compact_journal, journal_path, read_journal, replay_journal
from deploy_ops.backups import create_backup, list_backups
from deploy_ops.exceptions import LockHeld
from deploy_ops.lock import DeployLock, _try_lock, _unlock, inspect_lock, kernel_lock_path, lock_path
from deploy_ops.models import DeploymentRecord, DeploymentStage
from deploy_ops.notifications import Level, build_event, send
from deploy_ops.notifications.log import log_path
from deploy_ops.privatefiles import private_file
from tests.fixtures.backups import sqlite_checksum

REPOSITORY = Path(__file__).resolve().parent.parent
# A second, real process that takes the lock, says so, and holds it until its stdin gets a line.
HOLDER = """
import sys
import django
django.setup()
from deploy_ops.lock import DeployLock
lock = DeployLock(sys.argv[1], sys.argv[2], break_stale=sys.argv[3] == "break")
try:
    lock.acquire()
except Exception as error:
    print("refused", type(error).__name__, str(error).replace(chr(10), " "), flush=True)
    sys.exit(3)
print("held", "broke" if lock.broken else "fresh", flush=True)
sys.stdin.readline()
lock.release()
"""


class Holder:
    def __init__(self, project: Path, what: str = "deploy", record: str = "record-h", break_stale: bool = False):
        environment = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings", "DEPLOY_OPS_PROJECT_DIR": str(project)}
        self.process = subprocess.Popen(
            [sys.executable, "-c", HOLDER, what, record, "break" if break_stale else "keep"],
            cwd=REPOSITORY,
            env=environment,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.pid = self.process.pid

    def answer(self) -> str:
        line = self.process.stdout.readline()
        assert line, self.process.stderr.read()
        return line.strip()

    def let_go(self) -> int:
        if self.process.poll() is None:
            self.process.stdin.write("\n")
            self.process.stdin.flush()
        return self.process.wait(timeout=30)

    def kill_9(self) -> None:
        os.kill(self.pid, signal.SIGKILL)
        self.process.wait(timeout=30)


@pytest.fixture
def holders(ops_dirs):
    started = []

    def start(**options) -> Holder:
        holder = Holder(ops_dirs, **options)
        started.append(holder)
        return holder

    yield start
    for holder in started:
        if holder.process.poll() is None:
            holder.process.kill()
            holder.process.wait()


def write_details(**holder) -> None:
    lock_path().parent.mkdir(parents=True, exist_ok=True)
    lock_path().write_text(
        json.dumps({"what": "deploy", "host": socket.gethostname(), "since": "2026-01-01T00:00:00+00:00", "record": "r", **holder})
    )


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
    lock_path().write_text(
        json.dumps(
            {"what": "deploy", "host": socket.gethostname(), "pid": _dead_pid(), "since": "2026-01-01T00:00:00+00:00", "record": "r"}
        )
    )
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
            assert kernel_lock_path().stat().st_mode & 0o777 == 0o600
            assert lock_path().parent.stat().st_mode & 0o777 == 0o700


# -- the kernel lock, between real processes ---------------------------------------------------------
def test_a_lock_held_by_another_process_refuses_with_its_pid_and_is_free_once_it_ends(holders):
    holder = holders(what="deploy", record="record-7")
    assert holder.answer() == "held fresh"

    with pytest.raises(LockHeld, match=f"Another deploy or rollback is running .*pid {holder.pid} on") as refused:
        DeployLock("rollback", break_stale=True).acquire()
    assert refused.value.holder["record"] == "record-7" and not refused.value.stale
    assert inspect_lock().held and not inspect_lock().stale

    assert holder.let_go() == 0
    assert not inspect_lock().held and not lock_path().exists()
    with DeployLock("deploy"):
        assert inspect_lock().holder["pid"] == os.getpid()


def test_a_holder_killed_with_kill_9_leaves_a_stale_lock_that_only_one_of_two_takers_breaks(holders):
    killed = holders(record="record-killed")
    assert killed.answer() == "held fresh"
    killed.kill_9()

    state = inspect_lock()
    assert state.stale and state.holder["pid"] == killed.pid
    with pytest.raises(LockHeld, match="stale.*--break-lock"):
        DeployLock("deploy").acquire()

    first, second = holders(what="rollback", break_stale=True), holders(what="rollback", break_stale=True)
    answers = sorted([first.answer(), second.answer()])
    assert answers[0] == "held broke", answers
    assert answers[1].startswith("refused LockHeld Another deploy or rollback is running"), answers


def test_a_lock_taken_for_an_instant_by_inspect_lock_does_not_refuse_a_run_starting_then(ops_dirs):
    probe = private_file(kernel_lock_path())  # what inspect_lock() does, held a little longer
    assert _try_lock(probe)
    threading.Timer(0.1, lambda: (_unlock(probe), os.close(probe))).start()
    with DeployLock("deploy") as lock:
        assert lock.broken is None and inspect_lock().holder["pid"] == os.getpid()


def test_a_reused_pid_does_not_hold_the_lock(ops_dirs):
    # The details name a process that is alive (the pid was reused), but nobody holds the kernel lock.
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        write_details(pid=alive.pid)
        state = inspect_lock()
        assert state.held and state.stale, state
        taker = DeployLock("rollback", break_stale=True)
        taker.acquire()
        assert taker.broken.holder["pid"] == alive.pid
        assert inspect_lock().holder["pid"] == os.getpid()
        taker.release()
    finally:
        alive.kill()
        alive.wait()


@pytest.mark.parametrize("content", ["", '{"what": "dep', "[]", '{"pid": 4242}'])
def test_an_empty_or_corrupt_lock_file_is_stale_and_break_lock_clears_it(ops_dirs, content):
    lock_path().parent.mkdir(parents=True)
    lock_path().write_text(content)

    with pytest.raises(LockHeld, match="empty or unreadable") as refused:
        DeployLock("deploy").acquire()
    assert refused.value.stale

    taker = DeployLock("deploy", "new-record", break_stale=True)
    taker.acquire()
    assert taker.broken.unreadable
    assert json.loads(lock_path().read_text())["record"] == "new-record"
    taker.release()
    assert not inspect_lock().held


def test_a_lock_left_by_another_host_is_broken_only_when_that_host_is_named(ops_dirs):
    write_details(host="web-2", pid=4242)
    assert inspect_lock().foreign

    with pytest.raises(LockHeld, match="web-2.*--break-lock=web-2"):
        DeployLock("deploy", break_stale=True).acquire()
    with pytest.raises(LockHeld):
        DeployLock("deploy", break_stale="web-3").acquire()

    taker = DeployLock("deploy", break_stale="web-2")
    taker.acquire()
    assert taker.broken.holder["host"] == "web-2"
    taker.release()


def test_deploy_break_lock_on_a_terminal_asks_for_the_other_hosts_name(ops_dirs, monkeypatch):
    from deploy_ops.management.commands.deploy import Command

    write_details(host="web-2", pid=4242)
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    questions = []
    monkeypatch.setattr("builtins.input", lambda question: questions.append(question) or "web-2")
    assert Command().confirm_foreign_lock(True) == "web-2"
    assert "web-2" in questions[0]
    monkeypatch.setattr("builtins.input", lambda question: "no")
    assert Command().confirm_foreign_lock(True) is True  # not confirmed: the lock will refuse


def test_a_failure_while_writing_the_details_leaves_no_lock(ops_dirs, monkeypatch):
    def no_room(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("deploy_ops.privatefiles.os.replace", no_room)
    with pytest.raises(OSError):
        DeployLock("deploy").acquire()
    monkeypatch.undo()
    assert not inspect_lock().held
    assert not list(lock_path().parent.glob(".partial-*"))


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


# -- private folders and files ------------------------------------------------------------------------
@pytest.mark.skipif(os.name == "nt", reason="POSIX modes; Windows uses the folder's ACL")
@pytest.mark.django_db
def test_log_and_state_dirs_are_0700_and_their_files_0600_even_when_they_existed_looser(ops_dirs):
    for folder, loose_file in (
        (ops_dirs / "logs", "deployments.jsonl"),
        (ops_dirs / "logs", "notifications.log"),
        (ops_dirs / ".deploy_ops", "deploy.flock"),
    ):
        folder.mkdir(mode=0o755, exist_ok=True)
        os.chmod(folder, 0o755)
        (folder / loose_file).write_text("")
        os.chmod(folder / loose_file, 0o644)

    with DeployLock("deploy") as lock:
        recorder = Recorder(DeploymentRecord.Kind.DEPLOY, requested_ref="main")
        recorder.finish(DeploymentRecord.Status.SUCCEEDED)
        send(build_event(Level.SUCCESS, recorder.record))
        details_mode = lock_path().stat().st_mode & 0o777
    assert lock.broken is None
    assert details_mode == 0o600
    for path in (journal_path(), log_path(), kernel_lock_path()):
        assert path.stat().st_mode & 0o777 == 0o600, path
    for folder in (journal_path().parent, kernel_lock_path().parent):
        assert folder.stat().st_mode & 0o777 == 0o700, folder


# -- the journal stays small --------------------------------------------------------------------------
def journal_lines() -> list[dict]:
    return [json.loads(line) for line in journal_path().read_text().splitlines()]


def a_finished_deploy(stages: int = 3) -> Recorder:
    recorder = Recorder(DeploymentRecord.Kind.DEPLOY, requested_ref="main")
    for number in range(stages):
        stage = recorder.start_stage(f"stage {number}")
        recorder.finish_stage(stage, DeploymentStage.Status.SUCCEEDED, f"output {number}")
    recorder.finish(DeploymentRecord.Status.SUCCEEDED, to_commit="abc")
    return recorder


@pytest.mark.django_db
def test_compaction_keeps_each_finished_records_newest_snapshot_and_every_snapshot_of_a_running_one(ops_dirs):
    first, second = a_finished_deploy(), a_finished_deploy()
    running = Recorder(DeploymentRecord.Kind.ROLLBACK)
    running.start_stage("safety backup")
    running.save()
    before = read_journal()
    running_snapshots = [line for line in journal_lines() if line["record"]["id"] == str(running.record.id)]
    assert len(journal_lines()) == 2 * 7 + 2  # a start and a finish per stage, and the finish

    assert compact_journal() is True

    lines = journal_lines()
    assert [line["record"]["id"] for line in lines] == [str(first.record.id), str(second.record.id)] + [str(running.record.id)] * 2
    assert read_journal() == before
    assert lines[2:] == running_snapshots
    assert compact_journal() is False  # nothing more to drop


@pytest.mark.django_db
def test_the_lock_compacts_the_journal_when_a_run_ends(ops_dirs):
    with DeployLock("deploy"):
        a_finished_deploy(stages=5)
        assert len(journal_lines()) == 11
    assert len(journal_lines()) == 1


@pytest.mark.django_db
def test_a_crash_mid_compaction_leaves_the_old_journal(ops_dirs, monkeypatch):
    a_finished_deploy()
    original = journal_path().read_bytes()

    def crash(*args):
        raise KeyboardInterrupt  # the process dies before the new journal takes the old one's place

    monkeypatch.setattr("deploy_ops.privatefiles.os.replace", crash)
    with pytest.raises(KeyboardInterrupt):
        compact_journal()
    assert journal_path().read_bytes() == original
    assert not list(journal_path().parent.glob(".partial-*"))


@pytest.mark.django_db
def test_replay_after_a_restore_puts_back_every_record_of_a_compacted_journal(ops_dirs):
    recorders = [a_finished_deploy(), a_finished_deploy()]
    compact_journal()

    DeploymentRecord.objects.all().delete()  # what restoring a pre-deploy backup does
    assert replay_journal() == 2

    for recorder in recorders:
        restored = DeploymentRecord.objects.get(id=recorder.record.id)
        assert (restored.status, restored.to_commit) == ("succeeded", "abc")
        assert [stage.output_tail for stage in restored.stages.all()] == ["output 0", "output 1", "output 2"]


@pytest.mark.django_db
def test_compaction_keeps_a_line_it_cannot_read_and_an_append_after_a_torn_line_stays_readable(ops_dirs):
    a_finished_deploy()
    with open(journal_path(), "a") as journal:
        journal.write('{"record": {"id": "torn')
    later = a_finished_deploy()
    assert str(later.record.id) in read_journal()

    compact_journal()

    text = journal_path().read_text().splitlines()
    assert '{"record": {"id": "torn' in text
    assert len(read_journal()) == 2


# -- backups restore is a recovery like the others ----------------------------------------------------
@pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")
def test_backups_restore_refuses_with_exit_3_while_another_process_holds_the_lock(sqlite_target, holders, db):
    backup = create_backup()
    sqlite3_change(sqlite_target)
    changed = sqlite_checksum(sqlite_target)
    deploy = holders(what="deploy", record="the-running-deploy")
    assert deploy.answer() == "held fresh"

    with pytest.raises(CommandError, match=f"Another deploy or rollback is running .*pid {deploy.pid}") as refused:
        call_command("backups", "restore", backup.name, "--noinput")

    assert refused.value.returncode == 3
    assert sqlite_checksum(sqlite_target) == changed
    assert [found.name for found in list_backups()] == [backup.name]  # no safety backup either
    assert not journal_path().exists() and not DeploymentRecord.objects.exists()
    assert deploy.let_go() == 0


@pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")
def test_backups_restore_leaves_a_restore_record_with_its_stages_journaled_and_notified(sqlite_target, db):
    original = sqlite_checksum(sqlite_target)
    backup = create_backup()
    sqlite3_change(sqlite_target)

    call_command("backups", "restore", backup.name, "--noinput")

    assert sqlite_checksum(sqlite_target) == original
    [snapshot] = read_journal().values()
    record = snapshot["record"]
    assert (record["kind"], record["status"], record["backup_name"]) == ("restore", "succeeded", backup.name)
    assert [(stage["name"], stage["status"]) for stage in snapshot["stages"]] == [
        ("safety backup", "succeeded"),
        ("restore database", "succeeded"),
    ]
    saved = DeploymentRecord.objects.get(id=record["id"])
    assert saved.kind == DeploymentRecord.Kind.RESTORE and saved.stages.count() == 2
    [event] = [json.loads(line) for line in log_path().read_text().splitlines()]
    assert (event["level"], event["title"], event["kind"]) == ("ROLLBACK_SUCCESS", f"Restored {backup.name}", "restore")
    assert not inspect_lock().held


def sqlite3_change(path) -> None:
    with sqlite3.connect(path) as connection:
        connection.execute("DELETE FROM items WHERE id % 3 = 0")
    connection.close()


@pytest.mark.postgres
@pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")
def test_a_restore_that_fails_is_recorded_and_notified_as_a_failed_recovery(postgres_target, db):
    backup = create_backup(compression="none")
    text = backup.path.read_text()
    position = text.index("COPY public.items")
    broken = backup.path.with_name("backup_20250109_120000.sql")
    broken.write_text(text[:position] + "SELECT no_such_function_deploy_ops();\n" + text[position:])

    with pytest.raises(CommandError) as failed:
        call_command("backups", "restore", broken.name, "--noinput")

    assert failed.value.returncode == 2
    [snapshot] = [found for found in read_journal().values() if found["record"]["kind"] == "restore"]
    record = snapshot["record"]
    assert (record["status"], record["failed_stage"]) == ("rollback_failed", "restore database")
    assert "no_such_function_deploy_ops" in record["error"]
    assert [(stage["name"], stage["status"]) for stage in snapshot["stages"]] == [
        ("safety backup", "succeeded"),
        ("restore database", "failed"),
    ]
    [event] = [json.loads(line) for line in log_path().read_text().splitlines()]
    assert (event["level"], event["title"]) == (
        "ROLLBACK_FAILED",
        f"RESTORE OF {broken.name} FAILED at stage restore database: a human is needed",
    )
    assert not inspect_lock().held
