"""How a run sends its events: every channel, with what failed noted on the run's record."""

from __future__ import annotations

from django.utils.translation import gettext as _

from .channels import send
from .events import build_event


def notify(level, recorder) -> None:
    """Send an event through every channel; a channel that fails is noted on the record, never raised."""
    deliveries = send(build_event(level, recorder.record, recorder.stages))
    failed = [_("%(level)s via %(channel)s: %(error)s") % {"level": level.name, "channel": delivery.channel, "error": delivery.error} for delivery in deliveries if not delivery.ok]
    if failed:
        notes = [line for line in recorder.record.notification_failures.splitlines() if line] + failed
        recorder.update(notification_failures="\n".join(notes))
