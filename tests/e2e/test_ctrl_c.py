"""Ctrl-C rolls back cleanly (issue 9, item 3): ``deploy`` on a real pseudo-terminal, SIGINT to the
whole foreground process group (``sendintr``) during a stage, must end in a finished rollback,
exit 1, and the services it started must outlive the terminal."""

import sys
import time

import pexpect
import pytest

from tests.e2e.helpers import last_record, records, serve_release_1_on_compose, wait_for
from tests.e2e.test_deploy_commands_runtime import serving_release_1 as serving_release_1_on_the_host
from tests.fixtures.sample_site import health_fails, postgres_url, release, slow_data_changing_migration

pytestmark = pytest.mark.slow


def interrupt_the_deploy_during(site, stage: str, *arguments: str) -> str:
    """Deploy on a pseudo-terminal, Ctrl-C once ``stage`` runs, close the terminal; returns what it printed."""
    terminal = pexpect.spawn(
        sys.executable, ["manage.py", "deploy", "--noinput", *arguments], cwd=str(site.production), encoding="utf-8", timeout=300
    )
    try:
        wait_for(
            lambda: any(s["name"] == stage and s["status"] == "running" for s in records(site)[-1]["stages"]) if records(site) else False,
            timeout=300,
            interval=0.2,
        )
        time.sleep(1)
        terminal.sendintr()
        terminal.expect(pexpect.EOF)
        output = terminal.before
    finally:
        terminal.close(force=True)  # the terminal goes away: SIGHUP to its session
    assert terminal.exitstatus == 1, f"exit {terminal.exitstatus} / signal {terminal.signalstatus}\n{output}"
    return output


NAIVE_SUPERVISOR = """
import os, signal, subprocess, sys, time

action, port = sys.argv[1], sys.argv[2]
if action == "start":
    os.makedirs("logs", exist_ok=True)
    os.makedirs(".deploy_ops", exist_ok=True)
    server = subprocess.Popen([sys.executable, "manage.py", "runserver", "--noreload", "127.0.0.1:" + port],
                              stdout=open("logs/web.log", "ab"), stderr=subprocess.STDOUT)
    open(".deploy_ops/web.pid", "w").write(str(server.pid))
    time.sleep(2)
    sys.exit(server.poll() is not None)
try:
    pid = int(open(".deploy_ops/web.pid").read())
    os.kill(pid, signal.SIGTERM if action == "stop" else 0)
except (OSError, ValueError):
    sys.exit(action != "stop")
while action == "stop" and os.path.exists(f"/proc/{pid}") and open(f"/proc/{pid}/stat").read().rpartition(")")[2].split()[0] != "Z":
    time.sleep(0.1)
"""


def commands_that_do_not_detach(folder, port: int) -> dict[str, list[str]]:
    """A start step that leaves runserver in its own process group, as a naive script would (no setsid,
    no nohup): only deploy_ops starting the step in a session of its own keeps it from the terminal."""
    script = folder / "naive_supervisor.py"
    script.write_text(NAIVE_SUPERVISOR)
    return {action: [sys.executable, str(script), action, str(port)] for action in ("start", "stop", "check")}


def test_the_services_a_deploy_starts_outlive_the_operators_terminal(sample_site, tmp_path):
    serving_release_1_on_the_host(sample_site, COMMANDS=commands_that_do_not_detach(tmp_path, sample_site.web_port))
    sample_site.commit_change(release("2"), "Release 2")
    terminal = pexpect.spawn(
        sys.executable, ["manage.py", "deploy", "--noinput"], cwd=str(sample_site.production), encoding="utf-8", timeout=300
    )
    terminal.expect(pexpect.EOF)
    output = terminal.before
    terminal.close(force=True)  # SIGHUP to the terminal's session
    assert terminal.exitstatus == 0, output

    time.sleep(2)
    status, body = sample_site.get("/")
    assert status == 200 and body.startswith("release 2"), body


def assert_rolled_back_by_ctrl_c(site, output: str, stage: str) -> None:
    assert "Broken pipe" not in output and "ROLLBACK FAILED" not in output, output
    snapshot = last_record(site)
    assert (snapshot["record"]["status"], snapshot["record"]["failed_stage"]) == ("rolled_back", stage)
    assert snapshot["record"]["error"] == "Interrupted by the operator (Ctrl-C)."
    assert site.production_head() == site.initial_sha
    time.sleep(2)  # the terminal is gone; the services deploy_ops started must still serve
    status, body = site.get("/")
    assert status == 200 and body.startswith("release 1"), body
    assert site.notes() == ["first", "second"]


@pytest.mark.parametrize("stage", ["migrate", "health"])
def test_ctrl_c_on_the_commands_runtime_rolls_back_and_exits_1(sample_site, stage):
    serving_release_1_on_the_host(sample_site)
    change = slow_data_changing_migration(20) if stage == "migrate" else health_fails()
    sample_site.commit_change(change, f"Release 2: slow at {stage}")

    output = interrupt_the_deploy_during(sample_site, stage, "--health-retries", "100", "--health-delay", "0.5")

    assert_rolled_back_by_ctrl_c(sample_site, output, stage)


@pytest.mark.docker
@pytest.mark.postgres
def test_ctrl_c_on_compose_during_a_migration_rolls_back_and_exits_1(sample_site, docker_engine, postgres_database):
    serve_release_1_on_compose(sample_site, docker_engine, postgres_url(postgres_database))
    sample_site.commit_change(slow_data_changing_migration(20), "Release 2: a slow data migration")

    output = interrupt_the_deploy_during(sample_site, "migrate")

    assert_rolled_back_by_ctrl_c(sample_site, output, "migrate")
    time.sleep(20)  # the migration's container was removed, not left to commit later
    assert sample_site.notes() == ["first", "second"]
