"""``manage.py deploy`` end to end with the commands runtime (no Docker): a real git origin,
a production checkout served by runserver under servectl, a real database (SQLite here,
PostgreSQL for the restore-proving scenario)."""

import os
import signal
import subprocess
import sys

import pytest

from tests.e2e.helpers import (
    assert_rollback_failed,
    database_records,
    deploy,
    deploy_a_release_that_cannot_start_again,
    events,
    failure_text,
    last_record,
    records,
    wait_for,
)
from tests.fixtures.sample_site import (
    collectstatic_fails,
    data_changing_migration,
    exits_at_start,
    failing_migration,
    flags,
    health_fails,
    logs_an_error,
    postgres_url,
    release,
)

pytestmark = pytest.mark.slow


def serving_release_1(site, database_url="sqlite:///db.sqlite3", **overrides):
    """Production at release 1, migrated, serving, with two notes: the state before each deploy."""
    ops = site.use_commands(database_url, HEALTH_CHECK_RETRIES=5, HEALTH_CHECK_DELAY=0.5, **overrides)
    site.manage("migrate", "--verbosity", "0")
    site.manage("shell", "-c", "from notes.models import Note; Note.objects.create(text='first'); Note.objects.create(text='second')")
    subprocess.run(ops["COMMANDS"]["start"], cwd=site.production, check=True, capture_output=True)
    wait_for(lambda: site.get("/")[0] == 200, timeout=30)
    return ops


def assert_rolled_back(site, finished, failed_stage, restored: bool):
    assert finished.returncode == 1, failure_text(finished)
    assert site.production_head() == site.initial_sha
    status, body = site.get("/")
    assert status == 200 and "release 1" in body
    record = last_record(site)["record"]
    assert record["status"] == "rolled_back"
    assert record["failed_stage"] == failed_stage
    stage_names = [stage["name"] for stage in last_record(site)["stages"]]
    assert ("restore database" in stage_names) is restored
    assert events(site)[-2:] == ["ERROR", "ROLLBACK_SUCCESS"]
    assert site.notes() == ["first", "second"]


def test_a_good_release_deploys_and_is_recorded(sample_site):
    serving_release_1(sample_site)
    new_sha = sample_site.commit_change(release("2"), "Release 2")

    finished = deploy(sample_site)

    assert finished.returncode == 0, failure_text(finished)
    assert sample_site.production_head() == new_sha
    assert "release 2" in sample_site.get("/")[1]
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
    ]
    assert all(stage["status"] == "succeeded" and stage["duration"] is not None for stage in snapshot["stages"])
    assert events(sample_site) == ["INFO", "SUCCESS"]
    assert database_records(sample_site)[-1]["status"] == "succeeded"
    for stage in ("backup", "checkout", "migrate", "health", "verify"):
        assert f"{stage}: ok" in finished.stdout


def test_a_release_that_exits_at_start_is_rolled_back(sample_site):
    serving_release_1(sample_site)
    sample_site.commit_change(exits_at_start(), "Release that cannot start")
    # servectl notices the process die within its grace period, so the start stage itself fails.
    assert_rolled_back(sample_site, deploy(sample_site), "start", restored=True)


def test_a_failing_migration_is_rolled_back(sample_site):
    serving_release_1(sample_site)
    sample_site.commit_change(failing_migration(), "Release with a failing migration")
    finished = deploy(sample_site)
    assert_rolled_back(sample_site, finished, "migrate", restored=True)
    assert "this migration fails on purpose" in last_record(sample_site)["record"]["error"]


def test_collectstatic_failing_is_rolled_back(sample_site):
    serving_release_1(sample_site)
    sample_site.commit_change(collectstatic_fails(), "Release whose static files cannot be collected")
    # It runs before the old release stops and before any migration: nothing to restore.
    assert_rolled_back(sample_site, deploy(sample_site), "collectstatic", restored=False)


def test_an_error_pattern_in_the_logs_is_rolled_back(sample_site):
    serving_release_1(sample_site)
    sample_site.commit_change(logs_an_error(), "Release that logs a traceback")
    finished = deploy(sample_site)
    assert_rolled_back(sample_site, finished, "verify", restored=True)
    assert "CRITICAL" in last_record(sample_site)["record"]["error"] or "Traceback" in last_record(sample_site)["record"]["error"]


def test_a_failing_health_check_after_a_data_changing_migration_restores_the_database(sample_site, postgres_database):
    serving_release_1(sample_site, postgres_url(postgres_database))
    sample_site.commit_change({**data_changing_migration(), **health_fails()}, "Release that rewrites notes and is unhealthy")

    finished = deploy(sample_site)

    assert_rolled_back(sample_site, finished, "health", restored=True)
    # The audit trail survived the restore of a backup taken before the deploy began.
    in_database = database_records(sample_site)
    assert in_database[-1]["status"] == "rolled_back"
    assert "restore database" in in_database[-1]["stages"]


def test_an_unknown_ref_is_refused_before_anything_changes(sample_site):
    serving_release_1(sample_site)
    finished = deploy(sample_site, "--ref", "no-such-branch")
    assert finished.returncode == 3, failure_text(finished)
    assert "'no-such-branch' is not a branch" in finished.stderr
    assert sample_site.production_head() == sample_site.initial_sha
    assert not (sample_site.production / "backups").exists() or not list((sample_site.production / "backups").glob("backup_*"))


def test_no_rollback_leaves_the_failed_release_in_place(sample_site):
    serving_release_1(sample_site)
    new_sha = sample_site.commit_change(failing_migration(), "Release with a failing migration")
    finished = deploy(sample_site, "--no-rollback")
    assert finished.returncode == 2, failure_text(finished)
    assert sample_site.production_head() == new_sha
    assert last_record(sample_site)["record"]["status"] == "failed"
    assert events(sample_site)[-1] == "ERROR"


def test_rollback_disabled_in_settings_exits_2(sample_site):
    serving_release_1(sample_site, ROLLBACK_ENABLED=False)
    new_sha = sample_site.commit_change(health_fails(), "Unhealthy release")
    finished = deploy(sample_site, "--health-retries", "1")
    assert finished.returncode == 2, failure_text(finished)
    assert sample_site.production_head() == new_sha
    assert last_record(sample_site)["record"]["status"] == "failed"


def test_a_rollback_that_cannot_start_the_previous_release_exits_2(sample_site):
    serving_release_1(sample_site)
    release_a, urls = deploy_a_release_that_cannot_start_again(sample_site)
    sample_site.commit_change({"sitecfg/urls.py": urls, **health_fails()}, "Release B: unhealthy")

    failed = assert_rollback_failed(sample_site, deploy(sample_site), release_a)

    assert failed == ["health", "start services"]


def test_a_second_deploy_while_one_runs_exits_3_and_changes_nothing(sample_site):
    serving_release_1(sample_site)
    sample_site.commit_change(release("2"), "Release 2")
    first = subprocess.Popen(
        [sys.executable, "manage.py", "deploy", "--noinput"],
        cwd=sample_site.production,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lock = sample_site.production / ".deploy_ops" / "deploy.lock"
    wait_for(lock.exists, timeout=60, interval=0.01)
    backups_before = sorted((sample_site.production / "backups").glob("backup_*")) if (sample_site.production / "backups").exists() else []

    second = deploy(sample_site)

    assert second.returncode == 3, failure_text(second)
    assert "Another deploy or rollback is running" in second.stderr
    assert f"pid {first.pid}" in second.stderr
    first.communicate(timeout=300)
    assert first.returncode == 0
    assert len(records(sample_site)) == 1
    assert len(backups_before) <= 1


def test_a_deploy_killed_mid_stage_is_reported_and_not_run_over(sample_site):
    serving_release_1(sample_site)
    sample_site.commit_change(health_fails(), "Unhealthy release: its health stage is slow to fail")
    killed = subprocess.Popen(
        [sys.executable, "manage.py", "deploy", "--noinput", "--health-retries", "50", "--health-delay", "0.5"],
        cwd=sample_site.production,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for(lambda: any(s["name"] == "health" for r in records(sample_site) for s in r["stages"]), timeout=120)
    os.kill(killed.pid, signal.SIGKILL)
    killed.wait()

    refused = deploy(sample_site)
    assert refused.returncode == 3, failure_text(refused)
    assert "stale" in refused.stderr and "interrupted during stage 'health'" in refused.stderr

    sample_site.commit_change({**flags(), **release("3")}, "Release 3, healthy again")
    # The interrupted release still serves and fails its health check: deploying over it takes --force.
    forced = deploy(sample_site, "--break-lock", "--force")
    assert forced.returncode == 0, failure_text(forced)
    assert "Broke the stale lock" in forced.stdout
    statuses = [snapshot["record"]["status"] for snapshot in records(sample_site)]
    assert statuses == ["interrupted", "succeeded"]


def test_dry_run_prints_the_plan_and_changes_nothing(sample_site):
    serving_release_1(sample_site)
    new_sha = sample_site.commit_change({**release("2"), **data_changing_migration()}, "Release 2 with a migration")
    finished = deploy(sample_site, "--dry-run")
    assert finished.returncode == 0, failure_text(finished)
    assert f"{new_sha[:12]} Release 2 with a migration" in finished.stdout
    assert "notes.0002_change_notes" in finished.stdout
    assert "manage.py migrate --noinput" in finished.stdout
    assert sample_site.production_head() == sample_site.initial_sha
    assert records(sample_site) == []
    assert "release 1" in sample_site.get("/")[1]


def test_a_backup_that_cannot_be_written_refuses_the_deploy_and_changes_nothing(sample_site):
    serving_release_1(sample_site, BACKUP_DIR="backups-blocked/inner")
    (sample_site.production / "backups-blocked").write_text("a file where the backup folder should be")
    sample_site.commit_change(release("2"), "Release 2")

    finished = deploy(sample_site)

    assert finished.returncode == 3, failure_text(finished)
    assert "Backups cannot be written" in finished.stderr and "is a file, so the folder cannot be made" in finished.stderr
    assert sample_site.production_head() == sample_site.initial_sha
    # Found by the preflight: no record, no event, nothing for /health/ to turn red on.
    assert records(sample_site) == []
    assert events(sample_site) == []
    assert "release 1" in sample_site.get("/")[1]
    # A refusal is not an alarm: /health/'s LastDeployment does not hold it against the site.
    last_deployment = "from deploy_ops.health.checks import LastDeployment; LastDeployment().check_record(); print('ok')"
    assert sample_site.manage("shell", "--verbosity", "0", "-c", last_deployment).strip() == "ok"


def test_a_checkout_without_the_configured_remote_is_refused_with_exit_3(sample_site):
    serving_release_1(sample_site, GIT_REMOTE="upstream")
    finished = deploy(sample_site)
    assert finished.returncode == 3, failure_text(finished)
    assert "no git remote named 'upstream'" in finished.stderr
    assert records(sample_site) == []
