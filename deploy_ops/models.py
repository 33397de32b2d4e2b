"""The audit trail: one DeploymentRecord per deploy, rollback or restore, with its stages.

Records are written through :mod:`deploy_ops.audit`, which also appends them to a journal
file outside the database, so that restoring a backup cannot erase them.
"""

import uuid

from django.db import models


class DeploymentRecord(models.Model):
    class Kind(models.TextChoices):
        DEPLOY = "deploy", "deploy"
        ROLLBACK = "rollback", "rollback"
        RESTORE = "restore", "restore"

    class Status(models.TextChoices):
        RUNNING = "running", "running"
        SUCCEEDED = "succeeded", "succeeded"
        SUCCEEDED_WITH_WARNINGS = "succeeded_with_warnings", "succeeded with warnings"
        FAILED = "failed", "failed"
        ROLLED_BACK = "rolled_back", "rolled back"
        ROLLBACK_FAILED = "rollback_failed", "rollback failed"
        # The process died mid-stage (kill -9, power loss); found by the next deploy or rollback.
        INTERRUPTED = "interrupted", "interrupted"
        # Stopped before anything changed (a backup that could not be written, say): exit 3, no alarm.
        REFUSED = "refused", "refused"
        # The rollback ran every step, but its health URL never answered: not known to be down.
        ROLLBACK_UNVERIFIED = "rollback_unverified", "rolled back, not verified"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.DEPLOY)
    status = models.CharField(max_length=32, choices=Status.choices, default=Status.RUNNING)
    requested_ref = models.CharField(max_length=255, blank=True)
    from_commit = models.CharField(max_length=64, blank=True)
    from_summary = models.CharField(max_length=255, blank=True)
    to_commit = models.CharField(max_length=64, blank=True)
    to_summary = models.CharField(max_length=255, blank=True)
    backup_name = models.CharField(max_length=255, blank=True)
    backup_sha256 = models.CharField(max_length=64, blank=True)
    # The images of the release this run brought up (built, or started from the kept ones), one a line.
    images = models.TextField(blank=True)
    # How the deploy went about it: "stop-first" or "zero-downtime" (deploy_ops.migration_safety).
    strategy = models.CharField(max_length=16, blank=True)
    failed_stage = models.CharField(max_length=64, blank=True)
    error = models.TextField(blank=True)
    rollback_reason = models.TextField(blank=True)
    warnings = models.TextField(blank=True)
    notification_failures = models.TextField(blank=True)
    user = models.CharField(max_length=150, blank=True)
    host = models.CharField(max_length=255, blank=True)
    pid = models.PositiveIntegerField(null=True, blank=True)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    duration = models.FloatField(null=True, blank=True, help_text="seconds")

    class Meta:
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
        RUNNING = "running", "running"
        SUCCEEDED = "succeeded", "succeeded"
        FAILED = "failed", "failed"

    record = models.ForeignKey(DeploymentRecord, on_delete=models.CASCADE, related_name="stages")
    position = models.PositiveIntegerField()
    name = models.CharField(max_length=64)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    duration = models.FloatField(null=True, blank=True, help_text="seconds")
    output_tail = models.TextField(blank=True)

    class Meta:
        ordering = ["record", "position"]
        constraints = [models.UniqueConstraint(fields=["record", "position"], name="deploy_ops_stage_position")]

    def __str__(self):
        return f"{self.position}. {self.name} ({self.status})"


class DeliveryDashboard(DeploymentRecord):
    """No data of its own: it gives the admin's index a link to the delivery dashboard (deploy_ops.admin)."""

    class Meta:
        proxy = True
        verbose_name = verbose_name_plural = "delivery dashboard"
