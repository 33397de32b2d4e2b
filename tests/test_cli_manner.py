"""One manner across the commands: one confirmation policy, one backup listing (text and --json)
wherever backups are listed, --json on deploy, verify and prune, and Django's common options
after a `backups` subcommand. On real SQLite backups and a real (non-)checkout."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.template.defaultfilters import filesizeformat

from deploy_ops import backups
from deploy_ops.models import DeploymentRecord
from tests.records import commit

pytestmark = pytest.mark.django_db


def run(*arguments) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command(*arguments, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


@pytest.fixture
def two_backups(sqlite_target):
    made = [backups.create_backup(), backups.create_backup()]
    backups.verify_backup(made[0])
    return made


def test_backups_list_and_rollback_list_backups_print_the_same_lines(two_backups):
    listed, _ = run("backups", "list")
    from_rollback, _ = run("rollback", "--list-backups")
    assert listed == from_rollback
    lines = listed.splitlines()
    assert len(lines) == 2
    # Django's own filesizeformat and timesince, not "4.0 KB" here and "6926 bytes" there.
    assert all(filesizeformat(backup.size) in listed for backup in two_backups)
    assert "0\xa0minutes ago" in lines[0]
    assert "not verified" in lines[0] and lines[1].endswith("verified")


def test_backups_list_and_rollback_list_backups_share_one_json_schema(two_backups):
    listed = json.loads(run("backups", "list", "--json")[0])
    from_rollback = json.loads(run("rollback", "--list-backups", "--json")[0])
    for entry in listed + from_rollback:
        entry.pop("age_seconds")  # a second may pass between the two commands
    assert listed == from_rollback
    assert set(listed[0]) == {
        "name",
        "path",
        "created_at",
        "age",
        "age_seconds",
        "size",
        "size_display",
        "engine",
        "database",
        "commit",
        "compression",
        "encrypted",
        "sha256",
        "verified",
        "legacy",
    } - {"age_seconds"}
    assert listed[1]["verified"] is True and listed[0]["verified"] is None


def test_verify_json_reports_each_backup_and_still_exits_3_on_a_bad_one(two_backups):
    damaged = two_backups[1]
    damaged.path.write_bytes(damaged.path.read_bytes()[:-40])
    out = StringIO()
    with pytest.raises(CommandError, match="1 of 2 backups failed verification") as failed:
        call_command("backups", "verify", "--all", "--json", stdout=out, stderr=StringIO())
    assert failed.value.returncode == 3
    results = {entry["name"]: entry for entry in json.loads(out.getvalue())}
    assert results[damaged.name]["ok"] is False and results[damaged.name]["error"]
    assert results[two_backups[0].name] == {"name": two_backups[0].name, "ok": True, "error": "", "note": ""}


def test_prune_json_says_what_it_would_delete(two_backups):
    found = json.loads(run("backups", "prune", "--days", "0", "--keep", "1", "--dry-run", "--json")[0])
    assert found["dry_run"] is True
    assert found["deleted"] == [two_backups[0].name]
    assert all(backup.path.exists() for backup in two_backups)


def test_common_options_are_accepted_after_a_backups_subcommand(sqlite_target):
    _, quiet = run("backups", "create", "-v", "0")
    _, chatty = run("backups", "create", "--verbosity", "2")
    assert quiet == "" and "sha256" in chatty
    listed, _ = run("backups", "list", "--no-color", "--traceback")
    assert len(listed.splitlines()) == 2


def test_a_verbosity_given_before_the_subcommand_still_counts(sqlite_target):
    _, chatty = run("backups", "-v", "2", "create")
    assert "sha256" in chatty


def test_deploy_without_a_terminal_refuses_unless_noinput(ops_dirs, monkeypatch):
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    with pytest.raises(CommandError, match="Refusing to deploy without confirmation: stdin is not a terminal. Pass --noinput") as refused:
        call_command("deploy")
    assert refused.value.returncode == 3
    assert not DeploymentRecord.objects.exists()
    assert not (ops_dirs / ".deploy_ops").exists()  # not even the lock was taken


def test_deploy_json_prints_the_result_on_stdout_alone(ops_dirs, monkeypatch):
    # The project folder is no git checkout: the deploy is refused (exit 3) before anything changed.
    out = StringIO()
    with pytest.raises(CommandError) as refused:
        call_command("deploy", "--noinput", "--json", stdout=out, stderr=StringIO())
    result = json.loads(out.getvalue())
    assert result["exit_code"] == refused.value.returncode == 3
    assert "is not a git checkout" in result["message"] and result["record"] is None


def test_rollback_without_a_terminal_refuses_unless_noinput(ops_dirs, monkeypatch):
    first = commit(ops_dirs, "First", datetime(2026, 1, 1, tzinfo=UTC))
    commit(ops_dirs, "Second", datetime(2026, 1, 2, tzinfo=UTC))
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    with pytest.raises(CommandError, match="Refusing to roll back without confirmation: stdin is not a terminal") as refused:
        call_command("rollback", "--commit", first, stdout=StringIO())
    assert refused.value.returncode == 3
    assert not DeploymentRecord.objects.exists()
