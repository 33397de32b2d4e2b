"""The dashboard's charts, drawn on the server as inline SVG: nothing is fetched at run time.

Colours come from CSS classes (``deploy_ops/dashboard.css``), and text and axes use the admin's
own variables (``--body-fg``, ``--hairline-color``), so a chart reads in the light and the dark
theme alike. Every mark has a ``<title>`` (a tooltip, and what a screen reader says), and an
outcome is told by its symbol as well as its colour.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.template.defaultfilters import filesizeformat
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext as _

from . import humanize
from .models import DeploymentRecord
from .stages import stage_label

Status = DeploymentRecord.Status
# The symbol shown beside the colour of each outcome (in badges, the timeline and legends).
SYMBOLS: dict[str, str] = {
    Status.RUNNING: "…",
    Status.SUCCEEDED: "✓",
    Status.SUCCEEDED_WITH_WARNINGS: "!",
    Status.FAILED: "✗",
    Status.ROLLED_BACK: "↺",
    Status.ROLLBACK_FAILED: "‼",
    Status.INTERRUPTED: "⚡",
    Status.REFUSED: "⊘",
    Status.ROLLBACK_UNVERIFIED: "?",
}
STAGE_COLOURS = 8  # .do-stage-0 … .do-stage-7 in dashboard.css
WIDTH = 760
LEFT = 120


@dataclass(frozen=True)
class BackupPoint:
    name: str
    created_at: datetime
    size: int


def _number(value: float) -> str:
    """A coordinate as SVG wants it (format_html escapes its arguments to text, so numbers go in formatted)."""
    return f"{value:.1f}"


def _svg(height: int, label: str, body: SafeString) -> SafeString:
    return format_html(
        '<svg class="do-chart" viewBox="0 0 {} {}" width="100%" role="img" aria-label="{}">{}</svg>',
        WIDTH,
        height,
        label,
        body,
    )


def _empty(label: str, why: str) -> SafeString:
    return format_html('<p class="do-empty" aria-label="{}">{}</p>', label, why)


def outcome_timeline(records: list[DeploymentRecord], since: datetime, until: datetime) -> SafeString:
    """One row per kind (deploy, rollback, restore); each record a symbol in its outcome's colour."""
    label = _("Deploy history by outcome")
    if not records:
        return _empty(label, _("No deploys, rollbacks or restores in this period."))
    span = max((until - since).total_seconds(), 1)
    kinds = list(DeploymentRecord.Kind)
    rows = []
    for row, kind in enumerate(kinds):
        y = 20 + row * 30
        rows.append(
            format_html(
                '<text class="do-axis-label" x="0" y="{}">{}</text><line class="do-grid" x1="{}" x2="{}" y1="{}" y2="{}"/>',
                y + 4,
                kind.label,
                LEFT,
                WIDTH - 10,
                y,
                y,
            )
        )
    marks = []
    for record in records:
        x = LEFT + (WIDTH - LEFT - 20) * max(0.0, (record.started_at - since).total_seconds()) / span
        y = 20 + kinds.index(DeploymentRecord.Kind(record.kind)) * 30
        title = f"{record.started_at:%Y-%m-%d %H:%M} {record.get_kind_display()} {record.to_commit[:12]}: {record.get_status_display()}"
        marks.append(
            format_html(
                '<g class="do-mark do-{}"><circle cx="{}" cy="{}" r="8"/>'
                '<text x="{}" y="{}" text-anchor="middle">{}</text><title>{}</title></g>',
                record.status,
                _number(x),
                y,
                _number(x),
                y + 4,
                SYMBOLS.get(record.status, "?"),
                title,
            )
        )
    axis = format_html(
        '<text class="do-axis-label" x="{}" y="{}">{}</text><text class="do-axis-label" x="{}" y="{}" text-anchor="end">{}</text>',
        LEFT,
        20 + len(kinds) * 30,
        f"{since:%Y-%m-%d}",
        WIDTH - 10,
        20 + len(kinds) * 30,
        _("now"),
    )
    return _svg(30 * len(kinds) + 30, label, mark_safe("".join(rows + marks) + axis))


def stage_durations(records: list[DeploymentRecord]) -> SafeString:
    """For each recent deploy, its stages as one stacked bar: where the time went."""
    label = _("Duration per stage, recent deploys")
    deploys = [record for record in records if record.stages.all()]
    if not deploys:
        return _empty(label, _("No deploy with recorded stages yet."))
    longest = max(sum(stage.duration or 0 for stage in record.stages.all()) for record in deploys) or 1
    names: list[str] = []
    bars = []
    for row, record in enumerate(deploys):
        y = 10 + row * 24
        bars.append(
            format_html(
                '<text class="do-axis-label" x="0" y="{}">{} {}</text>',
                y + 12,
                SYMBOLS.get(record.status, "?"),
                record.to_commit[:8] or record.requested_ref[:8],
            )
        )
        x = float(LEFT)
        total = 0.0
        for stage in record.stages.all():
            if stage.name not in names:
                names.append(stage.name)
            seconds = stage.duration or 0
            width = (WIDTH - LEFT - 90) * seconds / longest
            bars.append(
                format_html(
                    '<rect class="do-stage-{}{}" x="{}" y="{}" width="{}" height="16"><title>{}: {} ({})</title></rect>',
                    names.index(stage.name) % STAGE_COLOURS,
                    " do-stage-failed" if stage.status == "failed" else "",
                    _number(x),
                    y,
                    _number(max(width, 0.5)),
                    stage_label(stage.name),
                    humanize.duration(seconds),
                    stage.get_status_display(),
                )
            )
            x += width
            total += seconds
        bars.append(format_html('<text class="do-axis-label" x="{}" y="{}">{}</text>', _number(x + 6), y + 12, humanize.duration(total)))
    top = 16 + len(deploys) * 24
    legend = format_html_join(
        "",
        '<g class="do-legend"><rect class="do-stage-{}" x="{}" y="{}" width="10" height="10"/>'
        '<text class="do-axis-label" x="{}" y="{}">{}</text></g>',
        (
            (
                index % STAGE_COLOURS,
                LEFT + index % 4 * 150,
                top + index // 4 * 18,
                LEFT + index % 4 * 150 + 14,
                top + 9 + index // 4 * 18,
                stage_label(name),
            )
            for index, name in enumerate(names)
        ),
    )
    return _svg(top + 18 * ((len(names) + 3) // 4) + 6, label, mark_safe("".join(bars) + legend))


def backup_sizes(points: list[BackupPoint], since: datetime, until: datetime) -> SafeString:
    """Each backup a bar at the time it was made, as tall as its file."""
    label = _("Backup sizes over time")
    points = [point for point in points if point.created_at >= since]
    if not points:
        return _empty(label, _("No backups in this period."))
    span = max((until - since).total_seconds(), 1)
    largest = max(point.size for point in points) or 1
    height, bottom = 140, 150
    bars = [
        format_html(
            '<text class="do-axis-label" x="0" y="20">{}</text><text class="do-axis-label" x="0" y="{}">0</text>'
            '<line class="do-grid" x1="{}" x2="{}" y1="{}" y2="{}"/>',
            filesizeformat(largest),
            bottom,
            LEFT,
            WIDTH - 10,
            bottom,
            bottom,
        )
    ]
    for point in points:
        x = LEFT + (WIDTH - LEFT - 20) * (point.created_at - since).total_seconds() / span
        bar = height * point.size / largest
        bars.append(
            format_html(
                '<rect class="do-backup" x="{}" y="{}" width="6" height="{}"><title>{}: {}</title></rect>',
                _number(x),
                _number(bottom - bar),
                _number(max(bar, 1)),
                point.name,
                filesizeformat(point.size),
            )
        )
    bars.append(
        format_html(
            '<text class="do-axis-label" x="{}" y="{}">{}</text><text class="do-axis-label" x="{}" y="{}" text-anchor="end">{}</text>',
            LEFT,
            bottom + 16,
            f"{since:%Y-%m-%d}",
            WIDTH - 10,
            bottom + 16,
            _("now"),
        )
    )
    return _svg(bottom + 24, label, mark_safe("".join(bars)))


def stage_bar(stages) -> SafeString:
    """A record's stages as a small horizontal bar for the list and the detail page."""
    stages = list(stages)
    if not stages:
        return mark_safe("")
    total = sum(stage.duration or 0 for stage in stages) or 1
    segments, x = [], 0.0
    for index, stage in enumerate(stages):
        width = max(100 * (stage.duration or 0) / total, 1.5)
        segments.append(
            format_html(
                '<rect class="do-stage-{}{}" x="{}" y="0" width="{}" height="10"><title>{}: {} ({})</title></rect>',
                index % STAGE_COLOURS,
                " do-stage-failed" if stage.status == "failed" else "",
                _number(x),
                _number(width),
                stage_label(stage.name),
                humanize.duration(stage.duration),
                stage.get_status_display(),
            )
        )
        x += width
    return format_html(
        '<svg class="do-stagebar" viewBox="0 0 {} 10" preserveAspectRatio="none" role="img" aria-label="{}">{}</svg>',
        _number(max(x, 100)),
        _("stages"),
        mark_safe("".join(segments)),
    )


def window_bounds(days: int, now: datetime) -> tuple[datetime, datetime]:
    return now - timedelta(days=days), now
