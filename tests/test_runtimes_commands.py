"""CommandsRuntime (argv lists from COMMANDS) and servectl, the supervisor the demo runs it with."""

import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest

from deploy_ops import servectl
from deploy_ops.exceptions import CommandFailed, ConfigurationError
from deploy_ops.runner import Command
from deploy_ops.runtimes import get_runtime
from deploy_ops.runtimes.base import ServiceState
from deploy_ops.runtimes.commands import CommandsRuntime, text_since

# By file path, as the demo runs it: servectl needs only the standard library.
SERVECTL = [sys.executable, servectl.__file__]


@pytest.fixture
def commands_settings(ops_dirs, settings):
    def configure(commands, **extra):
        settings.DEPLOY_OPS = {**settings.DEPLOY_OPS, "RUNTIME": "commands", "COMMANDS": commands, **extra}
        return CommandsRuntime(ops_dirs)

    return configure


def test_commands_is_chosen_by_the_runtime_setting(commands_settings):
    commands_settings({"start": ["x"], "stop": ["y"]})
    assert isinstance(get_runtime(), CommandsRuntime)


def test_each_step_is_its_argv_list_run_in_the_checkout(commands_settings, ops_dirs):
    runtime = commands_settings(
        {
            "build": ["venv/bin/pip", "install", "-r", "requirements.txt"],
            "start": ["systemctl", "start", "gunicorn"],
            "stop": ["systemctl", "stop", "gunicorn"],
        }
    )
    cwd = str(ops_dirs)
    assert runtime.build_commands() == [Command(("venv/bin/pip", "install", "-r", "requirements.txt"), cwd=cwd)]
    assert runtime.start_commands() == [Command(("systemctl", "start", "gunicorn"), cwd=cwd)]
    assert runtime.stop_commands() == [Command(("systemctl", "stop", "gunicorn"), cwd=cwd)]


def test_build_is_optional_but_start_and_stop_are_required(commands_settings):
    runtime = commands_settings({"stop": ["halt"]})
    assert runtime.build_commands() == []
    with pytest.raises(ConfigurationError, match=r"DEPLOY_OPS\['COMMANDS'\] has no 'start' step"):
        runtime.start_commands()


def test_a_runtime_without_slots_runs_no_release_beside_another(commands_settings):
    # The blue/green interface of ServiceRuntime, as a runtime without slots answers it.
    runtime = commands_settings({"start": ["x"], "stop": ["y"]})
    assert not runtime.can_run_side_by_side()
    assert runtime.slot is None
    assert runtime.slots_running() == []
    assert runtime.remove_slot_commands("green") == []
    with pytest.raises(NotImplementedError, match="The commands runtime has no slots"):
        runtime.start_slot_commands("green", "0" * 40)
    with pytest.raises(NotImplementedError, match="The commands runtime has no slots"):
        runtime.stop_web_commands()


def test_manage_runs_manage_py_on_the_host_with_this_python(commands_settings, ops_dirs):
    runtime = commands_settings({"start": ["x"], "stop": ["y"]})
    assert runtime.manage_command("migrate", "--noinput") == Command(
        (sys.executable, "manage.py", "migrate", "--noinput"), cwd=str(ops_dirs)
    )


def test_a_migrate_step_replaces_manage_py_migrate_and_keeps_its_arguments(commands_settings, ops_dirs):
    runtime = commands_settings(
        {"start": ["x"], "stop": ["y"], "migrate": ["sudo", "-u", "app", "venv/bin/python", "manage.py", "migrate"]}
    )
    assert runtime.manage_command("migrate", "--check") == Command(
        ("sudo", "-u", "app", "venv/bin/python", "manage.py", "migrate", "--check"), cwd=str(ops_dirs)
    )
    assert runtime.manage_command("check") == Command((sys.executable, "manage.py", "check"), cwd=str(ops_dirs))


def test_service_states_come_from_the_check_step_and_are_empty_without_one(commands_settings):
    assert commands_settings({"start": ["x"], "stop": ["y"]}).service_states() == []
    up = commands_settings({"start": ["x"], "stop": ["y"], "check": [sys.executable, "-c", "print('up')"]})
    assert up.service_states() == [ServiceState("web", "running", None, "up")]
    down = commands_settings(
        {"start": ["x"], "stop": ["y"], "check": [sys.executable, "-c", "print('down'); raise SystemExit(3)"]}, WEB_SERVICE="site"
    )
    assert down.service_states() == [ServiceState("site", "stopped", None, "down")]


def _marker(moment):
    return servectl.START_MARKER.format(time=moment.isoformat())


def test_logs_since_start_at_the_first_servectl_start_after_the_time():
    before = datetime(2025, 1, 9, 12, 0, tzinfo=UTC)
    text = f"{_marker(before - timedelta(minutes=5))}\nold release CRITICAL\n{_marker(before + timedelta(seconds=1))}\nnew release\n"
    assert text_since(text, before) == f"{_marker(before + timedelta(seconds=1))}\nnew release\n"
    assert text_since(text, before + timedelta(hours=1)) == ""
    assert text_since("a log servectl did not write\n", before) == "a log servectl did not write\n"


def test_logs_since_reads_the_configured_log_file_or_nothing(commands_settings, ops_dirs):
    runtime = commands_settings({"start": ["x"], "stop": ["y"]})
    assert runtime.logs_since(datetime.now(UTC)) == ""
    (ops_dirs / "logs").mkdir()
    (ops_dirs / "logs" / "web.log").write_text("CRITICAL boom\n")
    runtime = commands_settings({"start": ["x"], "stop": ["y"]}, COMMANDS_LOG_FILE="logs/web.log")
    assert runtime.logs_since(datetime.now(UTC)) == "CRITICAL boom\n"


# -- servectl, for real --------------------------------------------------------------------------


def _servectl(*arguments, cwd):
    return subprocess.run([*SERVECTL, *arguments], cwd=cwd, capture_output=True, text=True, timeout=60)


def _wait_for(condition, seconds=15):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.1)


@pytest.mark.skipif(os.name == "nt", reason="SIGTERM semantics are POSIX")
def test_servectl_stop_kills_a_process_ignoring_sigterm_once_the_timeout_passes(tmp_path):
    program = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(60)"
    started = _servectl("start", "--pidfile", "app.pid", "--logfile", "app.log", "--", sys.executable, "-c", program, cwd=tmp_path)
    assert started.returncode == 0, started.stderr
    _wait_for(lambda: "ready" in (tmp_path / "app.log").read_text())
    pid = servectl.read_pid(tmp_path / "app.pid")

    began = time.monotonic()
    stopped = _servectl("stop", "--pidfile", "app.pid", "--timeout", "1", cwd=tmp_path)
    took = time.monotonic() - began

    assert stopped.returncode == 0, stopped.stderr
    assert "still running after 1s; killing it" in stopped.stderr
    assert 1 <= took < 10
    assert not servectl.is_alive(pid)
    assert not (tmp_path / "app.pid").exists()


def test_servectl_stop_ends_the_children_too(tmp_path):
    program = (
        "import subprocess, sys, time;"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']);"
        "print('child', child.pid, flush=True); time.sleep(60)"
    )
    assert (
        _servectl("start", "--pidfile", "app.pid", "--logfile", "app.log", "--", sys.executable, "-c", program, cwd=tmp_path).returncode
        == 0
    )
    _wait_for(lambda: "child" in (tmp_path / "app.log").read_text())
    child = int((tmp_path / "app.log").read_text().split("child ")[1].split()[0])

    assert _servectl("stop", "--pidfile", "app.pid", "--timeout", "5", cwd=tmp_path).returncode == 0
    _wait_for(lambda: not servectl.is_alive(child), seconds=5)


def test_servectl_start_with_grace_fails_and_shows_the_output_when_the_process_exits_at_once(tmp_path):
    program = "import sys; print('cannot bind the port', flush=True); sys.exit(4)"
    started = _servectl(
        "start", "--pidfile", "app.pid", "--logfile", "app.log", "--grace", "3", "--", sys.executable, "-c", program, cwd=tmp_path
    )
    assert started.returncode == 1
    assert "exited with code 4 within 3s" in started.stderr
    assert "cannot bind the port" in started.stderr
    assert not (tmp_path / "app.pid").exists()


def test_servectl_status_and_a_second_start_while_running(tmp_path):
    assert _servectl("status", "--pidfile", "app.pid", cwd=tmp_path).returncode == servectl.EXIT_NOT_RUNNING
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    assert _servectl("start", "--pidfile", "app.pid", "--logfile", "app.log", "--", *sleeper, cwd=tmp_path).returncode == 0
    try:
        assert _servectl("status", "--pidfile", "app.pid", cwd=tmp_path).returncode == 0
        again = _servectl("start", "--pidfile", "app.pid", "--logfile", "app.log", "--", *sleeper, cwd=tmp_path)
        assert again.returncode == 1
        assert "Already running" in again.stderr
    finally:
        assert _servectl("stop", "--pidfile", "app.pid", cwd=tmp_path).returncode == 0
    assert _servectl("stop", "--pidfile", "app.pid", cwd=tmp_path).stdout == "Not running.\n"


# -- the sample site under the commands runtime ----------------------------------------------------


def test_sample_site_starts_under_servectl_serves_logs_and_stops(sample_site, settings):
    settings.DEPLOY_OPS = sample_site.use_commands()
    runtime = CommandsRuntime(sample_site.production)
    assert "Applying notes.0001_initial... OK" in runtime.manage("migrate", "--noinput")
    before_start = datetime.now(UTC)

    runtime.start()
    _wait_for(lambda: sample_site.get("/")[0] == 200)

    assert sample_site.get("/") == (200, "release 1\nnotes 0\n")
    assert runtime.service_states() == [
        ServiceState("web", "running", None, f"Running (pid {servectl.read_pid(sample_site.production / '.deploy_ops/web.pid')}).")
    ]
    assert '"GET / HTTP/1.1" 200' in runtime.logs_since(before_start)

    runtime.stop()
    assert runtime.service_states() == [ServiceState("web", "stopped", None, "Not running.")]
    assert sample_site.get("/")[0] is None


def test_a_start_step_that_hangs_is_stopped_at_the_start_timeout(settings, tmp_path):
    settings.DEPLOY_OPS = {
        "PROJECT_DIR": str(tmp_path),
        "RUNTIME": "commands",
        "START_TIMEOUT": 1,
        "COMMANDS": {"start": [sys.executable, "-c", "import time; time.sleep(30)"], "stop": ["true"]},
    }
    with pytest.raises(CommandFailed, match="timed out after 1"):
        CommandsRuntime(tmp_path).start()


def test_a_relative_step_path_is_found_in_the_project_folder(settings, tmp_path):
    script = tmp_path / "bin" / "start"
    script.parent.mkdir()
    script.write_text("#!/bin/sh\necho started from the project\n")
    script.chmod(0o755)
    settings.DEPLOY_OPS = {"PROJECT_DIR": str(tmp_path), "RUNTIME": "commands", "COMMANDS": {"start": ["./bin/start"], "stop": ["true"]}}
    assert CommandsRuntime(tmp_path).start() == "started from the project\n"
