from django.contrib import admin
from django.urls import path

from . import views

urlpatterns = [
    path("", views.release),
    path("health/live/", views.live),
    path("health/", views.health),
    path("admin/", admin.site.urls),
]
