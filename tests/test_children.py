"""What a run has running on the host is written down while it holds the lock, and what a dead run
left behind is found and stopped (deploy_ops.children, through the one runner)."""

import json
import os
import subprocess
import sys

import pytest

from deploy_ops import children
from deploy_ops.runner import Command, run

pytestmark = pytest.mark.skipif(os.name == "nt", reason="process groups are POSIX here; Windows uses taskkill /T")


SLEEPERS = "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); time.sleep(60)"
# Starts SLEEPERS in a session of its own, prints its pid and exits: its run is gone, as after a kill -9.
LAUNCHER = (
    "import subprocess, sys; "
    f"print(subprocess.Popen([sys.executable, '-c', {SLEEPERS!r}], "
    "start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).pid)"
)


def a_child_left_by_a_dead_run(record="dead-record") -> int:
    """A process group that outlived its run (a sleeping leader with a sleeping child), written down as the runner does."""
    pid = int(subprocess.run([sys.executable, "-c", LAUNCHER], capture_output=True, text=True, check=True).stdout)
    with children.tracking(record):
        children.register(pid, "python -c sleep")
    return pid


def group_alive(pid: int) -> bool:
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_command_is_written_down_only_while_it_runs_and_only_under_the_lock(ops_dirs):
    folder = ops_dirs / ".deploy_ops" / "children"
    probe = Command((sys.executable, "-c", "import os; print(sorted(os.listdir('.deploy_ops/children')))"), cwd=str(ops_dirs))
    with children.tracking("live-record"):
        seen = run(probe).stdout
    assert seen.startswith("['") and seen.strip().endswith(".json']")
    assert list(folder.iterdir()) == []
    run(Command((sys.executable, "-c", "pass"), cwd=str(ops_dirs)))
    assert list(folder.iterdir()) == []


def test_what_a_dead_run_left_is_listed_then_stopped_with_its_whole_group(ops_dirs):
    orphan = a_child_left_by_a_dead_run()
    try:
        [found] = children.left_behind()
        assert (found.pid, found.record, found.command) == (orphan, "dead-record", "python -c sleep")

        stopped = children.stop_left_behind(timeout=5)

        assert stopped == [found.describe()]
        assert not group_alive(orphan)  # the leader and the child it started
        assert children.left_behind() == []
    finally:
        if group_alive(orphan):
            os.killpg(orphan, 9)


def test_a_reused_pid_is_not_taken_for_the_child_that_died(ops_dirs):
    orphan = a_child_left_by_a_dead_run()
    try:
        entry = ops_dirs / ".deploy_ops" / "children" / f"{orphan}.json"
        written = json.loads(entry.read_text())
        if not written["start_time"]:
            pytest.skip("no /proc start times on this system")
        entry.write_text(json.dumps({**written, "start_time": "1"}))
        assert children.left_behind() == []
        assert children.stop_left_behind(timeout=1) == []
        assert group_alive(orphan)
    finally:
        os.killpg(orphan, 9)
