"""The health-check backends one by one, and the synchronous runner the deploy gates on."""

import gzip
import json
import subprocess
import sys
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone
from health_check.checks import Cache, Database
from health_check.exceptions import ServiceUnavailable, ServiceWarning

from deploy_ops.conf import ConfigurationError, ops_settings
from deploy_ops.exceptions import CommandFailed, HealthCheckFailed, ServiceError, ToolMissing
from deploy_ops.health.checks import (
    BackupDiskSpace,
    BackupFreshness,
    CheckOutcome,
    LastDeployment,
    MigrationsApplied,
    RunningCommit,
    ServicesRunning,
    configured_checks,
    deploy_gate_checks,
    require_healthy,
    run_checks,
)
from deploy_ops.models import DeploymentRecord
from deploy_ops.runtimes import ServiceRuntime, ServiceState

Kind = DeploymentRecord.Kind
Status = DeploymentRecord.Status


class FixedStatesRuntime(ServiceRuntime):
    """A runtime that reports given states (or raises a given error) and runs nothing."""

    name = "fixed"

    def __init__(self, states=(), error=None):
        super().__init__(".")
        self.states, self.error = list(states), error

    def service_states(self):
        if self.error:
            raise self.error
        return self.states

    def build_commands(self):
        return []

    start_commands = stop_commands = build_commands

    def manage_command(self, *arguments):
        raise NotImplementedError

    def logs_since(self, since):
        return ""


def record(kind=Kind.DEPLOY, status=Status.SUCCEEDED, age=timedelta(minutes=5), **fields):
    return DeploymentRecord.objects.create(kind=kind, status=status, started_at=timezone.now() - age, **fields)


def git(project, *arguments):
    return subprocess.run(
        ["git", "-c", "user.name=Test", "-c", "user.email=test@example.org", *arguments],
        cwd=project,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def commit(project, text):
    (project / "app.txt").write_text(text)
    git(project, "add", "app.txt")
    git(project, "commit", "-q", "-m", text)
    return git(project, "rev-parse", "HEAD")


# -- ServicesRunning ------------------------------------------------------------------------------
def test_services_running_passes_when_every_service_runs_and_is_healthy_or_has_no_healthcheck():
    runtime = FixedStatesRuntime([ServiceState("web", "running", "healthy"), ServiceState("proxy", "running", None)])
    ServicesRunning(runtime=runtime).run()


def test_services_running_names_a_stopped_service_and_its_exit_code():
    runtime = FixedStatesRuntime(
        [ServiceState("web", "running", "healthy"), ServiceState("db", "exited", detail="demo-db-1 exited with code 1", exit_code=1)]
    )
    with pytest.raises(ServiceUnavailable, match=r"^Unavailable: Service 'db' is exited, not running \(exit code 1\)\.$") as failed:
        ServicesRunning(runtime=runtime).run()
    assert "web" not in str(failed.value)


def test_services_running_names_a_service_that_has_no_container():
    runtime = FixedStatesRuntime([ServiceState("worker", "missing", detail="no container: it was never created")])
    with pytest.raises(ServiceUnavailable, match=r"^Unavailable: Service 'worker' is missing: no container was created for it\.$"):
        ServicesRunning(runtime=runtime).run()


def test_services_running_under_the_commands_runtime_shows_the_check_steps_exit_code_not_its_output(ops_dirs, settings):
    printed = f"DATABASE_URL=postgres://app:hunter2@db/site in {ops_dirs}/config"
    settings.DEPLOY_OPS = {
        **settings.DEPLOY_OPS,
        "RUNTIME": "commands",
        "COMMANDS": {"start": ["true"], "stop": ["true"], "check": [sys.executable, "-c", f"print({printed!r}); raise SystemExit(3)"]},
    }
    with pytest.raises(ServiceUnavailable) as failed:
        ServicesRunning().run()
    assert failed.value.message == "Service 'web' is stopped, not running (exit code 3)."


def test_services_running_names_an_unhealthy_and_a_still_starting_service():
    runtime = FixedStatesRuntime([ServiceState("web", "running", "unhealthy"), ServiceState("worker", "running", "starting")])
    with pytest.raises(ServiceUnavailable) as failed:
        ServicesRunning(runtime=runtime).run()
    assert "Service 'web' is running but its healthcheck reports unhealthy." in failed.value.message
    assert "Service 'worker' is running but its healthcheck has not passed yet (starting)." in failed.value.message


def test_services_running_without_the_docker_cli_is_a_warning_naming_the_tool_not_its_path():
    runtime = FixedStatesRuntime(error=ToolMissing("/opt/private/bin/docker", "Install Docker."))
    with pytest.raises(ServiceWarning) as warned:
        ServicesRunning(runtime=runtime).run()
    assert warned.value.message.startswith("The services cannot be inspected from here: 'docker' is not installed. ")
    assert "/opt/private" not in warned.value.message


def test_services_running_fails_when_the_runtime_cannot_list_services_naming_only_the_kind_of_error(caplog):
    runtime = FixedStatesRuntime(error=ServiceError("Cannot connect to the Docker daemon at unix:///run/private/docker.sock.\nmore"))
    with pytest.raises(ServiceUnavailable) as failed:
        ServicesRunning(runtime=runtime).run()
    assert failed.value.message == "The service runtime could not list the services (ServiceError); the server's log has the details."
    assert "unix:///run/private/docker.sock" in caplog.text


def test_a_failing_compose_command_shows_its_exit_code_not_its_command_line_or_output():
    failed_command = CommandFailed(
        ["docker", "compose", "-f", "/srv/site/compose.yml", "-p", "site", "config"],
        14,
        stderr_tail="open /srv/site/.env: permission denied",
    )
    with pytest.raises(ServiceUnavailable) as failed:
        ServicesRunning(runtime=FixedStatesRuntime(error=failed_command)).run()
    assert (
        failed.value.message
        == "The service runtime could not list the services (its command exited with code 14); the server's log has the details."
    )


def test_services_running_keeps_the_runtime_out_of_its_report():
    assert repr(ServicesRunning(runtime=FixedStatesRuntime())) == "ServicesRunning()"


# -- MigrationsApplied ----------------------------------------------------------------------------
@pytest.mark.django_db
def test_migrations_applied_passes_on_a_migrated_database():
    MigrationsApplied().check_plan()


@pytest.mark.django_db
def test_migrations_applied_names_a_migration_recorded_as_unapplied():
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM django_migrations WHERE app = 'sessions' AND name = '0001_initial'")
    with pytest.raises(ServiceUnavailable) as failed:
        MigrationsApplied().check_plan()
    assert failed.value.message == "1 migration(s) not applied to database 'default': sessions.0001_initial. Run `manage.py migrate`."


@pytest.mark.django_db
def test_migrations_applied_follows_the_database_both_ways_despite_its_cached_plan():
    MigrationsApplied().check_plan()
    with connection.cursor() as cursor:
        cursor.execute("SELECT id, applied FROM django_migrations WHERE app = 'sessions' AND name = '0001_initial'")
        row_id, applied = cursor.fetchone()
        cursor.execute("DELETE FROM django_migrations WHERE id = %s", [row_id])
    with pytest.raises(ServiceUnavailable, match="sessions.0001_initial"):
        MigrationsApplied().check_plan()
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO django_migrations (id, app, name, applied) VALUES (%s, 'sessions', '0001_initial', %s)", [row_id, applied]
        )
    MigrationsApplied().check_plan()


# -- LastDeployment -------------------------------------------------------------------------------
@pytest.mark.django_db
def test_last_deployment_passes_with_no_record_and_after_a_success():
    LastDeployment().check_record()
    record(status=Status.SUCCEEDED_WITH_WARNINGS, to_commit="a" * 40)
    LastDeployment().check_record()


@pytest.mark.django_db
def test_last_deployment_rollback_failed_is_unavailable_naming_the_stage():
    record(status=Status.SUCCEEDED, age=timedelta(days=1))
    record(status=Status.ROLLBACK_FAILED, to_commit="b" * 40, failed_stage="migrate")
    with pytest.raises(
        ServiceUnavailable, match=r"The last deploy \(to bbbbbbbbbbbb, .*\) failed at stage 'migrate' and its rollback failed too"
    ):
        LastDeployment().check_record()


@pytest.mark.django_db
def test_last_deployment_failed_without_rollback_is_unavailable():
    record(status=Status.FAILED, failed_stage="build")
    with pytest.raises(ServiceUnavailable, match="failed at stage 'build' and was not rolled back"):
        LastDeployment().check_record()


@pytest.mark.django_db
def test_last_deployment_rolled_back_is_a_warning_naming_the_release_restored():
    record(status=Status.ROLLED_BACK, from_commit="c" * 40, to_commit="d" * 40, failed_stage="health")
    with pytest.raises(ServiceWarning, match="failed at stage 'health' and was rolled back to cccccccccccc"):
        LastDeployment().check_record()


@pytest.mark.django_db
def test_last_deployment_interrupted_is_unavailable():
    record(status=Status.INTERRUPTED, failed_stage="checkout")
    with pytest.raises(ServiceUnavailable, match="was interrupted at stage 'checkout' \\(its process died\\)"):
        LastDeployment().check_record()


@pytest.mark.django_db
def test_last_deployment_running_is_fine_until_the_stuck_limit_then_unavailable(settings):
    settings.DEPLOY_OPS = {"DEPLOY_STUCK_MINUTES": 30}
    running = record(status=Status.RUNNING, age=timedelta(minutes=29), pid=4242, host="prod-1")
    LastDeployment().check_record()
    running.started_at = timezone.now() - timedelta(minutes=31)
    running.save()
    with pytest.raises(ServiceUnavailable, match=r"is stuck: still running after 31 minutes \(limit 30\)\. Check process 4242 on prod-1"):
        LastDeployment().check_record()


@pytest.mark.django_db
def test_last_deployment_ignores_restore_records_and_reads_a_failed_manual_rollback():
    record(kind=Kind.ROLLBACK, status=Status.FAILED, age=timedelta(hours=1))
    record(kind=Kind.RESTORE, status=Status.SUCCEEDED)
    with pytest.raises(ServiceUnavailable) as failed:
        LastDeployment().check_record()
    assert failed.value.message.startswith("The last rollback (to an unknown commit, started ")
    assert failed.value.message.endswith(" failed: the site may run a half-restored release. See `manage.py rollback --status`.")


# -- BackupFreshness (real backup files in BACKUP_DIR) -----------------------------------------------
def write_backup(hours_old: float, verified: bool | None = None, metadata: bool = True) -> str:
    """A gzipped dump in BACKUP_DIR; with metadata as deploy_ops writes it, or legacy (name only)."""
    created = timezone.now() - timedelta(hours=hours_old)
    name = f"backup_{timezone.localtime(created):%Y%m%d_%H%M%S}.sql.gz"
    ops_settings.backup_dir.mkdir(parents=True, exist_ok=True)
    (ops_settings.backup_dir / name).write_bytes(gzip.compress(b"-- dump\n"))
    if metadata:
        content = {"format": 1, "created_at": created.isoformat()}
        if verified is not None:
            content["verification"] = {"at": timezone.now().isoformat(), "ok": verified, "error": ""}
        (ops_settings.backup_dir / (name + ".json")).write_text(json.dumps(content))
    return name


def test_backup_freshness_fails_when_there_is_no_backup(ops_dirs):
    with pytest.raises(
        ServiceUnavailable, match=r"^Unavailable: There is no backup in BACKUP_DIR\. Make one with `manage.py backups create`\.$"
    ):
        BackupFreshness().run()


def test_backup_freshness_passes_with_a_young_verified_backup(ops_dirs):
    write_backup(hours_old=2, verified=True)
    BackupFreshness().run()


def test_backup_freshness_fails_naming_an_old_legacy_backup_and_the_limit(ops_dirs):
    name = write_backup(hours_old=30, metadata=False)
    with pytest.raises(ServiceUnavailable) as failed:
        BackupFreshness().run()
    assert failed.value.message.startswith(f"The newest (unverified) backup, {name}, is 30.0 hours old (limit 26).")


def test_backup_freshness_judges_the_newest_verified_backup_when_there_is_one(ops_dirs):
    old_verified = write_backup(hours_old=40, verified=True)
    write_backup(hours_old=1, verified=None)
    with pytest.raises(ServiceUnavailable, match=f"The newest verified backup, {old_verified}, is 40.0 hours old"):
        BackupFreshness().run()
    BackupFreshness(max_age_hours=48).run()


def test_backup_freshness_never_counts_a_backup_that_failed_verification(ops_dirs):
    write_backup(hours_old=1, verified=False)
    with pytest.raises(ServiceUnavailable, match="Every backup failed verification"):
        BackupFreshness().run()


# -- BackupDiskSpace (the real disk) --------------------------------------------------------------
def test_backup_disk_space_passes_when_the_limit_is_met_even_before_the_backup_dir_exists(ops_dirs):
    assert not ops_settings.backup_dir.exists()
    BackupDiskSpace(min_free_mb=1).run()


def test_backup_disk_space_fails_when_the_disk_has_less_than_the_configured_room(ops_dirs, settings):
    settings.DEPLOY_OPS = {**settings.DEPLOY_OPS, "BACKUP_MIN_FREE_MB": 10**12}
    with pytest.raises(
        ServiceUnavailable, match=r"^Unavailable: Only \d+ MB free on the disk holding the backups \(want 1000000000000 MB\)"
    ):
        BackupDiskSpace().run()


# -- RunningCommit (a real git checkout) ----------------------------------------------------------
@pytest.mark.django_db
def test_running_commit_passes_when_head_is_the_last_deployed_commit(ops_dirs):
    git(ops_dirs, "init", "-q")
    deployed = commit(ops_dirs, "release 1")
    record(status=Status.SUCCEEDED, to_commit=deployed)
    RunningCommit().check_head()


@pytest.mark.django_db
def test_running_commit_warns_when_the_code_was_changed_by_hand(ops_dirs):
    git(ops_dirs, "init", "-q")
    deployed = commit(ops_dirs, "release 1")
    record(status=Status.SUCCEEDED, to_commit=deployed)
    by_hand = commit(ops_dirs, "hot fix on the server")
    with pytest.raises(ServiceWarning, match=f"checkout is at {by_hand[:12]} but the last successful deploy put {deployed[:12]} in place"):
        RunningCommit().check_head()


@pytest.mark.django_db
def test_running_commit_expects_the_previous_release_after_a_rollback_and_skips_during_a_deploy(ops_dirs):
    git(ops_dirs, "init", "-q")
    previous = commit(ops_dirs, "release 1")
    record(status=Status.SUCCEEDED, to_commit=previous, age=timedelta(hours=2))
    record(status=Status.ROLLED_BACK, from_commit=previous, to_commit="e" * 40, age=timedelta(hours=1))
    RunningCommit().check_head()
    commit(ops_dirs, "release 2 being deployed")
    record(status=Status.RUNNING)
    RunningCommit().check_head()


@pytest.mark.django_db
def test_running_commit_passes_where_the_code_is_not_a_git_checkout(ops_dirs):
    record(status=Status.SUCCEEDED, to_commit="f" * 40)
    RunningCommit().check_head()


# -- the runner and the deploy gate ---------------------------------------------------------------
@pytest.mark.django_db
def test_run_checks_reports_failures_warnings_and_passes_as_outcomes(ops_dirs):
    record(status=Status.ROLLED_BACK, from_commit="c" * 40)
    outcomes = run_checks([Database(), LastDeployment(), BackupDiskSpace(min_free_mb=10**12)])
    assert outcomes[0] == CheckOutcome("Database(alias='default')", ok=True, warning=False, message="")
    assert outcomes[1].name == "LastDeployment()" and outcomes[1].ok and outcomes[1].warning
    assert outcomes[1].message.startswith("Warning: The last deploy")
    assert outcomes[2].name == "BackupDiskSpace(min_free_mb=1000000000000)" and not outcomes[2].ok and not outcomes[2].warning
    assert outcomes[2].message.startswith("Unavailable: Only ")


@pytest.mark.django_db
def test_run_checks_sees_the_callers_uncommitted_rows():
    # The database checks run in the calling thread, so a deploy's own transaction is visible.
    record(status=Status.ROLLBACK_FAILED)
    [outcome] = run_checks([LastDeployment()])
    assert not outcome.ok and "rollback failed too" in outcome.message


def test_deploy_gate_checks_are_the_configured_database_migration_and_service_checks(settings):
    settings.DEPLOY_OPS = {
        "HEALTH_CHECKS": [
            ["health_check.checks.Database", {"alias": "other"}],
            "health_check.checks.Cache",
            "deploy_ops.health.checks.MigrationsApplied",
            "deploy_ops.health.checks.LastDeployment",
        ],
        "HOST_HEALTH_CHECKS": ["deploy_ops.health.checks.BackupFreshness"],
    }
    assert deploy_gate_checks() == [Database(alias="other"), MigrationsApplied()]


def test_deploy_gate_checks_by_default_cover_database_services_and_migrations():
    assert [type(check) for check in deploy_gate_checks()] == [Database, MigrationsApplied, ServicesRunning]


def test_require_healthy_names_every_failing_check_and_lets_warnings_pass():
    outcomes = [
        CheckOutcome("Database(alias='default')", True, False, ""),
        CheckOutcome("LastDeployment()", True, True, "Warning: rolled back"),
        CheckOutcome("ServicesRunning()", False, False, "Unavailable: Service 'web' is exited, not running."),
    ]
    with pytest.raises(
        HealthCheckFailed, match=r"^Health checks failed: ServicesRunning\(\): Unavailable: Service 'web' is exited, not running\.$"
    ):
        require_healthy(outcomes)
    assert require_healthy(outcomes[:2]) == "Database(alias='default'): OK\nLastDeployment(): Warning: rolled back"


def test_health_checks_setting_rejects_an_entry_that_is_neither_a_path_nor_a_pair(settings):
    settings.DEPLOY_OPS = {"HEALTH_CHECKS": ["health_check.checks.Database", ["deploy_ops.health.checks.BackupDiskSpace"]]}
    with pytest.raises(
        ConfigurationError, match=r"DEPLOY_OPS\['HEALTH_CHECKS'\] entry 1 must be a dotted path or a \[dotted path, \{options\}\] pair\."
    ):
        _ = ops_settings.HEALTH_CHECKS


def test_the_default_checks_include_the_stock_database_cache_and_storage_checks():
    assert [entry.rsplit(".", 1)[1] for entry in ops_settings.HEALTH_CHECKS] == [
        "Database",
        "Cache",
        "Storage",
        "MigrationsApplied",
        "LastDeployment",
        "RunningCommit",
    ]
    assert Cache in [type(check) for check in configured_checks()]


@pytest.mark.django_db
def test_running_commit_passes_in_a_checkout_with_no_commit_yet(ops_dirs):
    git(ops_dirs, "init", "-q")
    record(status=Status.SUCCEEDED, to_commit="f" * 40)
    RunningCommit().check_head()
