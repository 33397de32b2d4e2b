from django.contrib import admin
from django.urls import include, path

from . import views

urlpatterns = [
    path("", views.release),
    # /health/ (what monitors and the deploy poll) and /health/live/ (the container's healthcheck).
    path("", include("deploy_ops.health.urls")),
    path("admin/", admin.site.urls),
]
