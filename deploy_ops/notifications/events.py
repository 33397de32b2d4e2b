"""What a notification says: a level and an :class:`Event` built from a DeploymentRecord.

An event is plain data, built once and handed to every channel, so the log line, the Slack
message, the email and the webhook body always agree.  Every text in it is masked when it is
built (the record's error may quote a release's output), so no channel can leak a secret.
"""

from __future__ import annotations

import enum
import logging
import socket
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import Any

from django.db import DatabaseError
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from ..conf import ops_settings
from ..exceptions import ConfigurationError
from ..models import DeploymentRecord
from ..secrets import known_secrets, mask
from ..stages import stage_label

logger = logging.getLogger("deploy_ops.notifications")

ERROR_TAIL_LINES = 20


class Level(enum.IntEnum):
    """Event levels, lowest first: a channel's MIN_LEVEL passes its level and every higher one."""

    INFO = 1  # a deploy started
    SUCCESS = 2
    WARNING = 3  # succeeded with warnings
    ERROR = 4  # failed (a rollback usually follows)
    ROLLBACK_SUCCESS = 5
    ROLLBACK_FAILED = 6  # critical: goes to every channel whatever its MIN_LEVEL

    @classmethod
    def parse(cls, value: Level | str) -> Level:
        if isinstance(value, cls):
            return value
        try:
            return cls[str(value).strip().upper()]
        except KeyError:
            names = ", ".join(level.name for level in cls)
            raise ConfigurationError(
                _("%(value)r is not a notification level; use one of %(names)s.") % {"value": value, "names": names}
            ) from None


@dataclass(frozen=True)
class StageSummary:
    name: str
    status: str
    duration: float | None


@dataclass(frozen=True)
class Event:
    level: Level
    title: str
    message: str
    project: str
    host: str
    environment: str
    kind: str
    status: str
    requested_ref: str
    from_commit: str
    from_summary: str
    to_commit: str
    to_summary: str
    stages: list[StageSummary] = field(default_factory=list)
    failed_stage: str = ""
    error_tail: str = ""
    backup_name: str = ""
    duration: float | None = None
    record_id: str = ""
    admin_url: str = ""
    timestamp: datetime = field(default_factory=timezone.now)
    # A `notify --test` event: receivers may want to ignore it.
    test: bool = False

    def as_dict(self) -> dict:
        data = asdict(self)
        data["level"] = self.level.name
        data["timestamp"] = self.timestamp.isoformat()
        return data


Kind = DeploymentRecord.Kind

# Whole sentences per kind of run, so that each language words them its own way.
_TITLES = {
    (Kind.DEPLOY, Level.INFO): gettext_lazy("Deploy of %(target)s started"),
    (Kind.DEPLOY, Level.SUCCESS): gettext_lazy("Deploy of %(target)s succeeded"),
    (Kind.DEPLOY, Level.WARNING): gettext_lazy("Deploy of %(target)s succeeded with warnings"),
    (Kind.DEPLOY, Level.ERROR): gettext_lazy("Deploy of %(target)s failed%(at_stage)s"),
    (Kind.ROLLBACK, Level.INFO): gettext_lazy("Rollback of %(target)s started"),
    (Kind.ROLLBACK, Level.SUCCESS): gettext_lazy("Rollback of %(target)s succeeded"),
    (Kind.ROLLBACK, Level.WARNING): gettext_lazy("Rollback of %(target)s succeeded with warnings"),
    (Kind.ROLLBACK, Level.ERROR): gettext_lazy("Rollback of %(target)s failed%(at_stage)s"),
    (Kind.RESTORE, Level.INFO): gettext_lazy("Restore of %(target)s started"),
    (Kind.RESTORE, Level.SUCCESS): gettext_lazy("Restore of %(target)s succeeded"),
    (Kind.RESTORE, Level.WARNING): gettext_lazy("Restore of %(target)s succeeded with warnings"),
    (Kind.RESTORE, Level.ERROR): gettext_lazy("Restore of %(target)s failed%(at_stage)s"),
    # A deploy rolls back to where it came from; a manual rollback goes to its target.
    (Kind.DEPLOY, Level.ROLLBACK_SUCCESS): gettext_lazy("Rolled back to %(previous)s"),
    (Kind.ROLLBACK, Level.ROLLBACK_SUCCESS): gettext_lazy("Rolled back to %(previous)s"),
    (Kind.DEPLOY, Level.ROLLBACK_FAILED): gettext_lazy("ROLLBACK FAILED%(at_stage)s: a human is needed"),
    (Kind.ROLLBACK, Level.ROLLBACK_FAILED): gettext_lazy("ROLLBACK FAILED%(at_stage)s: a human is needed"),
    # `backups restore` is notified like a rollback, with titles that say what it did.
    (Kind.RESTORE, Level.ROLLBACK_SUCCESS): gettext_lazy("Restored %(backup)s"),
    (Kind.RESTORE, Level.ROLLBACK_FAILED): gettext_lazy("RESTORE OF %(backup)s FAILED%(at_stage)s: a human is needed"),
}


def _title(level: Level, record: DeploymentRecord) -> str:
    previous = record.from_commit if record.kind == Kind.DEPLOY else record.to_commit
    return _TITLES[(Kind(record.kind), level)] % {
        "target": record.to_commit[:12] or record.requested_ref or _("the current code"),
        "previous": previous[:12] or _("the previous release"),
        "backup": record.backup_name or record.requested_ref,
        # A phrase the titles put after "failed" ("failed at stage migrate").
        "at_stage": _(" at stage %(stage)s") % {"stage": stage_label(record.failed_stage)} if record.failed_stage else "",
    }


def _stage_rows(record: DeploymentRecord, stages) -> list:
    if stages is not None:
        return list(stages)
    try:
        return list(record.stages.all())
    except DatabaseError:
        # Mid-restore the database may be unreachable; the event still goes out without a timeline.
        logger.warning("stages of record %s could not be read for the notification", record.pk)
        return []


def _error_tail(record: DeploymentRecord, stages: list) -> str:
    text = record.error
    if not text and record.failed_stage:
        text = next((stage.output_tail for stage in stages if stage.name == record.failed_stage), "")
    return "\n".join(text.strip().splitlines()[-ERROR_TAIL_LINES:])


def admin_url(record: DeploymentRecord) -> str:
    """The record's page in the admin, or "" when ADMIN_BASE_URL is not set or the admin is not routed."""
    base = ops_settings.ADMIN_BASE_URL
    if not base:
        return ""
    try:
        path = reverse("admin:deploy_ops_deploymentrecord_change", args=[record.pk])
    except NoReverseMatch:
        return ""
    return base.rstrip("/") + path


def build_event(level, record: DeploymentRecord, stages=None, message: str = "", *, test: bool = False) -> Event:
    """The event for ``record`` at ``level``; ``stages`` defaults to the record's saved stages.

    Every text in it is masked (see deploy_ops.secrets) before any channel sees it.
    """
    level = Level.parse(level)
    rows = _stage_rows(record, stages)
    return masked(
        Event(
            level=level,
            title=_("Test notification") if test else _title(level, record),
            message=message or record.rollback_reason or record.warnings,
            project=ops_settings.project_name,
            host=record.host or socket.gethostname(),
            environment=ops_settings.ENVIRONMENT,
            kind=record.kind,
            status=record.status,
            requested_ref=record.requested_ref,
            from_commit=record.from_commit,
            from_summary=record.from_summary,
            to_commit=record.to_commit,
            to_summary=record.to_summary,
            stages=[StageSummary(name=stage.name, status=stage.status, duration=stage.duration) for stage in rows],
            failed_stage=record.failed_stage,
            error_tail=_error_tail(record, rows),
            backup_name=record.backup_name,
            duration=record.duration,
            record_id=str(record.pk),
            admin_url="" if test else admin_url(record),
            test=test,
        )
    )


# The free text of an event, which may quote a release's output or a URL (see deploy_ops.secrets).
TEXT_FIELDS = ("title", "message", "requested_ref", "from_summary", "to_summary", "error_tail")


def masked(event: Event) -> Event:
    """The event with every secret deploy_ops knows replaced by *** in its free text."""
    secrets = known_secrets()
    masked_text: dict[str, Any] = {name: mask(getattr(event, name), secrets) for name in TEXT_FIELDS}
    return replace(event, **masked_text)
