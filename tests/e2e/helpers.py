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
