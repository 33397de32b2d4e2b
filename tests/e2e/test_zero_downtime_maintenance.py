"""Behind a real nginx on loopback, a stop-first deploy of the sample site on Compose (PostgreSQL):
while the old release is stopped the proxy answers 503 with Retry-After and a page, never a refused
connection or another 5xx, and once the new release is verified it gets the traffic again."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys

import pytest

from tests.e2e.helpers import deploy, failure_text, last_record, manage, records, start_release_1_with_a_note, wait_for
from tests.fixtures.environment import skip_or_fail
from tests.fixtures.sample_site import health_fails, postgres_url, release
from tests.test_proxy_nginx import Load, Nginx, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.docker]

INCOMPATIBLE_MIGRATION = {
    # A NOT NULL column whose default is Django's, not the database's: the old code's INSERTs would fail.
    "notes/migrations/0002_title.py": """from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("notes", "0001_initial")]
    operations = [migrations.AddField("note", "title", models.TextField(default=""))]
""",
}


@pytest.fixture
def behind_nginx(sample_site, docker_engine, postgres_database, tmp_path):
    """Release 1 on Compose, migrated and serving, behind its own nginx; yields (site, nginx)."""
    if shutil.which("nginx") is None:
        skip_or_fail("nginx is not installed: run `bash .ci/nginx`")
    address = f"127.0.0.1:{sample_site.web_port}"
    nginx = Nginx(tmp_path / "nginx", address)
    proxy = {
        "KIND": "nginx",
        "ROUTE_FILE": str(nginx.folder / "route.conf"),
        "ADDRESS": address,
        "RELOAD_COMMAND": [*nginx.base, "-s", "reload"],
        "TEST_COMMAND": [*nginx.base, "-t", "-q"],
        "PID_FILE": str(nginx.folder / "nginx.pid"),
        "DRAIN_TIMEOUT": 10,
        "RETRY_AFTER": 7,
    }
    sample_site.use_compose(docker_engine, postgres_url(postgres_database), HEALTH_CHECK_RETRIES=10, HEALTH_CHECK_DELAY=1, PROXY=proxy)
    start_release_1_with_a_note(sample_site, docker_engine)
    assert wait_until(lambda: nginx.get()[0] == 200, timeout=30)
    yield sample_site, nginx
    nginx.stop()


def test_an_incompatible_plan_deploys_stop_first_and_the_window_answers_only_503s(behind_nginx):
    site, nginx = behind_nginx
    site.commit_change({**release("2"), **INCOMPATIBLE_MIGRATION}, "Release 2 with a NOT NULL column")
    load = Load(nginx)
    try:
        finished = deploy(site)
    finally:
        load.stop()
    assert finished.returncode == 0, failure_text(finished)
    record = last_record(site)
    assert record["record"]["strategy"] == "stop-first"
    stages = [stage["name"] for stage in record["stages"]]
    assert stages.index("route") == stages.index("verify") + 1
    assert load.failures == []
    statuses = {status for status, _ in load.answers}
    assert 503 in statuses and statuses <= {200, 503}
    status, _, body = nginx.get()
    assert status == 200 and "release 2" in body


def test_a_failed_health_check_rolls_back_behind_the_maintenance_answer_and_gives_the_old_release_the_traffic_again(behind_nginx):
    site, nginx = behind_nginx
    site.commit_change({**release("2"), **health_fails()}, "Release 2 that fails its health check")
    load = Load(nginx)
    try:
        finished = deploy(site, "--health-retries", "2", "--health-delay", "0.5")
    finally:
        load.stop()
    assert finished.returncode == 1, failure_text(finished)
    stages = [stage["name"] for stage in last_record(site)["stages"]]
    assert stages[-2:] == ["verify health", "route traffic"]
    assert load.failures == []
    assert {status for status, _ in load.answers} <= {200, 503}
    status, _, body = nginx.get()
    assert status == 200 and "release 1" in body


def test_a_deploy_killed_in_its_maintenance_window_leaves_503s_and_the_next_rollback_gives_the_traffic_back(behind_nginx):
    site, nginx = behind_nginx
    site.commit_change({**release("2"), **health_fails()}, "Release 2: its health stage is slow to fail")
    killed = subprocess.Popen(
        [sys.executable, "manage.py", "deploy", "--noinput", "--health-retries", "50", "--health-delay", "0.5"],
        cwd=site.production,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for(lambda: any(s["name"] == "health" for r in records(site) for s in r["stages"]), timeout=180)
    os.kill(killed.pid, signal.SIGKILL)
    killed.wait()

    # Stopped mid-window: the proxy keeps answering for the site, never a refused connection.
    status, headers, _ = nginx.get()
    assert status == 503 and headers["Retry-After"] == "7"
    shown = manage(site, "rollback", "--status")
    assert "Proxy: answering 503 with its maintenance page" in shown.stdout, failure_text(shown)

    recovered = manage(site, "rollback", "--quick", "--noinput")
    assert recovered.returncode == 0, failure_text(recovered)
    assert [stage["name"] for stage in last_record(site)["stages"]][-1] == "route traffic"
    status, _, body = nginx.get()
    assert status == 200 and "release 1" in body
