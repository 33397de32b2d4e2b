"""Progress on long work: bytes, rate and estimate for backups and restores on a terminal (a real
pty here) and silence elsewhere; -v 3 echoes every command with its secrets masked; the runner's
on_line hook streams a long command's output as it comes."""

from __future__ import annotations

import os
import select
import sys
from io import StringIO

import pytest
from django.core.management import call_command

from deploy_ops import backups, progress
from deploy_ops.exceptions import CommandFailed
from deploy_ops.runner import Command, run

pytestmark = pytest.mark.django_db


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


@pytest.fixture
def terminal():
    """A real pseudo-terminal: what is written to ``terminal.stream`` is read back by ``terminal.read()``."""
    controller, device = os.openpty()
    stream = os.fdopen(device, "w", encoding="utf-8")

    class Terminal:
        def read(self) -> str:
            stream.flush()
            chunks = []
            while select.select([controller], [], [], 0.2)[0]:
                chunks.append(os.read(controller, 65536))
            return b"".join(chunks).decode("utf-8", "replace")

    found = Terminal()
    found.stream = stream
    yield found
    stream.close()
    os.close(controller)


def test_progress_says_bytes_rate_and_time_left_from_the_expected_size():
    clock = Clock()
    meter = progress.ByteProgress("Backing up", expected=100 * 1024 * 1024, stream=StringIO(), clock=clock)
    clock.now += 10
    meter.advance(25 * 1024 * 1024)
    assert meter.render() == "Backing up: 25.0\xa0MB, 2.5\xa0MB/s, about 25 % of 100.0\xa0MB, 30 s left"


def test_progress_never_claims_to_be_done_when_the_estimate_was_too_small():
    clock = Clock()
    meter = progress.ByteProgress("Restoring", expected=1000, stream=StringIO(), clock=clock)
    clock.now += 1
    meter.advance(5000)
    assert "about 99 % of 1000\xa0bytes, 0.0 s left" in meter.render()


def test_progress_is_drawn_in_place_on_a_terminal(terminal):
    clock = Clock()
    meter = progress.ByteProgress("Backing up", expected=None, stream=terminal.stream, clock=clock)
    clock.now += 1
    meter.advance(2048)
    meter.finish()
    shown = terminal.read()
    assert "\r\x1b[KBacking up: 2.0\xa0KB, 2.0\xa0KB/s" in shown
    assert "Backing up: 2.0\xa0KB, 2.0\xa0KB/s, in 1.0 s" in shown


def test_progress_is_quiet_off_a_terminal_and_when_silenced(terminal):
    off_terminal = StringIO()
    meter = progress.ByteProgress("Backing up", expected=10, stream=off_terminal, clock=Clock())
    meter.advance(5)
    meter.finish()
    assert off_terminal.getvalue() == ""
    with progress.silenced():
        progress.ByteProgress("Backing up", expected=10, stream=terminal.stream).finish()
    assert terminal.read() == ""


def test_a_backup_and_its_restore_show_progress_on_a_terminal(sqlite_target, terminal, monkeypatch):
    monkeypatch.setattr(sys, "stderr", terminal.stream)
    backup = backups.create_backup()
    made = terminal.read()
    assert "Backing up 'target': " in made and "/s, in " in made
    backups.restore_backup(backup, safety_backup=False)
    assert f"Restoring {backup.name}: " in terminal.read()


def test_backups_create_prints_no_progress_when_stderr_is_not_a_terminal(sqlite_target):
    err = StringIO()
    call_command("backups", "create", stdout=StringIO(), stderr=err)
    assert err.getvalue() == ""


def test_verbosity_3_shows_each_command_as_it_runs_with_secrets_masked():
    shown = []
    secret = "s3cr3t-value-from-the-vault"
    with progress.echo_commands(shown.append):
        run(Command(("echo", f"password={secret}"), secrets=(secret,)))
    run(Command(("echo", "after")))
    assert shown == ["$ echo 'password=***'"]


def test_backups_create_at_verbosity_3_echoes_the_dump_command(postgres_target):
    err = StringIO()
    call_command("backups", "create", "-v", "3", stdout=StringIO(), stderr=err)
    assert "$ pg_dump " in err.getvalue()


def test_the_estimate_is_the_postgres_databases_size_asked_only_when_someone_watches(postgres_target, terminal):
    from deploy_ops.databases import engine_for

    size = progress.database_size(engine_for("target"))
    assert size > 1_000_000  # an empty PostgreSQL database already holds its catalogs
    assert progress.ByteProgress("x", lambda: 1 / 0, stream=StringIO()).expected is None
    assert progress.ByteProgress("x", lambda: size, stream=terminal.stream).expected == size


def test_on_line_streams_stdout_and_stderr_lines_as_they_come_and_keeps_the_output():
    lines = []
    secret = "tok-123456789"
    finished = run(Command(("sh", "-c", f"echo one; echo two {secret} >&2; echo three"), secrets=(secret,)), on_line=lines.append)
    assert sorted(lines) == ["one", "three", "two ***"]
    assert (finished.stdout, finished.stderr) == ("one\nthree\n", f"two {secret}\n")


def test_on_line_keeps_the_runners_failure_and_timeout_errors():
    with pytest.raises(CommandFailed) as failed:
        run(Command(("sh", "-c", "echo broken >&2; exit 4")), on_line=lambda line: None)
    assert failed.value.returncode == 4 and "broken" in failed.value.stderr_tail
    with pytest.raises(CommandFailed) as slow:
        run(Command(("sleep", "5")), timeout=0.2, on_line=lambda line: None)
    assert slow.value.timed_out


def test_last_line_draws_a_long_commands_newest_line_over_the_previous_one(terminal):
    last = progress.LastLine(terminal.stream)
    run(Command(("sh", "-c", "echo Step 1/3; echo Step 2/3")), on_line=last)
    last.close()
    assert terminal.read() == "\r\x1b[K  Step 1/3\r\x1b[K  Step 2/3\r\x1b[K"


def test_a_failure_leaves_the_progress_line_and_starts_a_new_one_for_the_error(terminal):
    clock = Clock()
    with pytest.raises(OSError):
        with progress.ByteProgress("Restoring", expected=None, stream=terminal.stream, clock=clock) as meter:
            clock.now += 1
            meter.advance(1024)
            raise OSError("disk gone")
    shown = terminal.read()
    assert shown.endswith("Restoring: 1.0\xa0KB, 1.0\xa0KB/s\r\n") and ", in " not in shown


LONG_OUTPUT = "import time\nfor n in range(3):\n    print(f'step {n} of 3', flush=True)\n    time.sleep(0.05)\n"


def test_at_verbosity_2_a_long_stage_draws_its_newest_output_line_on_a_terminal(terminal):
    from deploy_ops.pipeline import Task

    task = Task(Command((sys.executable, "-c", LONG_OUTPUT)), timeout=30)
    with progress.last_lines_shown(), progress.last_line_of_long_work(terminal.stream) as on_line:
        assert on_line is not None
        output = task.run(on_line)
    drawn = terminal.read()
    assert "step 2 of 3" in output  # the stage keeps the whole output as before
    assert "\r\x1b[K  step 0 of 3" in drawn and "\r\x1b[K  step 2 of 3" in drawn


def test_below_verbosity_2_or_off_a_terminal_no_line_is_drawn(terminal):
    with progress.last_line_of_long_work(terminal.stream) as on_line:
        assert on_line is None  # -v 1
    with progress.last_lines_shown(), progress.last_line_of_long_work(StringIO()) as on_line:
        assert on_line is None  # not a terminal
    with progress.last_lines_shown(), progress.silenced(), progress.last_line_of_long_work(terminal.stream) as on_line:
        assert on_line is None  # -v 0
