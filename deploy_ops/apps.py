from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class DeployOpsConfig(AppConfig):
    name = "deploy_ops"
    verbose_name = _("Deploy operations")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from . import checks  # noqa: F401  (registers the system checks)
