"""A refusal is not an alarm, and every exit says only what is true (issue 9 items 4 and 5, issue 15
item 2).  Commands runtime, real git, SQLite (and PostgreSQL where the engine matters)."""

import os
import shutil
import subprocess
import sys

import pytest

from tests.e2e.helpers import deploy, failure_text, last_record, manage, records
from tests.e2e.test_deploy_commands_runtime import serving_release_1
from tests.e2e.test_rollback_commands_runtime import a_backup
from tests.fixtures.sample_site import free_port, postgres_url, release

pytestmark = pytest.mark.slow

# LastDeployment is what turns /health/ red; run as the site runs it, against the site's database.
LAST_DEPLOYMENT_PASSES = "from deploy_ops.health.checks import LastDeployment; LastDeployment().check_record(); print('LastDeployment ok')"


def test_a_rollback_refused_because_its_safety_backup_cannot_be_written_leaves_no_alarm(sample_site):
    serving_release_1(sample_site)
    backup = sample_site.production / "backups" / a_backup(sample_site)
    (sample_site.production / "backups-blocked").write_text("a file where the backup folder should be")
    blocked = {**os.environ, "DEPLOY_OPS_BACKUP_DIR": "backups-blocked/inner"}

    finished = subprocess.run(
        [sys.executable, "manage.py", "rollback", "--backup", str(backup), "--noinput"],
        cwd=sample_site.production,
        env=blocked,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert finished.returncode == 3, failure_text(finished)
    assert "No safety backup could be taken, so nothing was restored or changed" in finished.stderr
    record = last_record(sample_site)["record"]
    assert (record["kind"], record["status"], record["failed_stage"]) == ("rollback", "refused", "safety backup")
    assert "LastDeployment ok" in sample_site.manage("shell", "-c", LAST_DEPLOYMENT_PASSES)


def test_a_rollback_refused_because_pg_dump_is_missing_leaves_no_alarm(sample_site, postgres_database, tmp_path):
    serving_release_1(sample_site, postgres_url(postgres_database))
    backup = a_backup(sample_site)
    only_git = tmp_path / "bin"
    only_git.mkdir()
    (only_git / "git").symlink_to(shutil.which("git"))

    finished = subprocess.run(
        [sys.executable, "manage.py", "rollback", "--backup", backup, "--noinput"],
        cwd=sample_site.production,
        env={**os.environ, "PATH": str(only_git)},
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert finished.returncode == 3, failure_text(finished)
    assert "was not found on this host's PATH" in finished.stderr and "PostgreSQL client tools" in finished.stderr
    assert last_record(sample_site)["record"]["status"] == "refused"
    assert "LastDeployment ok" in sample_site.manage("shell", "-c", LAST_DEPLOYMENT_PASSES)
    assert sample_site.notes() == ["first", "second"]


def test_rollback_to_a_commit_on_a_dirty_tree_is_refused_before_anything_changes(sample_site):
    serving_release_1(sample_site)
    release_2 = sample_site.commit_change(release("2"), "Release 2")
    assert deploy(sample_site).returncode == 0
    (sample_site.production / "site_release.txt").write_text("edited on the server\n")
    journal_before = records(sample_site)

    finished = manage(sample_site, "rollback", "--commit", sample_site.initial_sha, "--noinput")

    assert finished.returncode == 3, failure_text(finished)
    assert "The checkout has uncommitted changes (site_release.txt)" in finished.stderr
    assert records(sample_site) == journal_before
    assert sample_site.production_head() == release_2
    assert (sample_site.production / "site_release.txt").read_text() == "edited on the server\n"


PINNED = {
    "notes/migrations/0002_note_pinned.py": """from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("notes", "0001_initial")]
    operations = [migrations.AddField("note", "pinned", models.BooleanField(default=False))]
"""
}


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_rollback_to_a_newer_commit_with_migrations_is_refused_and_points_to_deploy(sample_site, engine, request):
    database_url = postgres_url(request.getfixturevalue("postgres_database")) if engine == "postgresql" else "sqlite:///db.sqlite3"
    serving_release_1(sample_site, database_url)
    release_2 = sample_site.commit_change(PINNED, "Release 2: notes can be pinned")
    assert deploy(sample_site).returncode == 0
    assert manage(sample_site, "rollback", "--commit", sample_site.initial_sha, "--noinput").returncode == 0
    journal_before = records(sample_site)

    for arguments in (["--dry-run"], ["--noinput"]):
        finished = manage(sample_site, "rollback", "--commit", release_2, *arguments)

        assert finished.returncode == 3, failure_text(finished)
        assert "has migrations this database has not applied (notes.0002_note_pinned)" in finished.stderr
        assert f"manage.py deploy --ref {release_2}" in finished.stderr
    assert records(sample_site) == journal_before
    assert sample_site.production_head() == sample_site.initial_sha
    assert sample_site.get("/")[0] == 200


def test_an_unreachable_health_url_makes_the_rollback_unverified_not_failed(sample_site):
    serving_release_1(sample_site, HEALTH_CHECK_URL=f"http://127.0.0.1:{free_port()}/health/")
    sample_site.commit_change(release("2"), "Release 2: good, but nobody can see it")

    # A preflight that checks the serving release's health would refuse here; --force, where the
    # command has it, is how an operator goes on (the URL is wrong, the site is fine).
    force = ["--force"] if "--force" in manage(sample_site, "deploy", "--help").stdout else []
    finished = deploy(sample_site, "--health-retries", "1", "--health-delay", "0", *force)

    assert finished.returncode == 2, failure_text(finished)
    assert "NOT brought back" not in finished.stderr
    assert "could not be verified" in finished.stderr
    assert last_record(sample_site)["record"]["status"] == "rollback_unverified"
    assert sample_site.production_head() == sample_site.initial_sha
    assert "release 1" in sample_site.get("/")[1]
