"""Include from the project's urls: ``path("", include("deploy_ops.health.urls"))``."""

from django.urls import path

from . import views

app_name = "deploy_ops_health"

urlpatterns = [
    path("health/", views.HealthView.as_view(), name="health"),
    path("health/live/", views.live, name="live"),
]
