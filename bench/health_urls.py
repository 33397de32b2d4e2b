"""Both views side by side: django-health-check's stock view with only its Database check, and ours."""

from django.urls import include, path
from health_check.views import HealthCheckView

urlpatterns = [
    path("stock/health/", HealthCheckView.as_view(checks=["health_check.checks.Database"])),
    path("", include("deploy_ops.health.urls")),
]
