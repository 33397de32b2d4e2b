"""The views side by side: django-health-check's stock view with only its Database check, the stock
view running the same checks as ours (DEPLOY_OPS['HEALTH_CHECKS'], which bench_health.py sets to
HEALTH_CHECKS + HOST_HEALTH_CHECKS), and ours."""

from django.urls import include, path
from health_check.views import HealthCheckView

from deploy_ops.health.checks import configured_check_entries

urlpatterns = [
    path("stock/health/", HealthCheckView.as_view(checks=["health_check.checks.Database"])),
    path("stock/health/same-checks/", HealthCheckView.as_view(checks=configured_check_entries())),
    path("", include("deploy_ops.health.urls")),
]
