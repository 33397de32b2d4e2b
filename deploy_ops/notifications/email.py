"""Email through Django's mail API, so it uses whatever mail backend the project configured.

Options: RECIPIENTS (a list of addresses; default: the addresses in settings.ADMINS),
FROM_EMAIL (default: settings.DEFAULT_FROM_EMAIL), and the common NAME, MIN_LEVEL, TIMEOUT.
The message is sent with ``EmailMessage.send()`` and no explicit connection: that is valid on
Django 5.2 and 6.x alike (6.1 routes it to the default entry of MAILERS, and deprecates
``get_connection()``).  The SMTP timeout is the project's (EMAIL_TIMEOUT, or the mailer's
options); the channel's TIMEOUT bounds it anyway, because ``send`` stops waiting.
"""

from __future__ import annotations

from django.conf import settings
from django.core.mail import EmailMessage
from django.utils.translation import gettext as _

from .channels import Channel, DeliveryFailed
from .events import Event


def subject(event: Event) -> str:
    return f"[{event.project}/{event.environment}] {event.level.name}: {event.title}"


def _duration(seconds) -> str:
    return f"{seconds:.1f}s" if seconds is not None else "-"


def body(event: Event) -> str:
    fields = [
        (_("Project:"), event.project),
        (_("Environment:"), event.environment),
        (_("Host:"), event.host),
        (_("Operation:"), f"{event.kind} ({event.status})"),
        (_("Requested:"), event.requested_ref or "-"),
        (_("From commit:"), f"{event.from_commit or '-'} {event.from_summary}".rstrip()),
        (_("To commit:"), f"{event.to_commit or '-'} {event.to_summary}".rstrip()),
        (_("Failed stage:"), event.failed_stage or "-"),
        (_("Backup:"), event.backup_name or "-"),
        (_("Duration:"), _duration(event.duration)),
        (_("Record:"), event.record_id),
        (_("Time:"), event.timestamp.isoformat()),
    ]
    if event.admin_url:
        fields.append((_("Admin:"), event.admin_url))
    # The values line up after the longest label, whatever the language.
    width = max(len(label) for label, _value in fields) + 1
    lines = [f"{event.level.name}: {event.title}", ""] + [f"{label:<{width}}{value}" for label, value in fields]
    if event.message:
        lines += ["", event.message]
    if event.stages:
        lines += ["", _("Timeline:")] + [f"  {stage.name:<16} {stage.status:<10} {_duration(stage.duration)}" for stage in event.stages]
    if event.error_tail:
        lines += ["", _("Error (last lines):")] + [f"  {line}" for line in event.error_tail.splitlines()]
    return "\n".join(lines) + "\n"


def _admin_addresses() -> list[str]:
    # Django 6.0 takes ADMINS as plain addresses; 5.2 as (name, address) pairs.
    return [entry if isinstance(entry, str) else entry[1] for entry in getattr(settings, "ADMINS", [])]


class EmailChannel(Channel):
    name = "email"

    def recipients(self) -> list[str]:
        return list(self.options.get("RECIPIENTS") or _admin_addresses())

    def build_payload(self, event: Event) -> EmailMessage:
        recipients = self.recipients()
        if not recipients:
            raise DeliveryFailed(_("no recipients: set the channel's RECIPIENTS option or settings.ADMINS."))
        return EmailMessage(
            subject=subject(event),
            body=body(event),
            from_email=self.options.get("FROM_EMAIL") or settings.DEFAULT_FROM_EMAIL,
            to=recipients,
        )

    def deliver(self, payload: EmailMessage) -> None:
        sent = payload.send()
        if not sent:
            raise DeliveryFailed(_("the mail backend accepted no message."))
