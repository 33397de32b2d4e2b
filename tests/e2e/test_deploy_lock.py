"""A broken lock file is not "held forever": a deploy refuses it, and --break-lock clears it."""

import pytest

from tests.e2e.helpers import deploy, failure_text, records
from tests.e2e.test_deploy_commands_runtime import serving_release_1
from tests.fixtures.sample_site import release

pytestmark = pytest.mark.slow


def test_an_empty_lock_file_is_refused_as_stale_and_break_lock_clears_it(sample_site):
    serving_release_1(sample_site)
    new_sha = sample_site.commit_change(release("2"), "Release 2")
    lock = sample_site.production / ".deploy_ops" / "deploy.lock"
    lock.parent.mkdir(exist_ok=True)
    lock.write_text("")  # what a run killed between creating and writing the old lock file left

    refused = deploy(sample_site)
    assert refused.returncode == 3, failure_text(refused)
    assert "empty or unreadable" in refused.stderr and "--break-lock" in refused.stderr

    forced = deploy(sample_site, "--break-lock")
    assert forced.returncode == 0, failure_text(forced)
    assert "Broke the stale lock" in forced.stdout
    assert sample_site.production_head() == new_sha
    assert [snapshot["record"]["status"] for snapshot in records(sample_site)] == ["succeeded"]
    assert not lock.exists()
