"""How events are sent: to the log and every configured channel, with what failed noted on the run's record."""

from __future__ import annotations

import threading
import time

from django.utils.translation import gettext as _

from ..conf import ops_settings
from ..exceptions import ConfigurationError
from ..secrets import redact, secret_values
from .channels import Channel, Delivery, load_channel, logger
from .events import Event, build_event, masked
from .log import LogChannel

# How long send waits past a channel's budget before giving up on its thread.
GRACE = 1.0


def notify(level, recorder) -> None:
    """Send an event through every channel; a channel that fails is noted on the record, never raised."""
    deliveries = send(build_event(level, recorder.record, recorder.stages))
    failed = [
        _("%(level)s via %(channel)s: %(error)s") % {"level": level.name, "channel": delivery.channel, "error": delivery.error}
        for delivery in deliveries
        if not delivery.ok
    ]
    if failed:
        notes = [line for line in recorder.record.notification_failures.splitlines() if line] + failed
        recorder.update(notification_failures="\n".join(notes))


def _load_configured() -> list[Channel | Delivery]:
    """Each configured channel, or a failed Delivery in its place when it cannot be loaded."""
    try:
        configured = ops_settings.NOTIFICATIONS
    except ConfigurationError:
        # The validation sentence may quote the value, secrets included; `manage.py check` shows it.
        return [Delivery("notifications", ok=False, error=_("DEPLOY_OPS['NOTIFICATIONS'] is invalid; run `manage.py check` for details."))]
    loaded: list[Channel | Delivery] = []
    for position, options in enumerate(configured):
        try:
            loaded.append(load_channel(options))
        except Exception as error:
            name = options.get("NAME") or f"channel {position} ({options.get('BACKEND', '?')})"
            loaded.append(Delivery(name, ok=False, error=redact(str(error), secret_values(options))))
    return loaded


def send(event: Event) -> list[Delivery]:
    """Send ``event`` to the log and every configured channel; never raises, never exceeds the budgets.

    Returns one Delivery per channel: the log's first, then in the order of NOTIFICATIONS.
    """
    # build_event masks already; an event built by other code must not reach a channel unmasked either.
    event = masked(event)
    log_delivery = LogChannel().send(event)
    loaded = _load_configured()
    results: dict[int, Delivery] = {index: item for index, item in enumerate(loaded) if isinstance(item, Delivery)}
    running = []
    started = time.monotonic()
    for index, channel in enumerate(loaded):
        if isinstance(channel, Delivery):
            continue

        def run(index=index, channel=channel):
            results[index] = channel.send(event)

        # Daemon threads: one that ignores its budget must not keep the process alive either.
        thread = threading.Thread(target=run, name=f"deploy_ops-notify-{channel.name}", daemon=True)
        thread.start()
        running.append((index, channel, thread))
    for index, channel, thread in running:
        thread.join(max(0.0, started + channel.timeout + GRACE - time.monotonic()))
        if index not in results:
            results[index] = Delivery(
                channel.name,
                ok=False,
                error=_("did not finish within its %(timeout)ss TIMEOUT; left running in the background.")
                % {"timeout": f"{channel.timeout:g}"},
                duration=round(time.monotonic() - started, 3),
            )
    deliveries = [log_delivery] + [results[index] for index in range(len(loaded))]
    for delivery in deliveries:
        if not delivery.ok:
            logger.warning("notification %s to %s failed: %s", event.level.name, delivery.channel, delivery.error)
        elif delivery.skipped:
            logger.info("notification %s to %s skipped: %s", event.level.name, delivery.channel, delivery.error)
        else:
            logger.info("notification %s sent to %s", event.level.name, delivery.channel)
    return deliveries
