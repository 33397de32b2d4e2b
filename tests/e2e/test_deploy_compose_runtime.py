"""``manage.py deploy`` end to end with the compose runtime: a real git origin, a production
checkout served by the compose ``web`` service on a real Docker engine, its database a fresh
PostgreSQL database.  The same scenarios as test_deploy_commands_runtime.py, where Docker matters."""

import subprocess

import pytest

from tests.e2e.helpers import (
    assert_rollback_failed,
    database_records,
    deploy,
    deploy_a_release_that_cannot_start_again,
    events,
    failure_text,
    last_record,
    serve_release_1_on_compose,
)
from tests.fixtures.sample_site import (
    broken_dockerfile,
    collectstatic_fails,
    data_changing_migration,
    exits_at_start,
    failing_migration,
    health_fails,
    logs_an_error,
    postgres_url,
    release,
)

pytestmark = [pytest.mark.docker, pytest.mark.postgres, pytest.mark.slow]


@pytest.fixture
def serving_release_1(sample_site, docker_engine, postgres_database):
    """Production at release 1 under Compose, migrated, serving, with two notes: the state before each deploy."""
    ops = serve_release_1_on_compose(sample_site, docker_engine, postgres_url(postgres_database))
    assert sample_site.get("/") == (200, "release 1\nnotes 2\n")
    return ops


def web_container(site, compose_command, template: str) -> str:
    """``compose ps`` of the web service's container, formatted by ``template``."""
    finished = subprocess.run(
        [*compose_command, "ps", "--all", "--format", template, "web"],
        cwd=site.production,
        capture_output=True,
        text=True,
        check=True,
    )
    return finished.stdout.strip()


def web_container_state(site, compose_command) -> tuple[str, str]:
    """(state, health) of the web service's container, as the Docker engine reports them."""
    state, _, health = web_container(site, compose_command, "{{.State}} {{.Health}}").partition(" ")
    return state, health


def assert_rolled_back(site, compose_command, finished, failed_stage, restored: bool):
    assert finished.returncode == 1, failure_text(finished)
    assert site.production_head() == site.initial_sha
    assert site.get("/") == (200, "release 1\nnotes 2\n")
    assert web_container_state(site, compose_command) == ("running", "healthy")
    snapshot = last_record(site)
    assert snapshot["record"]["status"] == "rolled_back"
    assert snapshot["record"]["failed_stage"] == failed_stage
    assert ("restore database" in [stage["name"] for stage in snapshot["stages"]]) is restored
    assert events(site)[-2:] == ["ERROR", "ROLLBACK_SUCCESS"]
    assert site.notes() == ["first", "second"]


def test_a_good_release_deploys_on_compose_and_is_recorded(sample_site, serving_release_1, docker_engine):
    new_sha = sample_site.commit_change(release("2"), "Release 2")

    finished = deploy(sample_site)

    assert finished.returncode == 0, failure_text(finished)
    assert sample_site.production_head() == new_sha
    assert sample_site.get("/") == (200, "release 2\nnotes 2\n")
    assert web_container_state(sample_site, docker_engine) == ("running", "healthy")
    snapshot = last_record(sample_site)
    record = snapshot["record"]
    assert record["status"] == "succeeded"
    assert (record["from_commit"], record["to_commit"]) == (sample_site.initial_sha, new_sha)
    assert record["backup_name"].startswith("backup_") and (sample_site.production / "backups" / record["backup_name"]).exists()
    assert [stage["name"] for stage in snapshot["stages"]] == [
        "backup",
        "checkout",
        "build",
        "collectstatic",
        "stop",
        "migrate",
        "start",
        "health",
        "verify",
        "cleanup",
        "prune images",
    ]
    assert events(sample_site) == ["INFO", "SUCCESS"]
    assert database_records(sample_site)[-1]["status"] == "succeeded"


def test_a_dockerfile_that_fails_to_build_is_rolled_back_without_a_restore(sample_site, serving_release_1, docker_engine):
    serving_container = web_container(sample_site, docker_engine, "{{.ID}}")
    sample_site.commit_change(broken_dockerfile(), "Release whose image cannot build")
    finished = deploy(sample_site)
    assert_rolled_back(sample_site, docker_engine, finished, "build", restored=False)
    assert "a-file-that-does-not-exist" in last_record(sample_site)["record"]["error"]
    # The previous release was never stopped: the same container still serves.
    assert web_container(sample_site, docker_engine, "{{.ID}}") == serving_container


def test_a_container_that_exits_at_start_is_rolled_back(sample_site, serving_release_1, docker_engine):
    sample_site.commit_change(exits_at_start(), "Release that cannot start")
    # `compose up --wait` sees the container exit, so the start stage itself fails.
    assert_rolled_back(sample_site, docker_engine, deploy(sample_site), "start", restored=True)


def test_a_failing_health_check_after_a_data_changing_migration_restores_the_database(sample_site, serving_release_1, docker_engine):
    sample_site.commit_change({**data_changing_migration(), **health_fails()}, "Release that rewrites notes and is unhealthy")

    finished = deploy(sample_site)

    assert_rolled_back(sample_site, docker_engine, finished, "health", restored=True)
    # The migration did rewrite the notes (inside the web service) before the restore brought them back.
    [migrate] = [stage for stage in last_record(sample_site)["stages"] if stage["name"] == "migrate"]
    assert migrate["status"] == "succeeded" and "Applying notes.0002_change_notes... OK" in migrate["output_tail"]
    # The audit trail survived the restore of a backup taken before the deploy began.
    in_database = database_records(sample_site)
    assert in_database[-1]["status"] == "rolled_back"
    assert "restore database" in in_database[-1]["stages"]


def test_an_error_pattern_in_the_service_logs_is_rolled_back(sample_site, serving_release_1, docker_engine):
    sample_site.commit_change(logs_an_error(), "Release that logs a traceback")
    finished = deploy(sample_site)
    assert_rolled_back(sample_site, docker_engine, finished, "verify", restored=True)
    error = last_record(sample_site)["record"]["error"]
    assert "web | " in error and ("CRITICAL" in error or "Traceback" in error)


def test_a_migration_that_raises_inside_the_web_service_is_rolled_back(sample_site, serving_release_1, docker_engine):
    sample_site.commit_change(failing_migration(), "Release with a failing migration")
    finished = deploy(sample_site)
    assert_rolled_back(sample_site, docker_engine, finished, "migrate", restored=True)
    assert "this migration fails on purpose" in last_record(sample_site)["record"]["error"]


def test_collectstatic_failing_in_a_one_off_container_is_rolled_back_while_the_old_release_keeps_serving(
    sample_site, serving_release_1, docker_engine
):
    serving_container = web_container(sample_site, docker_engine, "{{.ID}}")
    sample_site.commit_change(collectstatic_fails(), "Release whose static files cannot be collected")
    # It runs before the old release stops and before any migration: nothing to restore.
    assert_rolled_back(sample_site, docker_engine, deploy(sample_site), "collectstatic", restored=False)
    assert web_container(sample_site, docker_engine, "{{.ID}}") == serving_container


def test_a_rollback_whose_previous_release_cannot_start_exits_2(sample_site, serving_release_1, docker_engine):
    # Release A's image copies the host file in; rebuilt without it, release A cannot start.
    release_a, urls = deploy_a_release_that_cannot_start_again(sample_site)
    # Its kept image would still start (the rollback would succeed): gone, the rollback must rebuild.
    kept = f"{serving_release_1['COMPOSE_PROJECT']}-web:{release_a[:12]}"
    assert subprocess.run(["docker", "image", "rm", kept], capture_output=True).returncode == 0
    env_file = sample_site.production / ".env"  # and waiting 90 s to see that would only slow the suite
    env_file.write_text(env_file.read_text().replace("DEPLOY_OPS_START_TIMEOUT='90'", "DEPLOY_OPS_START_TIMEOUT='25'"))
    sample_site.commit_change({"sitecfg/urls.py": urls, **health_fails()}, "Release B: unhealthy")

    failed = assert_rollback_failed(sample_site, deploy(sample_site), release_a)

    # Compose reports the unhealthy container at `up --wait` or, past its wait, the health probe does.
    assert failed[0] == "health" and failed[1] in ("start services", "verify health") and len(failed) == 2
