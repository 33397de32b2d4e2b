"""The DEPLOY_OPS dict: defaults, validation with hints, environment variables, system checks."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from deploy_ops.conf import from_environment, ops_settings, problems
from deploy_ops.exceptions import ConfigurationError

REPOSITORY = Path(__file__).resolve().parents[1]


def test_defaults_apply_when_the_dict_is_empty(settings):
    settings.DEPLOY_OPS = {}
    assert ops_settings.HEALTH_CHECK_RETRIES == 3
    assert ops_settings.HEALTH_CHECK_DELAY == 10
    assert ops_settings.ROLLBACK_ENABLED is True
    assert ops_settings.AUTO_ROLLBACK is True
    assert ops_settings.GIT_REMOTE == "origin"
    assert ops_settings.BACKUP_RETENTION_DAYS == 7


def test_unknown_key_is_rejected_with_a_hint():
    assert problems({"HEALTH_CHECK_RETRYS": 3}) == [
        "DEPLOY_OPS has an unknown key 'HEALTH_CHECK_RETRYS'. Did you mean 'HEALTH_CHECK_RETRIES'?"
    ]


def test_wrong_types_and_values_are_named():
    found = problems({"HEALTH_CHECK_RETRIES": "3", "RUNTIME": "k8s", "BACKUP_KEEP": 0, "AUTO_ROLLBACK": 1, "HEALTH_CHECK_DELAY": True})
    assert sorted(found) == [
        "DEPLOY_OPS['AUTO_ROLLBACK'] must be bool, not int (1).",
        "DEPLOY_OPS['BACKUP_KEEP'] must be 1 or more.",
        "DEPLOY_OPS['HEALTH_CHECK_DELAY'] must be int or float, not bool (True).",
        "DEPLOY_OPS['HEALTH_CHECK_RETRIES'] must be int, not str ('3').",
        "DEPLOY_OPS['RUNTIME'] must be one of 'compose', 'commands', 'swarm'.",
    ]


def test_commands_must_be_argv_lists_not_shell_strings():
    assert problems({"COMMANDS": {"start": "gunicorn app"}}) == [
        "DEPLOY_OPS['COMMANDS'] step 'start' must be a non-empty list of strings (an argv, not a shell string)."
    ]
    assert problems({"COMMANDS": {"start": ["gunicorn", ""]}}) == [
        "DEPLOY_OPS['COMMANDS'] step 'start' must be a non-empty list of strings (an argv, not a shell string)."
    ]


def test_reading_a_wrong_value_raises_a_configuration_error(settings):
    settings.DEPLOY_OPS = {"HEALTH_CHECK_RETRIES": 0}
    with pytest.raises(ConfigurationError, match="HEALTH_CHECK_RETRIES'] must be 1 or more"):
        _ = ops_settings.HEALTH_CHECK_RETRIES


def test_environment_variables_are_parsed_by_type():
    environ = {
        "DEPLOY_OPS_HEALTH_CHECK_RETRIES": "5",
        "DEPLOY_OPS_HEALTH_CHECK_DELAY": "2.5",
        "DEPLOY_OPS_AUTO_ROLLBACK": "false",
        "DEPLOY_OPS_COMPOSE_COMMAND": '["docker-compose"]',
        "DEPLOY_OPS_COMMANDS": '{"start": ["run"], "stop": ["halt"]}',
        "DEPLOY_OPS_BACKUP_EXEC_SERVICE": "",
        "UNRELATED": "x",
    }
    assert from_environment(environ) == {
        "HEALTH_CHECK_RETRIES": 5,
        "HEALTH_CHECK_DELAY": 2.5,
        "AUTO_ROLLBACK": False,
        "COMPOSE_COMMAND": ["docker-compose"],
        "COMMANDS": {"start": ["run"], "stop": ["halt"]},
        "BACKUP_EXEC_SERVICE": None,
    }


def test_the_old_scripts_unprefixed_names_are_read_and_the_prefixed_name_wins():
    environ = {"ROLLBACK_ENABLED": "false", "HEALTH_CHECK_DELAY": "3", "DEPLOY_OPS_HEALTH_CHECK_DELAY": "4", "GIT_BRANCH": "ignored"}
    assert from_environment(environ) == {"ROLLBACK_ENABLED": False, "HEALTH_CHECK_DELAY": 4}


def test_a_misspelt_environment_variable_is_kept_so_validation_names_it():
    found = from_environment({"DEPLOY_OPS_HEALTH_CHECK_DELAYS": "3"})
    assert problems(found) == ["DEPLOY_OPS has an unknown key 'HEALTH_CHECK_DELAYS'. Did you mean 'HEALTH_CHECK_DELAY'?"]


@pytest.mark.parametrize(
    "variable, text, says",
    [
        ("DEPLOY_OPS_COMMANDS", "{start: run}", "The environment variable DEPLOY_OPS_COMMANDS must be JSON (Expecting property name"),
        ("DEPLOY_OPS_HEALTH_CHECK_RETRIES", "abc", "The environment variable DEPLOY_OPS_HEALTH_CHECK_RETRIES is 'abc', not a number."),
        ("AUTO_ROLLBACK", "maybe", "The environment variable AUTO_ROLLBACK is 'maybe', not a boolean; use true or false."),
    ],
)
def test_a_malformed_environment_value_does_not_raise_at_import_but_is_named_by_validation(settings, variable, text, says):
    found = from_environment({variable: text})
    assert problems(found)[0].startswith(says)
    settings.DEPLOY_OPS = found
    with pytest.raises(SystemCheckError, match=f"deploy_ops.E001.*{variable}"):
        call_command("check")
    with pytest.raises(ConfigurationError, match=variable):
        getattr(ops_settings, next(iter(found)))


def test_a_json_value_that_does_not_parse_is_not_repeated_in_the_message():
    found = from_environment({"DEPLOY_OPS_NOTIFICATIONS": "https://hooks.example.org/secret-token"})
    assert "secret-token" not in problems(found)[0]


def test_deploy_with_a_malformed_environment_value_is_refused_with_exit_3_and_no_traceback():
    environment = {**os.environ, "DEPLOY_OPS_HEALTH_CHECK_RETRIES": "abc", "DEPLOY_OPS_PROJECT_DIR": "/nonexistent-deploy-ops-project"}
    finished = subprocess.run(
        [sys.executable, "manage.py", "deploy", "--noinput"], cwd=REPOSITORY, env=environment, capture_output=True, text=True, timeout=120
    )
    assert finished.returncode == 3, finished.stderr
    assert "DEPLOY_OPS_HEALTH_CHECK_RETRIES is 'abc', not a number" in finished.stderr
    assert "Traceback" not in finished.stderr


def test_system_check_reports_wrong_settings_with_their_id(settings):
    settings.DEPLOY_OPS = {"RUNTIME": "k8s"}
    with pytest.raises(SystemCheckError, match=r"deploy_ops.E001.*RUNTIME"):
        call_command("check")


def test_system_check_requires_start_and_stop_for_the_commands_runtime(settings):
    settings.DEPLOY_OPS = {"RUNTIME": "commands", "COMMANDS": {"start": ["x"]}}
    with pytest.raises(SystemCheckError, match=r"deploy_ops.E004.*no stop step"):
        call_command("check")


def test_deploy_check_reports_a_missing_host_tool(settings, monkeypatch, tmp_path):
    settings.DEPLOY_OPS = {"RUNTIME": "compose", "COMPOSE_COMMAND": ["definitely-not-installed-compose"], "PROJECT_DIR": str(tmp_path)}
    with pytest.raises(SystemCheckError, match=r"deploy_ops.E010.*'definitely-not-installed-compose' is not installed"):
        call_command("check", "--deploy", "--fail-level", "ERROR")


def test_system_check_warns_when_a_rollback_would_stop_the_database_service(settings, tmp_path):
    settings.DEPLOY_OPS = {"PROJECT_DIR": str(tmp_path), "RUNTIME": "compose", "BACKUP_EXEC_SERVICE": "db"}
    with pytest.raises(SystemCheckError, match=r"deploy_ops.W002.*'db'.*every service"):
        call_command("check", "--fail-level", "WARNING")
    settings.DEPLOY_OPS = {**settings.DEPLOY_OPS, "APP_SERVICES": ["web"]}
    call_command("check", "--fail-level", "WARNING")


def test_blue_green_slots_need_two_named_slots_each_with_an_address_and_a_health_url():
    proxy = {"KIND": "nginx", "ROUTE_FILE": "route.conf", "ADDRESS": "127.0.0.1:8000"}
    good = {"ADDRESS": "127.0.0.1:8001", "HEALTH_CHECK_URL": "http://127.0.0.1:8001/health/", "ENVIRONMENT": {"WEB_PORT": "8001"}}
    assert problems({"PROXY": {**proxy, "SLOTS": {"blue": good, "green": {**good, "ADDRESS": "127.0.0.1:8002"}}}}) == []
    (one,) = problems({"PROXY": {**proxy, "SLOTS": {"blue": good}}})
    assert "SLOTS needs exactly two slots" in one
    (no_url,) = problems({"PROXY": {**proxy, "SLOTS": {"blue": good, "green": {"ADDRESS": "127.0.0.1:8002"}}}})
    assert "SLOTS['green'] needs HEALTH_CHECK_URL" in no_url
    (number,) = problems({"PROXY": {**proxy, "SLOTS": {"blue": good, "green": {**good, "ENVIRONMENT": {"WEB_PORT": 8002}}}}})
    assert "ENVIRONMENT'] must map variable names to strings" in number
