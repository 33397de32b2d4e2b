from django.apps import AppConfig


class DeployOpsConfig(AppConfig):
    name = "deploy_ops"
    verbose_name = "Deploy operations"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from . import checks  # noqa: F401  (registers the system checks)
