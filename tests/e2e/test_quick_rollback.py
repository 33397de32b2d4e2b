"""``rollback --quick`` picks the release that served before the current one and the newest backup
taken while it served (issue 9, item 1), and refuses a backup that is not the one on record
(issue 16, item 5).  Commands runtime, SQLite, real git."""

import shutil

import pytest

from tests.e2e.helpers import deploy, failure_text, manage, records
from tests.e2e.test_deploy_commands_runtime import serving_release_1
from tests.e2e.test_rollback_commands_runtime import add_note
from tests.fixtures.sample_site import flags, health_fails, release

pytestmark = pytest.mark.slow


def deploy_and_get_backup(site, expected_exit: int) -> str:
    finished = deploy(site, *(["--health-retries", "1"] if expected_exit else []))
    assert finished.returncode == expected_exit, failure_text(finished)
    return records(site)[-1]["record"]["backup_name"]


def test_quick_restores_the_newest_backup_of_the_previous_release_not_the_one_before_a_failed_deploy(sample_site):
    serving_release_1(sample_site)
    sample_site.commit_change(health_fails(), "Release 2: unhealthy")
    backup_before_the_failed_deploy = deploy_and_get_backup(sample_site, 1)
    add_note(sample_site, "written after release 2 was rolled back")
    release_3 = sample_site.commit_change({**release("3"), **flags()}, "Release 3")
    backup_holding_the_write = deploy_and_get_backup(sample_site, 0)

    finished = manage(sample_site, "rollback", "--quick", "--noinput")

    assert finished.returncode == 0, failure_text(finished)
    assert sample_site.production_head() == sample_site.initial_sha != release_3
    assert records(sample_site)[-1]["record"]["backup_name"] == backup_holding_the_write != backup_before_the_failed_deploy
    assert sample_site.notes() == ["first", "second", "written after release 2 was rolled back"]
    assert "every write made since then will be replaced (the safety backup keeps them)" in finished.stdout


def test_quick_dry_run_after_a_failed_deploy_between_two_good_ones_picks_the_newest_backup_and_says_its_age(sample_site):
    serving_release_1(sample_site)
    release_f = sample_site.commit_change(release("f"), "Release f")
    deploy_and_get_backup(sample_site, 0)
    sample_site.commit_change(health_fails(), "Release d: unhealthy")
    backup_d1 = deploy_and_get_backup(sample_site, 1)
    sample_site.commit_change({**release("g"), **flags()}, "Release g")
    backup_g1 = deploy_and_get_backup(sample_site, 0)

    dry = manage(sample_site, "rollback", "--quick", "--dry-run")

    assert dry.returncode == 0, failure_text(dry)
    assert f"check out {release_f[:12]} (Release f)" in dry.stdout
    assert f"restore {backup_g1}" in dry.stdout and backup_d1 not in dry.stdout
    assert f"{backup_g1} is " in dry.stdout and " old (taken " in dry.stdout
    assert "every write made since then will be replaced" in dry.stdout
    assert "Dry run: nothing was changed." in dry.stdout


def test_quick_refuses_a_backup_swapped_together_with_its_metadata(sample_site):
    serving_release_1(sample_site)
    sample_site.commit_change(release("2"), "Release 2")
    on_record = deploy_and_get_backup(sample_site, 0)
    add_note(sample_site, "not in the backup on record")
    folder = sample_site.production / "backups"
    other = folder / sample_site.manage("backups", "create").strip().rsplit("/", 1)[-1]
    for suffix in ("", ".json"):
        shutil.copyfile(f"{other}{suffix}", folder / f"{on_record}{suffix}")
    journal_before = records(sample_site)

    finished = manage(sample_site, "rollback", "--quick", "--noinput")

    assert finished.returncode == 3, failure_text(finished)
    assert f"{on_record} is not the backup the deploy" in finished.stderr
    assert records(sample_site) == journal_before
    assert sample_site.notes() == ["first", "second", "not in the backup on record"]
