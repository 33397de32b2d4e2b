"""The deploy's preflight, the skippable collectstatic stage and the host-side checks of the verify
stage, end to end on the sample site (commands runtime): issue 9 item 7, issue 18 items 1 and 5."""

import pytest

from tests.e2e.helpers import deploy, failure_text, last_record, records
from tests.e2e.test_deploy_commands_runtime import serving_release_1
from tests.fixtures.sample_site import collectstatic_fails, release

pytestmark = pytest.mark.slow


def test_a_deploy_over_a_site_that_does_not_answer_is_refused_and_force_goes_on(sample_site):
    sample_site.use_commands(HEALTH_CHECK_RETRIES=5, HEALTH_CHECK_DELAY=0.5)
    sample_site.manage("migrate", "--verbosity", "0")  # migrated, but never started
    release_2 = sample_site.commit_change(release("2"), "Release 2")

    refused = deploy(sample_site)

    assert refused.returncode == 3, failure_text(refused)
    assert "does not pass its health check" in refused.stderr and "did not answer" in refused.stderr
    assert "Start the site first" in refused.stderr
    assert sample_site.production_head() == sample_site.initial_sha
    assert records(sample_site) == []

    forced = deploy(sample_site, "--force")

    assert forced.returncode == 0, failure_text(forced)
    assert "Going on anyway (--force)" in forced.stdout
    assert sample_site.production_head() == release_2
    assert sample_site.get("/")[1].startswith("release 2")


def test_a_release_that_collects_its_own_static_files_skips_the_stage(sample_site):
    serving_release_1(sample_site, COLLECT_STATIC=False)
    broken_collectstatic = sample_site.commit_change(collectstatic_fails(), "Release 2: collectstatic would fail")

    finished = deploy(sample_site)

    assert finished.returncode == 0, failure_text(finished)
    assert sample_site.production_head() == broken_collectstatic
    [stage] = [stage for stage in last_record(sample_site)["stages"] if stage["name"] == "collectstatic"]
    assert stage["output_tail"].startswith("skipped: COLLECT_STATIC is False")


def test_the_verify_stage_runs_the_host_checks_on_the_host(sample_site):
    serving_release_1(sample_site, HOST_HEALTH_CHECKS=[["deploy_ops.health.checks.BackupDiskSpace", {"min_free_mb": 10**12}]])
    sample_site.commit_change(release("2"), "Release 2")

    finished = deploy(sample_site)

    assert finished.returncode == 1, failure_text(finished)
    record = last_record(sample_site)["record"]
    assert record["failed_stage"] == "verify"
    assert "BackupDiskSpace" in record["error"]
