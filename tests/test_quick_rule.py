"""The rule behind ``rollback --quick``, on records alone: which release it goes back to, and which backup."""

from datetime import timedelta

import pytest
from django.utils import timezone

from deploy_ops.exceptions import PreflightFailed
from deploy_ops.models import DeploymentRecord
from deploy_ops.rollback import newest_backup_of, quick_target

Kind, Status = DeploymentRecord.Kind, DeploymentRecord.Status
START = timezone.now() - timedelta(days=1)


def history(*entries):
    """Records one minute apart: (kind, status, from, to, backup)."""
    for minute, (kind, status, from_commit, to_commit, backup) in enumerate(entries):
        DeploymentRecord.objects.create(
            kind=kind,
            status=status,
            from_commit=from_commit,
            to_commit=to_commit,
            backup_name=backup,
            started_at=START + timedelta(minutes=minute),
        )


@pytest.mark.django_db
def test_the_target_is_what_served_before_the_deploy_that_brought_the_current_commit():
    history(
        (Kind.DEPLOY, Status.SUCCEEDED, "r1", "r2", "b-r1"),
        (Kind.DEPLOY, Status.ROLLED_BACK, "r2", "bad", "b-r2-a"),
        (Kind.DEPLOY, Status.SUCCEEDED, "r2", "r3", "b-r2-b"),
    )
    assert quick_target("r3").from_commit == "r2"
    assert newest_backup_of("r2").backup_name == "b-r2-b"


@pytest.mark.django_db
def test_an_interrupted_or_dead_deploy_counts_as_having_brought_its_commit():
    history((Kind.DEPLOY, Status.SUCCEEDED, "r1", "r2", "b1"), (Kind.DEPLOY, Status.RUNNING, "r2", "r3", "b2"))
    assert quick_target("r3").from_commit == "r2"


@pytest.mark.django_db
def test_a_release_rolled_back_away_from_is_never_the_target():
    history(
        (Kind.DEPLOY, Status.SUCCEEDED, "r1", "r2", "b-r1"),
        (Kind.DEPLOY, Status.SUCCEEDED, "r2", "r3", "b-r2"),
        (Kind.ROLLBACK, Status.SUCCEEDED, "r3", "r2", "b-r2"),
    )
    assert quick_target("r2").from_commit == "r1"


@pytest.mark.django_db
def test_a_refused_rollback_moved_nothing_and_rules_out_nothing():
    history(
        (Kind.DEPLOY, Status.SUCCEEDED, "r1", "r2", "b-r1"),
        (Kind.ROLLBACK, Status.REFUSED, "r1", "r2", ""),
    )
    assert quick_target("r2").from_commit == "r1"


@pytest.mark.django_db
def test_without_a_deploy_that_brought_the_current_commit_quick_refuses():
    history((Kind.DEPLOY, Status.ROLLED_BACK, "r1", "r2", "b1"))
    with pytest.raises(PreflightFailed, match="No deploy on record brought the current r2"):
        quick_target("r2")
