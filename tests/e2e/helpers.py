"""Driving ``manage.py deploy`` / ``rollback`` as an operator does: a real process in the production checkout."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path


def manage(site, *arguments: str, timeout: float = 600, stdin=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *arguments],
        cwd=site.production,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL if stdin is None else stdin,
    )


def deploy(site, *arguments: str) -> subprocess.CompletedProcess:
    return manage(site, "deploy", "--noinput", *arguments)


def records(site) -> list[dict]:
    """The newest snapshot of every record in the journal, oldest first."""
    newest: dict[str, dict] = {}
    path = Path(site.production) / "logs" / "deployments.jsonl"
    for line in path.read_text().splitlines() if path.exists() else []:
        snapshot = json.loads(line)
        newest[snapshot["record"]["id"]] = snapshot
    return list(newest.values())


def last_record(site) -> dict:
    return records(site)[-1]


def database_records(site) -> list[dict]:
    """What the DeploymentRecord table holds (the admin's view), oldest first."""
    script = (
        "import json; from deploy_ops.models import DeploymentRecord as R; "
        "print(json.dumps([{'id': str(r.id), 'status': r.status, 'kind': r.kind, 'stages': [s.name for s in r.stages.all()]} "
        "for r in R.objects.order_by('started_at')]))"
    )
    return json.loads(site.manage("shell", "--verbosity", "0", "-c", script))


def events(site) -> list[str]:
    path = Path(site.production) / "logs" / "notifications.log"
    return [json.loads(line)["level"] for line in path.read_text().splitlines()] if path.exists() else []


def wait_for(condition, timeout: float = 60, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(interval)
    raise AssertionError(f"gave up waiting after {timeout}s for {condition}")


def failure_text(finished: subprocess.CompletedProcess) -> str:
    return f"exit {finished.returncode}\n--- stdout\n{finished.stdout}\n--- stderr\n{finished.stderr}"


def deploy_a_release_that_cannot_start_again(site) -> tuple[str, str]:
    """Deploys release A, whose URLconf (loaded when its server starts, not by manage.py deploy)
    reads a file only the host's checkout holds, then removes that file: release A runs on, but
    could not start again.  Returns (release A's sha, the URLconf without that line)."""
    urls = (site.work / "sitecfg" / "urls.py").read_text()
    needs_host_file = urls + '\nfrom pathlib import Path\n\n(Path(__file__).resolve().parent.parent / "host-file.txt").read_text()\n'
    (site.production / "host-file.txt").write_text("present")
    release_a = site.commit_change({"sitecfg/urls.py": needs_host_file}, "Release A: needs host-file.txt")
    finished = deploy(site)
    assert finished.returncode == 0, failure_text(finished)
    (site.production / "host-file.txt").unlink()
    return release_a, urls


def assert_rollback_failed(site, finished, release_a: str) -> list[str]:
    """Exit 2, a rollback_failed record, ROLLBACK_FAILED last, the code left at release A; returns the failed stages."""
    assert finished.returncode == 2, failure_text(finished)
    assert "ROLLBACK FAILED" in finished.stdout
    snapshot = last_record(site)
    assert snapshot["record"]["status"] == "rollback_failed"
    assert site.production_head() == release_a
    assert events(site)[-2:] == ["ERROR", "ROLLBACK_FAILED"]
    return [stage["name"] for stage in snapshot["stages"] if stage["status"] == "failed"]


def serve_release_1_on_compose(site, compose_command: list[str], database_url: str) -> dict:
    """Production at release 1 under Compose, migrated, serving, with two notes; returns DEPLOY_OPS."""
    ops = site.use_compose(compose_command, database_url, HEALTH_CHECK_RETRIES=5, HEALTH_CHECK_DELAY=1)
    started = subprocess.run(
        [*compose_command, "up", "--detach", "--build", "--wait", "--wait-timeout", "90"],
        cwd=site.production,
        capture_output=True,
        text=True,
    )
    assert started.returncode == 0, started.stderr
    site.manage("migrate", "--verbosity", "0")
    site.manage("shell", "-c", "from notes.models import Note; Note.objects.create(text='first'); Note.objects.create(text='second')")
    return ops


def start_release_1_with_a_note(site, compose_command: list[str]) -> None:
    """The first release up on Compose (built, migrated) with one note written: what a proxy test puts nginx in front of."""
    started = subprocess.run(
        [*compose_command, "up", "--detach", "--build", "--wait", "--wait-timeout", "90"],
        cwd=site.production,
        capture_output=True,
        text=True,
    )
    assert started.returncode == 0, started.stderr
    site.manage("migrate", "--verbosity", "0")
    site.manage("shell", "-c", "from notes.models import Note; Note.objects.create(text='first')")
