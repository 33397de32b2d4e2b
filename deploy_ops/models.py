"""The audit trail: one DeploymentRecord per deploy, rollback or restore, with its stages.

Records are written through :mod:`deploy_ops.audit`, which also appends them to a journal
file outside the database, so that restoring a backup cannot erase them.
"""

import uuid

from django.db import models
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy


class DeploymentRecord(models.Model):
    class Kind(models.TextChoices):
        DEPLOY = "deploy", pgettext_lazy("record kind", "deploy")
        ROLLBACK = "rollback", pgettext_lazy("record kind", "rollback")
        RESTORE = "restore", pgettext_lazy("record kind", "restore")

    class Status(models.TextChoices):
        RUNNING = "running", pgettext_lazy("record status", "running")
        SUCCEEDED = "succeeded", pgettext_lazy("record status", "succeeded")
        SUCCEEDED_WITH_WARNINGS = "succeeded_with_warnings", pgettext_lazy("record status", "succeeded with warnings")
        FAILED = "failed", pgettext_lazy("record status", "failed")
        ROLLED_BACK = "rolled_back", pgettext_lazy("record status", "rolled back")
        ROLLBACK_FAILED = "rollback_failed", pgettext_lazy("record status", "rollback failed")
        # The process died mid-stage (kill -9, power loss); found by the next deploy or rollback.
        INTERRUPTED = "interrupted", pgettext_lazy("record status", "interrupted")
        # Stopped before anything changed (a backup that could not be written, say): exit 3, no alarm.
        REFUSED = "refused", pgettext_lazy("record status", "refused")
        # The rollback ran every step, but its health URL never answered: not known to be down.
        ROLLBACK_UNVERIFIED = "rollback_unverified", pgettext_lazy("record status", "rolled back, not verified")

    id = models.UUIDField(_("ID"), primary_key=True, default=uuid.uuid4, editable=False)
    kind = models.CharField(_("kind"), max_length=16, choices=Kind.choices, default=Kind.DEPLOY)
    status = models.CharField(_("status"), max_length=32, choices=Status.choices, default=Status.RUNNING)
    requested_ref = models.CharField(_("requested ref"), max_length=255, blank=True)
    from_commit = models.CharField(_("from commit"), max_length=64, blank=True)
    from_summary = models.CharField(_("from summary"), max_length=255, blank=True)
    to_commit = models.CharField(_("to commit"), max_length=64, blank=True)
    to_summary = models.CharField(_("to summary"), max_length=255, blank=True)
    backup_name = models.CharField(_("backup name"), max_length=255, blank=True)
    backup_sha256 = models.CharField(_("backup sha256"), max_length=64, blank=True)
    # The images of the release this run brought up (built, or started from the kept ones), one a line.
    images = models.TextField(_("images"), blank=True)
    # How the deploy went about it: "stop-first" or "zero-downtime" (deploy_ops.migration_safety).
    strategy = models.CharField(_("strategy"), max_length=16, blank=True)
    failed_stage = models.CharField(_("failed stage"), max_length=64, blank=True)
    error = models.TextField(_("error"), blank=True)
    rollback_reason = models.TextField(_("rollback reason"), blank=True)
    warnings = models.TextField(_("warnings"), blank=True)
    notification_failures = models.TextField(_("notification failures"), blank=True)
    user = models.CharField(_("user"), max_length=150, blank=True)
    host = models.CharField(_("host"), max_length=255, blank=True)
    pid = models.PositiveIntegerField(_("PID"), null=True, blank=True)
    started_at = models.DateTimeField(_("started at"))
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)
    duration = models.FloatField(_("duration"), null=True, blank=True, help_text=_("seconds"))

    class Meta:
        verbose_name = _("deployment record")
        verbose_name_plural = _("deployment records")
        ordering = ["-started_at"]
        indexes = [models.Index(fields=["kind", "status"]), models.Index(fields=["to_commit"])]

    def __str__(self):
        target = (self.to_commit or self.requested_ref)[:12]
        return f"{self.kind} {target} {self.status} at {self.started_at:%Y-%m-%d %H:%M:%S}"

    @property
    def succeeded(self) -> bool:
        return self.status in (self.Status.SUCCEEDED, self.Status.SUCCEEDED_WITH_WARNINGS)


class DeploymentStage(models.Model):
    class Status(models.TextChoices):
        RUNNING = "running", pgettext_lazy("stage status", "running")
        SUCCEEDED = "succeeded", pgettext_lazy("stage status", "succeeded")
        FAILED = "failed", pgettext_lazy("stage status", "failed")

    record = models.ForeignKey(DeploymentRecord, on_delete=models.CASCADE, verbose_name=_("record"), related_name="stages")
    position = models.PositiveIntegerField(_("position"))
    name = models.CharField(_("name"), max_length=64)
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.RUNNING)
    started_at = models.DateTimeField(_("started at"))
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)
    duration = models.FloatField(_("duration"), null=True, blank=True, help_text=_("seconds"))
    output_tail = models.TextField(_("output tail"), blank=True)

    class Meta:
        verbose_name = _("stage")
        verbose_name_plural = _("stages")
        ordering = ["record", "position"]
        constraints = [models.UniqueConstraint(fields=["record", "position"], name="deploy_ops_stage_position")]

    def __str__(self):
        return f"{self.position}. {self.name} ({self.status})"


class DeliveryDashboard(DeploymentRecord):
    """No data of its own: it gives the admin's index a link to the delivery dashboard (deploy_ops.admin)."""

    class Meta:
        proxy = True
        verbose_name = verbose_name_plural = _("delivery dashboard")
