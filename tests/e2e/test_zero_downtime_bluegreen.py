"""Blue/green behind a real nginx on loopback, the sample site on Compose (PostgreSQL): the new
release starts in a slot of its own beside the serving one (two loopback ports), is checked
directly, and only then does the proxy switch; the old release is stopped after its drain."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys

import pytest

from tests.e2e.helpers import deploy, failure_text, last_record, manage, records, start_release_1_with_a_note, wait_for
from tests.fixtures.docker import compose_down
from tests.fixtures.environment import skip_or_fail
from tests.fixtures.sample_site import flags, free_port, health_fails, postgres_url, release
from tests.test_proxy_nginx import Load, Nginx, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.docker]

SLOTS = ("blue", "green")

COMPATIBLE_MIGRATION = {
    # A nullable column: the release from before it keeps working on the new schema.
    "notes/migrations/0002_note_tag.py": """from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("notes", "0001_initial")]
    operations = [migrations.AddField("note", "tag", models.TextField(null=True))]
""",
}

AFTER_SWITCH_MIGRATION = {
    # The contract step: the old release would still write the column, so it goes once that release is gone.
    "notes/migrations/0002_drop_text.py": """from django.db import migrations


class Migration(migrations.Migration):
    deploy_ops_after_switch = True
    dependencies = [("notes", "0001_initial")]
    operations = [migrations.RunSQL("CREATE TABLE notes_after_switch (id integer)", "DROP TABLE notes_after_switch")]
""",
}


def containers(project: str) -> list[str]:
    listed = subprocess.run(
        ["docker", "ps", "--format", "{{.Names}}", "--filter", f"label=com.docker.compose.project={project}"],
        capture_output=True,
        text=True,
    )
    return listed.stdout.split()


@pytest.fixture
def blue_green(sample_site, docker_engine, postgres_database, tmp_path):
    """Release 1 serving as the project's own web service behind nginx, with two slots configured;
    yields (site, nginx, project, slot addresses)."""
    if shutil.which("nginx") is None:
        skip_or_fail("nginx is not installed: run `bash .ci/nginx`")
    address = f"127.0.0.1:{sample_site.web_port}"
    nginx = Nginx(tmp_path / "nginx", address)
    ports = {slot: free_port() for slot in SLOTS}
    slots = {
        slot: {
            "ADDRESS": f"127.0.0.1:{port}",
            "HEALTH_CHECK_URL": f"http://127.0.0.1:{port}/health/",
            "ENVIRONMENT": {"WEB_PORT": str(port)},
        }
        for slot, port in ports.items()
    }
    proxy = {
        "KIND": "nginx",
        "ROUTE_FILE": str(nginx.folder / "route.conf"),
        "ADDRESS": address,
        "RELOAD_COMMAND": [*nginx.base, "-s", "reload"],
        "TEST_COMMAND": [*nginx.base, "-t", "-q"],
        "PID_FILE": str(nginx.folder / "nginx.pid"),
        "DRAIN_TIMEOUT": 10,
        "RETRY_AFTER": 7,
        "SLOTS": slots,
    }
    ops = sample_site.use_compose(
        docker_engine, postgres_url(postgres_database), HEALTH_CHECK_RETRIES=10, HEALTH_CHECK_DELAY=1, PROXY=proxy
    )
    project = ops["COMPOSE_PROJECT"]
    start_release_1_with_a_note(sample_site, docker_engine)
    assert wait_until(lambda: nginx.get()[0] == 200, timeout=30)
    yield sample_site, nginx, project, {slot: config["ADDRESS"] for slot, config in slots.items()}
    nginx.stop()
    for slot in SLOTS:
        compose_down(docker_engine, sample_site.production, f"{project}-{slot}")


def test_a_zero_downtime_deploy_under_load_fails_no_request_and_stops_the_old_release_after_the_switch(blue_green):
    site, nginx, project, addresses = blue_green
    site.commit_change(release("2"), "Release 2")
    planned = deploy(site, "--dry-run")
    assert planned.returncode == 0, failure_text(planned)
    assert "Strategy: zero-downtime" in planned.stdout and f"-p {project}-blue up --detach --no-deps --no-build" in planned.stdout
    assert (
        f"slot blue ({addresses['blue']})" in planned.stdout
        and f"retire old release: docker compose -p {project} stop --timeout 5 web" in planned.stdout
    )
    load = Load(nginx)
    try:
        finished = deploy(site)
    finally:
        load.stop()
    assert finished.returncode == 0, failure_text(finished)
    record = last_record(site)
    assert record["record"]["strategy"] == "zero-downtime"
    stages = [stage["name"] for stage in record["stages"]]
    assert (
        stages.index("migrate")
        < stages.index("start")
        < stages.index("health")
        < stages.index("switch")
        < stages.index("retire old release")
    )
    assert load.failures == []
    assert {status for status, _ in load.answers} == {200}
    bodies = [body for _, body in load.answers]
    assert any("release 1" in body for body in bodies) and "release 2" in bodies[-1]
    assert nginx.proxy().routed_to() == addresses["blue"]
    assert containers(f"{project}-blue") and not containers(project)

    # The next one starts in the other slot, and the first slot goes once the proxy left it.
    site.commit_change({**release("3"), **COMPATIBLE_MIGRATION}, "Release 3 with a nullable column")
    load = Load(nginx)
    try:
        finished = deploy(site)
    finally:
        load.stop()
    assert finished.returncode == 0, failure_text(finished)
    assert load.failures == [] and {status for status, _ in load.answers} == {200}
    assert nginx.proxy().routed_to() == addresses["green"]
    assert containers(f"{project}-green") and not containers(f"{project}-blue")
    assert "release 3" in nginx.get()[2]

    # Back to release 2 without downtime: its images are kept and the column since is nullable,
    # so it starts beside release 3, the proxy switches, and the database is not restored.
    site.manage("shell", "-c", "from notes.models import Note; Note.objects.create(text='written by release 3')")
    load = Load(nginx)
    try:
        finished = manage(site, "rollback", "--quick", "--noinput")
    finally:
        load.stop()
    assert finished.returncode == 0, failure_text(finished)
    record = last_record(site)["record"]
    stages = [stage["name"] for stage in last_record(site)["stages"]]
    assert stages == [
        "revert code",
        "restore images",
        "collect static",
        "start beside",
        "verify health",
        "switch traffic",
        "retire old release",
    ]
    assert record["strategy"] == "zero-downtime"
    assert "The database is not restored" in record["rollback_reason"] and "notes.0002_note_tag" in record["rollback_reason"]
    assert load.failures == [] and {status for status, _ in load.answers} == {200}
    assert "release 2" in nginx.get()[2] and nginx.proxy().routed_to() == addresses["blue"]
    assert site.notes() == ["first", "written by release 3"]


def test_a_failed_health_check_under_load_removes_the_new_release_never_switches_and_leaves_the_database_alone(blue_green):
    site, nginx, project, addresses = blue_green
    site.commit_change({**release("2"), **health_fails()}, "Release 2 that fails its health check")
    load = Load(nginx)
    try:
        finished = deploy(site, "--health-retries", "2", "--health-delay", "0.5")
    finally:
        load.stop()
    assert finished.returncode == 1, failure_text(finished)
    record = last_record(site)
    assert record["record"]["strategy"] == "zero-downtime"
    stages = [stage["name"] for stage in record["stages"]]
    assert "remove new release" in stages and "restore database" not in stages and "stop services" not in stages
    assert "switch" not in stages
    assert "not restored" in record["record"]["rollback_reason"]
    assert load.failures == []
    assert {status for status, _ in load.answers} == {200}
    assert all("release 1" in body for _, body in load.answers)
    assert nginx.proxy().routed_to() == f"127.0.0.1:{site.web_port}"
    assert not containers(f"{project}-blue") and containers(project)
    assert site.notes() == ["first"]


def test_an_after_switch_migration_runs_once_the_old_release_is_gone(blue_green):
    site, nginx, project, addresses = blue_green
    site.commit_change({**release("2"), **AFTER_SWITCH_MIGRATION}, "Release 2 with a contract step")
    finished = deploy(site)
    assert finished.returncode == 0, failure_text(finished)
    stages = [stage["name"] for stage in last_record(site)["stages"]]
    assert stages.index("switch") < stages.index("retire old release") < stages.index("migrate after switch")
    applied = json.loads(
        site.manage(
            "shell",
            "--verbosity",
            "0",
            "-c",
            "import json; from django.db import connection; print(json.dumps(connection.introspection.table_names()))",
        )
    )
    assert "notes_after_switch" in applied
    assert nginx.get()[0] == 200


def test_a_deploy_killed_between_the_green_start_and_the_switch_leaves_the_proxy_on_the_old_release_and_the_next_run_removes_the_orphan(
    blue_green,
):
    site, nginx, project, addresses = blue_green
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
    assert containers(f"{project}-blue"), "the new release's slot should be running when the run is killed"
    status, _, body = nginx.get()
    assert status == 200 and "release 1" in body

    site.commit_change({**release("3"), **flags()}, "Release 3, healthy again")
    # --force: the interrupted deploy on record fails the serving release's health check.
    finished = deploy(site, "--break-lock", "--force")
    assert finished.returncode == 0, failure_text(finished)
    assert "Removed the slot blue" in finished.stdout
    status, _, body = nginx.get()
    assert status == 200 and "release 3" in body
    assert nginx.proxy().routed_to() == addresses["blue"]


def test_ctrl_c_before_the_switch_removes_the_new_release_and_the_old_one_never_stops_serving(blue_green):
    from tests.e2e.test_ctrl_c import interrupt_the_deploy_during

    site, nginx, project, addresses = blue_green
    site.commit_change({**release("2"), **health_fails()}, "Release 2: its health stage is slow to fail")
    load = Load(nginx)
    try:
        interrupt_the_deploy_during(site, "health", "--health-retries", "50", "--health-delay", "0.5")
    finally:
        load.stop()
    stages = [stage["name"] for stage in last_record(site)["stages"]]
    assert "remove new release" in stages and "restore database" not in stages
    assert load.failures == [] and all("release 1" in body for _, body in load.answers)
    assert not containers(f"{project}-blue") and nginx.proxy().routed_to() == f"127.0.0.1:{site.web_port}"
