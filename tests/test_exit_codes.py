"""Exit 1 means only "rolled back, the previous release serves": nothing else can end with it."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from deploy_ops.exceptions import EXIT_UNEXPECTED, EXIT_USAGE

REPOSITORY = Path(__file__).resolve().parents[1]


def manage(*arguments: str, **environment: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *arguments],
        cwd=REPOSITORY,
        env={**os.environ, **environment},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    "arguments", [["deploy", "--health-retries", "abc"], ["rollback", "--commit"], ["rollback", "--quick", "--backup", "x"]]
)
def test_a_usage_error_exits_with_its_own_code(arguments):
    finished = manage(*arguments)
    assert finished.returncode == EXIT_USAGE == 5, finished.stderr
    assert "error:" in finished.stderr


def test_an_unexpected_error_exits_with_its_own_code_and_one_short_message(tmp_path):
    for arguments in (
        ["init", "--quiet"],
        ["-c", "user.name=T", "-c", "user.email=t@example.org", "commit", "--quiet", "--allow-empty", "-m", "one"],
    ):
        subprocess.run(["git", *arguments], cwd=tmp_path, check=True, capture_output=True)
    # Nothing listens on port 1: the database query in --status fails with a driver error deploy_ops does not expect.
    finished = manage("rollback", "--status", DATABASE_URL="postgres://postgres@127.0.0.1:1/none", DEPLOY_OPS_PROJECT_DIR=str(tmp_path))
    assert finished.returncode == EXIT_UNEXPECTED == 4, finished.stderr
    assert finished.stderr.startswith("CommandError: Unexpected error: OperationalError")
    assert "Traceback" not in finished.stderr


def test_help_still_exits_0():
    assert manage("rollback", "--help").returncode == 0
