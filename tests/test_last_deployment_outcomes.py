"""LastDeployment and the two outcomes issue 9 added: a refusal, and a rollback that could not be verified."""

from datetime import timedelta

import pytest
from django.utils import timezone
from health_check.exceptions import ServiceUnavailable, ServiceWarning

from deploy_ops.health.checks import LastDeployment
from deploy_ops.models import DeploymentRecord

Kind, Status = DeploymentRecord.Kind, DeploymentRecord.Status


def record(status, age_minutes, kind=Kind.DEPLOY, **fields):
    return DeploymentRecord.objects.create(kind=kind, status=status, started_at=timezone.now() - timedelta(minutes=age_minutes), **fields)


@pytest.mark.django_db
@pytest.mark.parametrize("kind", [Kind.DEPLOY, Kind.ROLLBACK])
def test_a_refusal_changed_nothing_so_the_record_before_it_decides(kind):
    record(Status.SUCCEEDED, 60)
    record(Status.REFUSED, 1, kind=kind, failed_stage="backup")
    LastDeployment().check_record()


@pytest.mark.django_db
def test_a_refusal_does_not_hide_an_earlier_failure():
    record(Status.ROLLBACK_FAILED, 60, failed_stage="migrate")
    record(Status.REFUSED, 1)
    with pytest.raises(ServiceUnavailable, match="its rollback failed too"):
        LastDeployment().check_record()


@pytest.mark.django_db
def test_an_unverified_rollback_is_a_warning_that_names_the_health_url():
    record(Status.ROLLBACK_UNVERIFIED, 1, failed_stage="health", to_commit="e" * 40)
    with pytest.raises(ServiceWarning, match="HEALTH_CHECK_URL never answered"):
        LastDeployment().check_record()
