"""A deploy history for the dashboard's tests: real records and stages in the database, and real
commits in a git checkout (the lead time is read from them)."""

from __future__ import annotations

import subprocess
from datetime import datetime, timedelta
from pathlib import Path

from deploy_ops.models import DeploymentRecord, DeploymentStage

Status = DeploymentRecord.Status
STAGES = ("backup", "checkout", "build", "start", "migrate", "collectstatic", "health", "verify")


def commit(project: Path, message: str, when: datetime) -> str:
    """A commit dated ``when`` in the git checkout at ``project`` (created on first use)."""
    environ = {
        "GIT_AUTHOR_DATE": when.isoformat(),
        "GIT_COMMITTER_DATE": when.isoformat(),
        "HOME": str(project),
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.org",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.org",
    }
    if not (project / ".git").exists():
        subprocess.run(["git", "init", "-q", str(project)], check=True)
    subprocess.run(["git", "-C", str(project), "commit", "-q", "--allow-empty", "-m", message], check=True, env=environ)
    return subprocess.run(["git", "-C", str(project), "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()


def record(
    started_at: datetime,
    status: str,
    *,
    kind: str = DeploymentRecord.Kind.DEPLOY,
    seconds: float = 90,
    to_commit: str = "",
    summary: str = "",
    failed_stage: str = "",
    error: str = "",
    stage_seconds: dict[str, float] | None = None,
    **fields,
) -> DeploymentRecord:
    finished = None if status == Status.RUNNING else started_at + timedelta(seconds=seconds)
    made = DeploymentRecord.objects.create(
        kind=kind,
        status=status,
        started_at=started_at,
        finished_at=finished,
        duration=seconds if finished else None,
        from_commit="0" * 40,
        from_summary="The release before",
        to_commit=to_commit,
        to_summary=summary,
        failed_stage=failed_stage,
        error=error,
        user="ops",
        host="prod-1",
        **fields,
    )
    moment = started_at
    for position, (name, duration) in enumerate((stage_seconds or {}).items(), start=1):
        stage_status = DeploymentStage.Status.FAILED if name == failed_stage else DeploymentStage.Status.SUCCEEDED
        DeploymentStage.objects.create(
            record=made,
            position=position,
            name=name,
            status=stage_status,
            started_at=moment,
            finished_at=moment + timedelta(seconds=duration),
            duration=duration,
        )
        moment += timedelta(seconds=duration)
    return made


def history(project: Path, now: datetime) -> dict[str, DeploymentRecord]:
    """Five deploys of the last week, one of each outcome an operator must tell apart, and the rollback
    that repaired the failed rollback. Commits are made two hours before each deploy."""
    stages = dict(zip(STAGES, (4, 1, 38, 6, 12, 3, 5, 2), strict=True))
    made = {}
    plan = [
        ("succeeded", now - timedelta(days=6), Status.SUCCEEDED, "Add the invoice export", "", ""),
        (
            "rolled_back",
            now - timedelta(days=5),
            Status.ROLLED_BACK,
            "Rename the customer table",
            "migrate",
            "Command 'docker compose exec -T web python manage.py migrate' failed with exit "
            'code 1:\n  django.db.utils.ProgrammingError: relation "customer" does not exist',
        ),
        (
            "rollback_failed",
            now - timedelta(days=3),
            Status.ROLLBACK_FAILED,
            "Upgrade the payment SDK",
            "health",
            "The health check failed after 3 attempts: HTTP 500\n\nThe rollback failed too: the database restore failed",
        ),
        (
            "interrupted",
            now - timedelta(days=2),
            Status.INTERRUPTED,
            "Cache the price list",
            "build",
            "Process 4242 on prod-1 died mid-run; found by a later run.",
        ),
        (
            "refused",
            now - timedelta(days=1, hours=12),
            Status.REFUSED,
            "Tidy the settings",
            "backup",
            "Refused: the backup directory is not writable",
        ),
    ]
    for key, started, status, summary, failed_stage, error in plan:
        sha = commit(project, summary, started - timedelta(hours=2))
        stage_seconds = {name: seconds for name, seconds in stages.items()}
        if failed_stage:
            stage_seconds = dict(list(stage_seconds.items())[: STAGES.index(failed_stage) + 1])
        made[key] = record(
            started,
            status,
            to_commit=sha,
            summary=summary,
            failed_stage=failed_stage,
            error=error,
            stage_seconds=stage_seconds,
            seconds=sum(stage_seconds.values()) + (40 if status == Status.ROLLED_BACK else 0),
            backup_name="backup_20261124_101500.sql.gz" if key == "succeeded" else "",
            rollback_reason=f"Stage {failed_stage!r} failed: {error.splitlines()[0]}" if error else "",
        )
    made["repair"] = record(
        now - timedelta(days=3) + timedelta(minutes=30),
        Status.SUCCEEDED,
        kind=DeploymentRecord.Kind.ROLLBACK,
        to_commit=made["succeeded"].to_commit,
        summary="Add the invoice export",
        seconds=120,
    )
    return made
