"""The one CLI manner end to end, on the sample site with the commands runtime (no Docker):
`deploy --json` reports the result of a real deploy on stdout alone, and a deploy run from a
script without --noinput refuses before anything changes, as does a no (or Ctrl-D) at the prompt."""

import json
import os
import subprocess
import sys

import pexpect
import pytest

from tests.e2e.helpers import deploy, failure_text, manage, records
from tests.e2e.test_deploy_commands_runtime import serving_release_1
from tests.fixtures.sample_site import release

pytestmark = pytest.mark.slow


def test_deploy_json_prints_the_deploys_result_and_record_on_stdout_alone(sample_site):
    serving_release_1(sample_site)
    new_sha = sample_site.commit_change(release("2"), "Release 2")

    finished = deploy(sample_site, "--json", "--verbosity", "3")

    assert finished.returncode == 0, failure_text(finished)
    result = json.loads(finished.stdout)
    assert (result["exit_code"], result["dry_run"]) == (0, False)
    assert (result["record"]["status"], result["record"]["to_commit"], result["record"]["kind"]) == ("succeeded", new_sha, "deploy")
    # The stages and, at -v 3, every command went to stderr.
    assert "migrate: ok" in finished.stderr and "$ git checkout --quiet --detach " + new_sha in finished.stderr


def test_a_deploy_from_a_script_without_noinput_refuses_and_changes_nothing(sample_site):
    serving_release_1(sample_site)
    sample_site.commit_change(release("2"), "Release 2")

    finished = manage(sample_site, "deploy", stdin=subprocess.DEVNULL)

    assert finished.returncode == 3, failure_text(finished)
    assert "Refusing to deploy without confirmation: stdin is not a terminal. Pass --noinput" in finished.stderr
    assert sample_site.production_head() == sample_site.initial_sha
    assert records(sample_site) == []


@pytest.mark.parametrize("answer", ["n", "EOF"])
def test_a_deploy_on_a_terminal_asks_and_a_no_or_ctrl_d_changes_nothing(sample_site, answer):
    serving_release_1(sample_site)
    sample_site.commit_change(release("2"), "Release 2")
    command = pexpect.spawn(
        sys.executable,
        ["manage.py", "deploy"],
        cwd=str(sample_site.production),
        env=dict(os.environ),
        encoding="utf-8",
        timeout=120,
        dimensions=(50, 200),
    )

    command.expect_exact("Deploy? [y/N] ")
    command.sendeof() if answer == "EOF" else command.sendline(answer)
    command.expect(pexpect.EOF)
    command.close()

    assert command.exitstatus == 3, command.before
    assert "Cancelled at the confirmation prompt" in command.before and "Traceback" not in command.before
    assert sample_site.production_head() == sample_site.initial_sha
