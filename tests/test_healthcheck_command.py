"""``manage.py healthcheck``: the /health/ checks from the command line, and the deploy gate subset."""

import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.recorder import MigrationRecorder


@pytest.fixture
def gate_settings(ops_dirs, settings):
    settings.DEPLOY_OPS = {
        **settings.DEPLOY_OPS,
        "HEALTH_CHECKS": [
            "health_check.checks.Database",
            "deploy_ops.health.checks.MigrationsApplied",
            "deploy_ops.health.checks.BackupFreshness",
        ],
        "HOST_HEALTH_CHECKS": [],
    }


@pytest.mark.django_db(transaction=True)
def test_the_gate_runs_only_database_migration_and_service_checks(gate_settings, capsys):
    call_command("healthcheck", "--gate", "--json")
    assert sorted(json.loads(capsys.readouterr().out)) == ["Database(alias='default')", "MigrationsApplied(alias='default')"]


@pytest.mark.django_db(transaction=True)
def test_every_configured_check_runs_and_a_failure_exits_1(gate_settings, capsys):
    # No backup exists in the fresh project folder, so BackupFreshness fails.
    with pytest.raises(CommandError) as failed:
        call_command("healthcheck")
    assert failed.value.returncode == 1
    assert "BackupFreshness" in str(failed.value)


@pytest.mark.django_db(transaction=True)
def test_the_gate_fails_on_a_pending_migration(gate_settings):
    recorder = MigrationRecorder(connection)
    # The newest one: a pending migration is one whose descendants are pending too.
    [newest] = MigrationLoader(connection).graph.leaf_nodes("deploy_ops")
    recorder.record_unapplied(*newest)
    try:
        with pytest.raises(CommandError, match="MigrationsApplied"):
            call_command("healthcheck", "--gate")
    finally:  # django_migrations is not flushed between tests
        recorder.record_applied(*newest)


@pytest.mark.django_db(transaction=True)
def test_skip_services_leaves_out_the_services_check_the_deploy_runs_from_the_host(ops_dirs, settings, capsys):
    # Inside the web container the Docker engine is out of reach; the deploy inspects the services itself.
    settings.DEPLOY_OPS = {
        **settings.DEPLOY_OPS,
        "HEALTH_CHECKS": [
            "health_check.checks.Database",
            "deploy_ops.health.checks.ServicesRunning",
            "deploy_ops.health.checks.MigrationsApplied",
        ],
    }
    call_command("healthcheck", "--gate", "--skip-services", "--json")
    assert sorted(json.loads(capsys.readouterr().out)) == ["Database(alias='default')", "MigrationsApplied(alias='default')"]
