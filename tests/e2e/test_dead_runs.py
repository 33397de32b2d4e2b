"""Nothing keeps running after a deploy dies (issue 9, item 2): ``kill -9`` of ``deploy`` during a
slow migration, then the next run.  The commands runtime (the migration is a host process) and
Compose (it runs inside a container), each with a real database."""

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.e2e.helpers import deploy, failure_text, manage, records, serve_release_1_on_compose, wait_for
from tests.e2e.test_deploy_commands_runtime import serving_release_1 as serving_release_1_on_the_host
from tests.fixtures.sample_site import postgres_url, slow_data_changing_migration

pytestmark = pytest.mark.slow

MIGRATION_SECONDS = 12


def kill_the_deploy_during_its_migration(site) -> str:
    """Starts a deploy of a release whose migration sleeps, then rewrites every note; kill -9 it once
    the migration runs.  Returns the id of the record the dead deploy left."""
    site.commit_change(slow_data_changing_migration(MIGRATION_SECONDS), "Release 2: a slow data migration")
    deploying = subprocess.Popen(
        [sys.executable, "manage.py", "deploy", "--noinput"], cwd=site.production, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    wait_for(lambda: any(s["name"] == "migrate" for r in records(site) for s in r["stages"]), timeout=300, interval=0.2)
    time.sleep(2)  # the migration is under way (in its sleep), not merely about to start
    os.kill(deploying.pid, signal.SIGKILL)
    deploying.wait()
    return records(site)[-1]["record"]["id"]


def assert_the_orphan_was_stopped_before_the_rollback_changed_anything(site, dead_record: str) -> None:
    status = manage(site, "rollback", "--status")
    assert status.returncode == 0, failure_text(status)
    assert "Work of a run that died is still going on" in status.stdout and "migrate" in status.stdout, status.stdout
    refused = deploy(site)
    assert refused.returncode == 3, failure_text(refused)
    assert "Work of the run that died is still going on" in refused.stderr and "migrate" in refused.stderr

    finished = manage(site, "rollback", "--quick", "--noinput")

    assert finished.returncode == 0, failure_text(finished)
    assert "Stopped, left running by a run that died" in finished.stdout
    assert site.production_head() == site.initial_sha
    time.sleep(MIGRATION_SECONDS)  # long enough for a migration that went on to have committed
    assert site.notes() == ["first", "second"]
    dead = next(snapshot["record"] for snapshot in records(site) if snapshot["record"]["id"] == dead_record)
    assert (dead["status"], dead["failed_stage"]) == ("interrupted", "migrate")
    after = manage(site, "rollback", "--status")
    assert "Work of a run that died" not in after.stdout


def test_a_host_migration_left_by_a_killed_deploy_is_stopped_by_the_next_run_first(sample_site):
    serving_release_1_on_the_host(sample_site)
    dead_record = kill_the_deploy_during_its_migration(sample_site)
    assert_the_orphan_was_stopped_before_the_rollback_changed_anything(sample_site, dead_record)


@pytest.mark.docker
@pytest.mark.postgres
def test_a_container_migration_left_by_a_killed_deploy_is_stopped_by_the_next_run_first(sample_site, docker_engine, postgres_database):
    serve_release_1_on_compose(sample_site, docker_engine, postgres_url(postgres_database))

    dead_record = kill_the_deploy_during_its_migration(sample_site)

    assert_the_orphan_was_stopped_before_the_rollback_changed_anything(sample_site, dead_record)
