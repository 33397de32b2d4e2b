"""RUNTIME = "swarm" (issue 13) on a real single-node Docker Swarm with PostgreSQL: the sample site
deployed as a stack of two built services (web, and a worker that only has to keep running), so
that "stack-wide" is seen: a rollback brings back the service whose update went well too."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from deploy_ops.runtimes import swarm_stack
from tests.e2e.helpers import deploy, failure_text, last_record, manage, records, wait_for
from tests.e2e.test_ctrl_c import assert_rolled_back_by_ctrl_c, interrupt_the_deploy_during
from tests.e2e.test_dead_runs import (
    assert_the_orphan_was_stopped_before_the_rollback_changed_anything,
    kill_the_deploy_during_its_migration,
)
from tests.fixtures.sample_site import data_changing_migration, exits_at_start, failing_migration, postgres_url, release
from tests.fixtures.swarm import previous_image, serve_release_1_on_swarm, service_images

pytestmark = [pytest.mark.docker, pytest.mark.postgres, pytest.mark.slow]

WORKER = """
  worker:
    build: .
    network_mode: host
    working_dir: /app
    command: ["${PYTHON_VENV:?}/bin/python", "-c", "import time; time.sleep(10**9)"]
    volumes:
      - /usr:/usr:ro
      - /lib:/lib:ro
      - /lib64:/lib64:ro
      - ${PYTHON_HOME:?}:${PYTHON_HOME}:ro
      - ${PYTHON_VENV}:${PYTHON_VENV}:ro
    stop_grace_period: 1s
"""


def at(project: str, sha: str) -> dict[str, str]:
    """Every service of the stack pinned to the release ``sha``'s own tags."""
    return {service: f"{project}-{service}:{sha[:12]}" for service in ("web", "worker")}


@pytest.fixture
def serving_release_1(sample_site, swarm_engine, postgres_database):
    """Release 1 (the sample site with a worker) serving on the swarm; returns (DEPLOY_OPS, release 1's sha)."""
    compose = (sample_site.work / "compose.yaml").read_text() + WORKER
    release_1 = sample_site.commit_change({"compose.yaml": compose}, "Release 1, with a worker")
    sample_site.checkout_latest()
    ops = serve_release_1_on_swarm(sample_site, swarm_engine, postgres_url(postgres_database))
    assert service_images(ops["COMPOSE_PROJECT"]) == at(ops["COMPOSE_PROJECT"], release_1)
    return ops, release_1


def test_a_good_deploy_moves_every_service_to_the_new_tags_and_rollback_quick_brings_the_stack_and_database_back(
    sample_site, serving_release_1
):
    ops, release_1 = serving_release_1
    project = ops["COMPOSE_PROJECT"]
    release_2 = sample_site.commit_change({**data_changing_migration(), **release("2")}, "Release 2")
    planned = deploy(sample_site, "--dry-run")
    assert planned.returncode == 0, failure_text(planned)
    assert f"start: {sys.executable} {swarm_stack.__file__} deploy --stack {project} " in planned.stdout
    assert "stop:" not in planned.stdout  # the update replaces the tasks

    finished = deploy(sample_site)

    assert finished.returncode == 0, failure_text(finished)
    assert service_images(project) == at(project, release_2)
    assert sample_site.get("/") == (200, "release 2\nnotes 2\n")
    assert sample_site.notes() == ["changed by 0002", "changed by 0002"]
    snapshot = last_record(sample_site)
    assert snapshot["record"]["status"] == "succeeded"
    assert snapshot["record"]["images"].split() == sorted(at(project, release_2).values())
    [start] = [stage for stage in snapshot["stages"] if stage["name"] == "start"]
    assert f"stack {project} converged" in start["output_tail"]
    stages = [stage["name"] for stage in snapshot["stages"]]
    assert stages.index("migrate") < stages.index("start")

    # One release back by hand: the same stack-wide start, and the backup the deploy took.
    finished = manage(sample_site, "rollback", "--quick", "--noinput")

    assert finished.returncode == 0, failure_text(finished)
    assert service_images(project) == at(project, release_1)
    assert sample_site.production_head() == release_1
    assert sample_site.notes() == ["first", "second"]
    assert sample_site.get("/") == (200, "release 1\nnotes 2\n")
    [restore] = [stage for stage in last_record(sample_site)["stages"] if stage["name"] == "restore images"]
    assert restore["output_tail"].startswith("started from the kept images, no build")


def test_a_release_whose_new_tasks_never_become_healthy_brings_the_whole_stack_back_and_the_database(sample_site, serving_release_1):
    ops, release_1 = serving_release_1
    project = ops["COMPOSE_PROJECT"]
    # The worker's update goes well; web's new task exits at start, again and again.
    release_2 = sample_site.commit_change(
        {**data_changing_migration(), **exits_at_start(), **release("2")}, "Release 2 cannot start its web service"
    )

    finished = deploy(sample_site)

    assert finished.returncode == 1, failure_text(finished)
    snapshot = last_record(sample_site)
    record = snapshot["record"]
    assert (record["status"], record["failed_stage"]) == ("rolled_back", "start")
    # The record names the stack, its services and the task that failed.
    assert f"Stack {project}: its update failed" in record["error"]
    assert f"{project}_web" in record["error"] and f"{project}_worker" in record["error"]
    assert f"task {project}_web.1 (" in record["error"] and "failed" in record["error"]
    assert service_images(project) == at(project, release_1)
    # Swarm alone would have left the worker on release 2: the rollback's stack deploy moved it back.
    assert previous_image(project, "worker") == at(project, release_2)["worker"]
    assert sample_site.production_head() == release_1
    assert sample_site.notes() == ["first", "second"]
    assert sample_site.get("/") == (200, "release 1\nnotes 2\n")
    rolled_back = [stage["name"] for stage in snapshot["stages"] if stage["status"] == "succeeded"]
    assert {"stop services", "restore database", "restore images", "start services", "verify health"} <= set(rolled_back)


def test_a_failed_migration_job_leaves_the_stack_untouched_and_restores_the_database(sample_site, serving_release_1):
    ops, release_1 = serving_release_1
    project = ops["COMPOSE_PROJECT"]
    before = service_ids(project)
    sample_site.commit_change(
        {**data_changing_migration(), **failing_migration(name="0003_fails", after="0002_change_notes"), **release("2")},
        "Release 2, whose migration fails",
    )

    finished = deploy(sample_site)

    assert finished.returncode == 1, failure_text(finished)
    record = last_record(sample_site)["record"]
    assert (record["status"], record["failed_stage"]) == ("rolled_back", "migrate")
    assert "this migration fails on purpose" in record["error"]
    assert service_images(project) == at(project, release_1)
    assert service_ids(project) == before  # the same services, never removed and created again
    assert sample_site.notes() == ["first", "second"]
    assert sample_site.get("/") == (200, "release 1\nnotes 2\n")


def test_a_migration_left_by_a_killed_deploy_is_stopped_by_the_next_run_first(sample_site, swarm_engine, postgres_database):
    ops = serve_release_1_on_swarm(sample_site, swarm_engine, postgres_url(postgres_database))

    dead_record = kill_the_deploy_during_its_migration(sample_site)

    assert_the_orphan_was_stopped_before_the_rollback_changed_anything(sample_site, dead_record)
    assert service_images(ops["COMPOSE_PROJECT"]) == {"web": f"{ops['COMPOSE_PROJECT']}-web:{sample_site.initial_sha[:12]}"}


def test_a_deploy_killed_during_the_stack_update_is_closed_and_undone_by_the_next_run(sample_site, swarm_engine, postgres_database):
    ops = serve_release_1_on_swarm(sample_site, swarm_engine, postgres_url(postgres_database))
    project = ops["COMPOSE_PROJECT"]
    sample_site.commit_change({**data_changing_migration(), **release("2")}, "Release 2")
    deploying = subprocess.Popen(
        [sys.executable, "manage.py", "deploy", "--noinput"],
        cwd=sample_site.production,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for(lambda: any(s["name"] == "start" for r in records(sample_site) for s in r["stages"]), timeout=300, interval=0.2)
    waiter = wait_for(lambda: converge_waiters(project), timeout=30, interval=0.1)
    os.kill(deploying.pid, signal.SIGKILL)
    deploying.wait()

    finished = manage(sample_site, "rollback", "--quick", "--noinput")

    assert finished.returncode == 0, failure_text(finished)
    assert "Stopped, left running by a run that died" in finished.stdout
    assert not converge_waiters(project), f"the dead run's wait on the stack ({waiter}) still runs"
    dead = records(sample_site)[-2]["record"]
    assert (dead["status"], dead["failed_stage"]) == ("interrupted", "start")
    assert service_images(project) == {"web": f"{project}-web:{sample_site.initial_sha[:12]}"}
    assert sample_site.notes() == ["first", "second"]
    assert sample_site.get("/") == (200, "release 1\nnotes 2\n")


def converge_waiters(stack: str) -> list[str]:
    """The pids of swarm_stack.py processes deploying ``stack``."""
    found = subprocess.run(["pgrep", "-f", f"swarm_stack.py deploy --stack {stack} "], capture_output=True, text=True)
    return found.stdout.split()


def service_ids(stack: str) -> list[str]:
    listed = subprocess.run(
        ["docker", "service", "ls", "--quiet", "--filter", f"label=com.docker.stack.namespace={stack}"], capture_output=True, text=True
    )
    return sorted(listed.stdout.split())


def test_ctrl_c_during_the_stack_update_rolls_the_stack_and_database_back_and_exits_1(sample_site, swarm_engine, postgres_database):
    # A long monitor window keeps the start stage running until the Ctrl-C comes.
    ops = serve_release_1_on_swarm(sample_site, swarm_engine, postgres_url(postgres_database), SWARM_UPDATE_MONITOR=10)
    project = ops["COMPOSE_PROJECT"]
    sample_site.commit_change({**data_changing_migration(), **release("2")}, "Release 2")

    output = interrupt_the_deploy_during(sample_site, "start")

    assert_rolled_back_by_ctrl_c(sample_site, output, "start")
    assert service_images(project) == {"web": f"{project}-web:{sample_site.initial_sha[:12]}"}
    assert not converge_waiters(project)
