"""``manage.py rollback`` end to end with the commands runtime (no Docker): a real git origin,
a production checkout served by runserver under servectl, a real database (SQLite, and
PostgreSQL for the full rollback)."""

import json
import os
import subprocess
import sys

import pytest

from deploy_ops.backups import NAME_PATTERN
from tests.e2e.helpers import deploy, events, failure_text, last_record, manage, records, wait_for
from tests.e2e.test_deploy_commands_runtime import serving_release_1
from tests.fixtures.sample_site import health_fails, postgres_url, release

pytestmark = pytest.mark.slow

CODE_STAGES = ["revert code", "stop services", "restore images", "start services", "collect static", "verify health"]
DATABASE_STAGES = ["safety backup", "stop services", "restore database", "start services", "verify health"]
FULL_STAGES = [
    "safety backup",
    "revert code",
    "stop services",
    "restore database",
    "restore images",
    "start services",
    "collect static",
    "verify health",
]


def backup_names(site) -> set[str]:
    folder = site.production / "backups"
    return {path.name for path in folder.iterdir() if NAME_PATTERN.match(path.name)} if folder.is_dir() else set()


def add_note(site, text: str) -> None:
    site.manage("shell", "-c", f"from notes.models import Note; Note.objects.create(text={text!r})")


def release_2_with_a_third_note(site, database_url="sqlite:///db.sqlite3") -> tuple[str, str]:
    """Release 1 (notes first, second) deployed over by release 2, which then gained a third note.

    Returns (release 2's sha, the backup release 2's deploy took of release 1's database)."""
    serving_release_1(site, database_url)
    release_2 = site.commit_change(release("2"), "Release 2")
    finished = deploy(site)
    assert finished.returncode == 0, failure_text(finished)
    add_note(site, "third")
    return release_2, records(site)[-1]["record"]["backup_name"]


def assert_rollback_recorded(site, stages: list[str], to_commit: str, backup: str = "") -> dict:
    snapshot = records(site)[-1]
    record = snapshot["record"]
    assert (record["kind"], record["status"]) == ("rollback", "succeeded"), record
    assert record["to_commit"] == to_commit
    assert record["backup_name"] == backup
    assert [stage["name"] for stage in snapshot["stages"]] == stages
    assert all(stage["status"] == "succeeded" for stage in snapshot["stages"])
    assert events(site)[-1] == "ROLLBACK_SUCCESS"
    return record


def assert_safety_backup_restores(site, before: set[str], expected_notes: list[str]) -> None:
    """Exactly one new backup appeared, and restoring it brings back the database as it was."""
    new = backup_names(site) - before
    assert len(new) == 1, new
    restored = manage(site, "backups", "restore", new.pop(), "--noinput")
    assert restored.returncode == 0, failure_text(restored)
    assert site.notes() == expected_notes


# -- rolling back ---------------------------------------------------------------------------------
def test_rollback_to_a_commit_reverts_the_code_and_keeps_the_database(sample_site):
    release_2_with_a_third_note(sample_site)

    finished = manage(sample_site, "rollback", "--commit", sample_site.initial_sha[:10], "--noinput")

    assert finished.returncode == 0, failure_text(finished)
    assert sample_site.production_head() == sample_site.initial_sha
    assert "release 1" in sample_site.get("/")[1]
    assert sample_site.notes() == ["first", "second", "third"]
    assert_rollback_recorded(sample_site, CODE_STAGES, sample_site.initial_sha)


def test_rollback_to_a_backup_restores_the_database_after_a_safety_backup_that_restores_too(sample_site):
    release_2, backup = release_2_with_a_third_note(sample_site)
    before = backup_names(sample_site)

    finished = manage(sample_site, "rollback", "--backup", backup, "--noinput")

    assert finished.returncode == 0, failure_text(finished)
    assert sample_site.production_head() == release_2
    assert "release 2" in sample_site.get("/")[1]
    assert sample_site.notes() == ["first", "second"]
    assert_rollback_recorded(sample_site, DATABASE_STAGES, release_2, backup)
    assert "safety backup: " in finished.stdout
    assert_safety_backup_restores(sample_site, before, ["first", "second", "third"])


def test_full_rollback_on_postgresql_brings_back_code_and_database(sample_site, postgres_database):
    _, backup = release_2_with_a_third_note(sample_site, postgres_url(postgres_database))
    before = backup_names(sample_site)

    finished = manage(sample_site, "rollback", "--full", sample_site.initial_sha, backup, "--noinput")

    assert finished.returncode == 0, failure_text(finished)
    assert sample_site.production_head() == sample_site.initial_sha
    assert "release 1" in sample_site.get("/")[1]
    assert sample_site.notes() == ["first", "second"]
    assert_rollback_recorded(sample_site, FULL_STAGES, sample_site.initial_sha, backup)
    assert_safety_backup_restores(sample_site, before, ["first", "second", "third"])


def test_quick_dry_run_names_its_pick_and_why_then_quick_rolls_back_to_it(sample_site):
    release_2, _ = release_2_with_a_third_note(sample_site)
    release_3 = sample_site.commit_change(release("3"), "Release 3")
    assert deploy(sample_site).returncode == 0
    backup_of_release_2 = records(sample_site)[-1]["record"]["backup_name"]
    add_note(sample_site, "fourth")
    before = backup_names(sample_site)
    journal_before = records(sample_site)

    dry = manage(sample_site, "rollback", "--quick", "--dry-run")

    assert dry.returncode == 0, failure_text(dry)
    assert f"check out {release_2[:12]} (Release 2)" in dry.stdout
    assert f"restore {backup_of_release_2}" in dry.stdout
    assert f"{release_2[:12]} was serving when the current {release_3[:12]} was deployed" in dry.stdout
    assert f"{backup_of_release_2} is the newest backup taken while it served" in dry.stdout
    assert "Dry run: nothing was changed." in dry.stdout
    assert sample_site.production_head() == release_3
    assert sample_site.notes() == ["first", "second", "third", "fourth"]
    assert records(sample_site) == journal_before
    assert backup_names(sample_site) == before

    finished = manage(sample_site, "rollback", "--quick", "--noinput")

    assert finished.returncode == 0, failure_text(finished)
    assert sample_site.production_head() == release_2
    assert "release 2" in sample_site.get("/")[1]
    assert sample_site.notes() == ["first", "second", "third"]
    assert_rollback_recorded(sample_site, FULL_STAGES, release_2, backup_of_release_2)
    assert_safety_backup_restores(sample_site, before, ["first", "second", "third", "fourth"])

    # Release 3 was rolled back away from: quick never "goes back" to it, but to what served before release 2.
    again = manage(sample_site, "rollback", "--quick", "--dry-run")
    assert again.returncode == 0, failure_text(again)
    assert f"check out {sample_site.initial_sha[:12]}" in again.stdout and release_3[:12] not in again.stdout.split("why:")[0]


# -- refusals: exit 3, nothing changed --------------------------------------------------------------
def a_backup(site) -> str:
    return os.path.basename(site.manage("backups", "create").strip())


def flip_a_byte(site, name: str) -> str:
    path = site.production / "backups" / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    return name


def a_postgresql_backup(site, database: dict) -> str:
    """A real PostgreSQL backup of this site, made by ``backups create`` with the site pointed at PostgreSQL."""
    environment = {**os.environ, "DATABASE_URL": postgres_url(database)}
    for arguments in (["migrate", "--verbosity", "0"], ["backups", "create"]):
        finished = subprocess.run(
            [sys.executable, "manage.py", *arguments], cwd=site.production, env=environment, capture_output=True, text=True
        )
        assert finished.returncode == 0, failure_text(finished)
    return os.path.basename(finished.stdout.strip())


def assert_refused_and_unchanged(site, finished, says: str, backups_before: set[str]) -> None:
    assert finished.returncode == 3, failure_text(finished)
    assert "Refused, nothing was changed" in finished.stderr and says in finished.stderr, finished.stderr
    assert site.production_head() == site.initial_sha
    assert site.notes() == ["first", "second"]
    assert records(site) == []
    assert backup_names(site) == backups_before


def test_an_unknown_commit_is_refused_with_exit_3(sample_site):
    serving_release_1(sample_site)
    finished = manage(sample_site, "rollback", "--commit", "0123456789abcdef", "--noinput")
    assert_refused_and_unchanged(sample_site, finished, "'0123456789abcdef' is not a branch", set())


def test_a_missing_backup_is_refused_with_exit_3(sample_site):
    serving_release_1(sample_site)
    existing = a_backup(sample_site)
    finished = manage(sample_site, "rollback", "--full", sample_site.initial_sha, "backup_20000101_000000.sql.gz", "--noinput")
    assert_refused_and_unchanged(sample_site, finished, "No backup 'backup_20000101_000000.sql.gz'", {existing})
    assert existing in finished.stderr


def test_a_corrupt_backup_is_refused_with_exit_3(sample_site):
    serving_release_1(sample_site)
    damaged = flip_a_byte(sample_site, a_backup(sample_site))
    finished = manage(sample_site, "rollback", "--backup", damaged, "--noinput")
    assert_refused_and_unchanged(sample_site, finished, "is damaged", {damaged})


def test_a_backup_of_another_engine_is_refused_with_exit_3(sample_site, postgres_database):
    serving_release_1(sample_site)
    foreign = a_postgresql_backup(sample_site, postgres_database)
    finished = manage(sample_site, "rollback", "--backup", foreign, "--noinput")
    assert_refused_and_unchanged(
        sample_site, finished, f"{foreign} is a postgresql backup, but the database 'default' is sqlite", {foreign}
    )


def test_a_rollback_while_a_deploy_holds_the_lock_is_refused_with_exit_3(sample_site):
    serving_release_1(sample_site)
    unhealthy = sample_site.commit_change(health_fails(), "Unhealthy release: its health stage is slow to fail")
    running = subprocess.Popen(
        [sys.executable, "manage.py", "deploy", "--noinput", "--health-retries", "100", "--health-delay", "0.5"],
        cwd=sample_site.production,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for((sample_site.production / ".deploy_ops" / "deploy.lock").exists, timeout=60, interval=0.01)
        # By its health stage the deploy has taken its backup and checked out: nothing moves under the test.
        wait_for(lambda: any(s["name"] == "health" for r in records(sample_site) for s in r["stages"]), timeout=120)
        backups_before = backup_names(sample_site)

        finished = manage(sample_site, "rollback", "--commit", sample_site.initial_sha, "--noinput")

        assert finished.returncode == 3, failure_text(finished)
        assert "Another deploy or rollback is running" in finished.stderr and f"pid {running.pid}" in finished.stderr
        assert [snapshot["record"]["kind"] for snapshot in records(sample_site)] == ["deploy"]
        assert backup_names(sample_site) == backups_before
        assert sample_site.production_head() == unhealthy
    finally:
        running.kill()
        running.wait()


# -- looking ----------------------------------------------------------------------------------------
def test_status_json_carries_commit_services_backups_lock_and_records(sample_site):
    release_2, backup = release_2_with_a_third_note(sample_site)
    sample_site.commit_change(release("3"), "Release 3")
    sample_site.checkout_latest()  # by hand, not deployed: the current commit is not the last successful deploy

    finished = manage(sample_site, "rollback", "--status", "--json")

    assert finished.returncode == 0, failure_text(finished)
    found = json.loads(finished.stdout)
    assert found["current_commit"]["sha"] == sample_site.production_head() != release_2
    assert found["last_successful_deploy"]["to_commit"] == release_2
    assert found["current_is_last_successful"] is False
    assert found["services"] and all({"name", "state", "health", "ok"} <= set(service) for service in found["services"])
    assert [entry["name"] for entry in found["backups"]] == [backup]
    assert found["backups"][0]["age"] and 0 <= found["backups"][0]["age_seconds"] < 600 and "verified" in found["backups"][0]
    assert found["lock"]["state"] == "free"
    assert [(entry["kind"], entry["status"], entry["to_commit"]) for entry in found["recent_records"]] == [
        ("deploy", "succeeded", release_2)
    ]


def test_list_commits_json_marks_deployed_failed_and_rolled_back_commits(sample_site):
    release_2, _ = release_2_with_a_third_note(sample_site)
    unhealthy = sample_site.commit_change(health_fails(), "Unhealthy release")
    assert deploy(sample_site, "--health-retries", "1").returncode == 1
    assert manage(sample_site, "rollback", "--commit", sample_site.initial_sha, "--noinput").returncode == 0

    finished = manage(sample_site, "rollback", "--list-commits", "-n", "5", "--json")

    assert finished.returncode == 0, failure_text(finished)
    commits = {commit["sha"]: commit for commit in json.loads(finished.stdout)}
    assert list(commits) == [unhealthy, release_2, sample_site.initial_sha]
    assert [(d["kind"], d["status"]) for d in commits[unhealthy]["deploys"]] == [("deploy", "rolled_back")]
    assert [(d["kind"], d["status"]) for d in commits[release_2]["deploys"]] == [("deploy", "succeeded")]
    assert [(d["kind"], d["status"]) for d in commits[sample_site.initial_sha]["deploys"]] == [("rollback", "succeeded")]
    assert commits[sample_site.initial_sha]["current"] is True and not commits[release_2]["current"]
    assert all(commit["summary"] and commit["committed_at"] for commit in commits.values())


def test_without_a_terminal_and_without_an_option_it_prints_the_usage_and_exits_3_at_once(sample_site):
    sample_site.use_commands()
    finished = manage(sample_site, "rollback", timeout=30)
    assert finished.returncode == 3, failure_text(finished)
    assert "usage: manage.py rollback" in finished.stderr
    assert "no terminal for the menu" in finished.stderr


def test_rollback_to_a_commit_before_a_migration_unapplies_it_first(sample_site):
    serving_release_1(sample_site)
    sample_site.commit_change(
        {
            "notes/migrations/0002_note_pinned.py": """from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("notes", "0001_initial")]
    operations = [migrations.AddField("note", "pinned", models.BooleanField(default=False))]
"""
        },
        "Release 2: notes can be pinned",
    )
    assert deploy(sample_site).returncode == 0
    assert "[X] 0002_note_pinned" in sample_site.manage("showmigrations", "notes")

    dry = manage(sample_site, "rollback", "--commit", sample_site.initial_sha, "--dry-run")
    assert "unapply notes.0002_note_pinned (migrate notes 0001_initial)" in dry.stdout, failure_text(dry)
    finished = manage(sample_site, "rollback", "--commit", sample_site.initial_sha, "--noinput")

    assert finished.returncode == 0, failure_text(finished)
    assert sample_site.production_head() == sample_site.initial_sha
    applied = sample_site.manage(
        "shell",
        "-c",
        "from django.db.migrations.recorder import MigrationRecorder as R; print(sorted(n "
        "for a, n in R.Migration.objects.values_list('app', 'name') if a == 'notes'))",
    )
    assert applied.strip().splitlines()[-1] == "['0001_initial']"
    columns = sample_site.manage(
        "shell",
        "-c",
        "from django.db import connection; print([c.name for c in "
        "connection.introspection.get_table_description(connection.cursor(), 'notes_note')])",
    )
    assert "pinned" not in columns
    assert sample_site.notes() == ["first", "second"]
    stages = [stage["name"] for stage in last_record(sample_site)["stages"]]
    assert stages[:3] == ["safety backup", "unapply migrations", "revert code"]
