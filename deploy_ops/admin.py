"""The records in the admin, read-only, and the delivery dashboard.

The record list shows each outcome as a badge (colour, symbol and words), human durations,
the commit's summary, an error excerpt and the stages as a small bar, in columns that fit
1280 px; the detail page adds the backup's size, age and verification, and links to the
previous and next record. The dashboard (linked from the admin index as "Delivery dashboard")
shows the delivery metrics of :mod:`deploy_ops.metrics` and charts drawn by :mod:`deploy_ops.charts`.
"""

from __future__ import annotations

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.template.response import TemplateResponse
from django.urls import path
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html
from django.utils.text import Truncator
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from . import charts, humanize, metrics
from .backups import NAME_PATTERN, Backup, list_backups
from .conf import ops_settings
from .models import DeliveryDashboard, DeploymentRecord, DeploymentStage
from .stages import stage_label

RECENT_DEPLOYS_CHARTED = 12


class ReadOnlyMixin:
    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


def status_badge(record: DeploymentRecord):
    return format_html(
        '<span class="do-badge do-{}"><span aria-hidden="true">{}</span> {}</span>',
        record.status,
        charts.SYMBOLS.get(record.status, "?"),
        record.get_status_display(),
    )


def error_lines(record: DeploymentRecord) -> list[str]:
    return [line.strip() for line in record.error.splitlines() if line.strip()]


def error_excerpt(record: DeploymentRecord, length: int = 70) -> str:
    """The error's last line: where a failed command's output ends, with the cause, not the command."""
    return Truncator((error_lines(record) or [""])[-1]).chars(length)


def record_backup(record: DeploymentRecord) -> Backup | None:
    """The record's backup in BACKUP_DIR; never fetched from off-host storage to draw a page."""
    path = ops_settings.backup_dir / record.backup_name
    if not record.backup_name or not NAME_PATTERN.match(record.backup_name) or not path.is_file():
        return None
    return Backup.at(path)


class DeploymentStageInline(ReadOnlyMixin, admin.TabularInline):
    model = DeploymentStage
    fields = ("position", "name", "status", "started_at", "human_duration", "output_tail")
    readonly_fields = fields
    extra = 0
    can_delete = False

    @admin.display(description=gettext_lazy("duration"))
    def human_duration(self, stage):
        return humanize.duration(stage.duration)


@admin.register(DeploymentRecord)
class DeploymentRecordAdmin(ReadOnlyMixin, admin.ModelAdmin):
    # Four columns that fit 1280 px beside the admin's menu and filters.
    list_display = ("when", "outcome_and_timing", "change", "failure")
    list_display_links = ("when",)
    list_filter = ("kind", "status", ("started_at", admin.DateFieldListFilter))
    search_fields = ("from_commit", "to_commit", "requested_ref", "from_summary", "to_summary", "backup_name")
    date_hierarchy = "started_at"
    list_per_page = 50
    inlines = [DeploymentStageInline]
    fieldsets = (
        (None, {"fields": ("outcome", "kind", "requested_ref", "started_at", "finished_at", "human_duration", "stages_bar")}),
        (gettext_lazy("Commits"), {"fields": ("from_commit", "from_summary", "to_commit", "to_summary")}),
        (gettext_lazy("Backup"), {"fields": ("backup_name", "backup_details", "backup_sha256")}),
        (gettext_lazy("Failure"), {"fields": ("failed_stage", "error_text", "other_rollback_reason", "warnings", "notification_failures")}),
        (gettext_lazy("Who"), {"fields": ("user", "host", "pid", "id")}),
    )
    readonly_fields = [field for fieldset in fieldsets for field in fieldset[1]["fields"] if isinstance(field, str)]  # no field groups

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("stages")

    @admin.display(description=gettext_lazy("started"), ordering="started_at")
    def when(self, record):
        return format_html(
            '{}<br><span class="do-summary">{}</span>',
            date_format(timezone.localtime(record.started_at), "SHORT_DATETIME_FORMAT"),
            record.get_kind_display(),
        )

    @admin.display(description=gettext_lazy("outcome"), ordering="status")
    def outcome(self, record):
        return status_badge(record)

    @admin.display(description=gettext_lazy("change"), ordering="to_commit")
    def change(self, record):
        return format_html(
            '<code title="{}">{}</code> <span class="do-summary">{}</span>',
            record.to_commit,
            record.to_commit[:8] or record.requested_ref or record.backup_name,
            Truncator(record.to_summary).chars(60),
        )

    @admin.display(description=gettext_lazy("outcome"), ordering="status")
    def outcome_and_timing(self, record):
        return format_html(
            '{}<div class="do-timing">{} {}</div>',
            status_badge(record),
            humanize.duration(record.duration),
            charts.stage_bar(record.stages.all()),
        )

    @admin.display(description=gettext_lazy("duration"), ordering="duration")
    def human_duration(self, record):
        return humanize.duration(record.duration)

    @admin.display(description=gettext_lazy("stages"))
    def stages_bar(self, record):
        return charts.stage_bar(record.stages.all())

    @admin.display(description=gettext_lazy("failure"), ordering="failed_stage")
    def failure(self, record):
        if not record.failed_stage and not record.error:
            return ""
        return format_html(
            '<strong>{}</strong> <span class="do-excerpt" title="{}">{}</span>',
            stage_label(record.failed_stage),
            Truncator(record.error).chars(400),
            error_excerpt(record),
        )

    @admin.display(description=gettext_lazy("error"))
    def error_text(self, record):
        return format_html('<pre class="do-error">{}</pre>', record.error) if record.error else "–"

    @admin.display(description=gettext_lazy("rollback"))
    def other_rollback_reason(self, record):
        # The reason usually repeats the error's first line: show it only when it says more.
        reason = record.rollback_reason
        if not reason or any(line in reason for line in error_lines(record)[:1]):
            return "–"
        return reason

    @admin.display(description=gettext_lazy("backup file"))
    def backup_details(self, record):
        if not record.backup_name:
            return "–"
        backup = record_backup(record)
        if backup is None:
            return _("not on this host (pruned, or taken on another host)")
        verified = {True: _("verified"), False: _("FAILED verification"), None: _("not verified")}[backup.verified]
        return format_html(
            "{} · {} · {} · <code>{}</code>",
            humanize.size(backup.size),
            _("%(age)s ago") % {"age": humanize.age(backup.created_at)},
            verified,
            backup.path,
        )

    def change_view(self, request, object_id, form_url="", extra_context=None):
        record = self.get_object(request, object_id)
        extra_context = dict(extra_context or {})
        if record is not None:
            older = DeploymentRecord.objects.filter(started_at__lt=record.started_at).order_by("-started_at").first()
            newer = DeploymentRecord.objects.filter(started_at__gt=record.started_at).order_by("started_at").first()
            extra_context.update(previous_record=older, next_record=newer)
        return super().change_view(request, object_id, form_url, extra_context)


@admin.register(DeliveryDashboard)
class DeliveryDashboardAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """The admin index's "Delivery dashboard" entry: its list page is the dashboard."""

    def get_urls(self):
        # Only the dashboard: the records themselves are DeploymentRecordAdmin's.
        return [path("", self.admin_site.admin_view(self.changelist_view), name="deploy_ops_deliverydashboard_changelist")]

    def has_view_permission(self, request, obj=None):
        return request.user.has_perm("deploy_ops.view_deploymentrecord")

    def has_module_permission(self, request):
        return self.has_view_permission(request)

    def changelist_view(self, request, extra_context=None):
        if not self.has_view_permission(request):
            raise PermissionDenied
        try:
            days = int(request.GET.get("days", 30))
        except ValueError:
            days = 30
        days = days if days in metrics.WINDOWS else 30
        now = timezone.now()
        since, until = charts.window_bounds(days, now)
        records = list(DeploymentRecord.objects.filter(started_at__gte=since).prefetch_related("stages").order_by("started_at"))
        recent = [r for r in reversed(records) if r.kind == DeploymentRecord.Kind.DEPLOY][:RECENT_DEPLOYS_CHARTED]
        backups = [charts.BackupPoint(b.name, b.created_at, b.size) for b in list_backups()]
        windows = metrics.every_window(now)
        context = {
            **self.admin_site.each_context(request),
            "title": _("Delivery dashboard"),
            "opts": self.model._meta,
            "days": days,
            "windows": windows,
            "window_choices": metrics.WINDOWS,
            "rows": metric_rows(windows),
            "timeline": charts.outcome_timeline(records, since, until),
            "stage_chart": charts.stage_durations(list(reversed(recent))),
            "backup_chart": charts.backup_sizes(sorted(backups, key=lambda b: b.created_at), since, until),
            "legend": [(status, charts.SYMBOLS[status], status.label) for status in DeploymentRecord.Status],
            **(extra_context or {}),
        }
        return TemplateResponse(request, "admin/deploy_ops/dashboard.html", context)


def metric_rows(windows: list[metrics.DeliveryMetrics]) -> list[tuple[str, list[str]]]:
    """The metrics table: one row per metric, one column per window."""
    described = [metrics.describe(window) for window in windows]
    return [(label, [column[index][1] for column in described]) for index, (label, _value) in enumerate(described[0])]
