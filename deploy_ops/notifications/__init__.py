"""Notifications about deploys and rollbacks: the log, Slack, email, a signed webhook, your own.

The deploy pipeline calls::

    deliveries = send(build_event(Level.ERROR, record, stages))

:func:`send` never raises and never waits past the channels' TIMEOUTs; what failed is in the
returned deliveries.  See docs/NOTIFICATIONS.md.
"""

from __future__ import annotations

import socket

from django.utils import timezone
from django.utils.translation import gettext_lazy

from ..models import DeploymentRecord
from .channels import Channel, Delivery, DeliveryFailed, Retryable, check_channels
from .dispatch import notify, send
from .events import Event, Level, StageSummary, build_event
from .webhook import verify_signature

__all__ = [
    "Channel",
    "Delivery",
    "DeliveryFailed",
    "Event",
    "Level",
    "Retryable",
    "StageSummary",
    "build_event",
    "check_channels",
    "notify",
    "send",
    "send_test_event",
    "verify_signature",
]

TEST_MESSAGE = gettext_lazy("This is a test notification from deploy_ops; nothing was deployed.")


def send_test_event(level: Level | str = Level.INFO) -> list[Delivery]:
    """Send a test event (``test: true``, no record saved) through every channel."""
    record = DeploymentRecord(
        kind=DeploymentRecord.Kind.DEPLOY, requested_ref="notify-test", host=socket.gethostname(), started_at=timezone.now()
    )
    return send(build_event(level, record, stages=[], message=str(TEST_MESSAGE), test=True))
