"""A read-only audit in the admin: records can be browsed and searched, never edited."""

from django.contrib import admin

from .models import DeploymentRecord, DeploymentStage


class ReadOnlyMixin:
    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class DeploymentStageInline(ReadOnlyMixin, admin.TabularInline):
    model = DeploymentStage
    fields = ("position", "name", "status", "started_at", "duration", "output_tail")
    readonly_fields = fields
    extra = 0
    can_delete = False


@admin.register(DeploymentRecord)
class DeploymentRecordAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("started_at", "kind", "status", "short_from", "short_to", "failed_stage", "backup_name", "duration", "user", "host")
    list_filter = ("kind", "status", ("started_at", admin.DateFieldListFilter))
    search_fields = ("from_commit", "to_commit", "requested_ref", "from_summary", "to_summary", "backup_name")
    date_hierarchy = "started_at"
    inlines = [DeploymentStageInline]
    fieldsets = (
        (None, {"fields": ("id", "kind", "status", "requested_ref", "started_at", "finished_at", "duration")}),
        ("Commits", {"fields": ("from_commit", "from_summary", "to_commit", "to_summary")}),
        ("Backup", {"fields": ("backup_name", "backup_sha256")}),
        ("Failure", {"fields": ("failed_stage", "error", "rollback_reason", "warnings", "notification_failures")}),
        ("Who", {"fields": ("user", "host", "pid")}),
    )
    readonly_fields = [field for fieldset in fieldsets for field in fieldset[1]["fields"]]

    @admin.display(description="from", ordering="from_commit")
    def short_from(self, record):
        return record.from_commit[:12]

    @admin.display(description="to", ordering="to_commit")
    def short_to(self, record):
        return record.to_commit[:12]
