"""Slack through an incoming webhook (slack-sdk's ``WebhookClient``), as a Block Kit message.

Options: WEBHOOK_URL (secret, required), and the common NAME, MIN_LEVEL, TIMEOUT, RETRIES,
BACKOFF, ATTEMPT_TIMEOUT.  slack-sdk's own retry handlers retry 429 and 5xx answers, timeouts
and refused connections, within TIMEOUT (a 429's Retry-After is honoured when it fits); other
answers fail at once.
"""

from __future__ import annotations

import logging
import time
from http.client import RemoteDisconnected
from typing import NoReturn
from urllib.error import URLError

from django.utils.translation import gettext as _
from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler, RateLimitErrorRetryHandler, ServerErrorRetryHandler
from slack_sdk.http_retry.builtin_interval_calculators import BackoffRetryIntervalCalculator
from slack_sdk.http_retry.handler import RetryHandler
from slack_sdk.http_retry.jitter import Jitter
from slack_sdk.webhook import WebhookClient

from .channels import Channel, DeliveryFailed, gave_up, retry_after, unreachable
from .events import Event, Level

# slack-sdk logs the full webhook URL (the token) at DEBUG; its client gets a logger of its own that
# stays silent, and this channel reports failures itself, redacted.
_sdk_logger = logging.getLogger("deploy_ops.notifications.slack_sdk")
_sdk_logger.setLevel(logging.CRITICAL + 1)
_sdk_logger.propagate = False

EMOJI = {
    Level.INFO: ":rocket:",
    Level.SUCCESS: ":white_check_mark:",
    Level.WARNING: ":warning:",
    Level.ERROR: ":x:",
    Level.ROLLBACK_SUCCESS: ":leftwards_arrow_with_hook:",
    Level.ROLLBACK_FAILED: ":rotating_light:",
}
# Block Kit limits: header text 150 characters, section text 3000.
HEADER_LIMIT = 150
SECTION_LIMIT = 3000


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _commit(sha: str, summary: str) -> str:
    if not sha:
        return "–"
    return f"`{sha[:12]}` {_escape(summary)}".strip()


def _section(text: str) -> dict:
    if len(text) > SECTION_LIMIT:
        text = text[: SECTION_LIMIT - 1] + "…"
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def _field(label: str, value: str) -> dict:
    return {"type": "mrkdwn", "text": f"*{label}*\n{value}"}


def _duration(seconds) -> str:
    return f"{seconds:.1f}s" if seconds is not None else "–"


def fallback_text(event: Event) -> str:
    return f"[{event.project}/{event.environment}] {event.level.name}: {event.title}"


def message(event: Event) -> dict:
    """The webhook body: a Block Kit message plus the plain ``text`` notifications show."""
    header = f"{EMOJI[event.level]} {event.level.name}: {event.title}"
    status = _("%(kind)s %(status)s in %(duration)s") % {
        "kind": event.kind,
        "status": event.status,
        "duration": _duration(event.duration),
    }
    blocks = [
        {"type": "header", "text": {"type": "plain_text", "text": header[:HEADER_LIMIT], "emoji": True}},
        {
            "type": "section",
            "fields": [
                _field(_("Project"), _escape(event.project)),
                _field(_("Environment"), _escape(event.environment)),
                _field(_("Host"), _escape(event.host)),
                _field(_("Status"), status),
            ],
        },
    ]
    from_label, to_label = _("From"), _("To")
    from_commit, to_commit = _commit(event.from_commit, event.from_summary), _commit(event.to_commit, event.to_summary)
    blocks.append(_section(f"*{from_label}* {from_commit}\n*{to_label}* {to_commit}"))
    if event.failed_stage:
        label = _("Failed stage:")
        blocks.append(_section(f"*{label}* `{event.failed_stage}`"))
    if event.message:
        blocks.append(_section(_escape(event.message)))
    if event.error_tail:
        # Keep the end of the error: that is where the cause is.
        blocks.append(_section("```" + event.error_tail[-(SECTION_LIMIT - 6) :] + "```"))
    if event.stages:
        lines = [f"{stage.name} — {stage.status} ({_duration(stage.duration)})" for stage in event.stages]
        label = _("Timeline")
        blocks.append(_section(f"*{label}*\n" + "\n".join(lines)))
    if event.backup_name:
        backup = _("Backup:") + f" `{_escape(event.backup_name)}`"
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": backup}]})
    if event.admin_url:
        blocks.append(
            {
                "type": "actions",
                "elements": [{"type": "button", "text": {"type": "plain_text", "text": _("Open the record")}, "url": event.admin_url}],
            }
        )
    return {"text": fallback_text(event), "blocks": blocks}


class _NoJitter(Jitter):
    # The pauses must add up to what the budget check counted.
    def recalculate(self, duration: float) -> float:
        return duration


class _Budget:
    """One delivery's retry budget, shared by its retry handlers: RETRIES, BACKOFF, ATTEMPT_TIMEOUT, TIMEOUT."""

    def __init__(self, channel: Channel):
        self.channel = channel
        self.retries = int(channel._number("RETRIES", 3))
        self.intervals = BackoffRetryIntervalCalculator(backoff_factor=channel._number("BACKOFF", 0.5), jitter=_NoJitter())
        self.attempt_limit = channel._number("ATTEMPT_TIMEOUT", 5)
        self.state = None  # the SDK's RetryState of the request, once an attempt failed
        self.client: WebhookClient | None = None  # its timeout is cut before every retry
        self.out_of_time = False

    def attempts(self) -> int:
        return self.state.current_attempt + 1 if self.state else 1

    def attempt_timeout(self) -> float:
        return max(0.05, min(self.attempt_limit, self.channel.remaining()))

    def pause(self, state, response) -> float:
        """BACKOFF doubled per retry, or longer when a 429 or 5xx answer asks for it by Retry-After."""
        asked = retry_after({name: values[0] for name, values in response.headers.items()}) if response is not None else 0.0
        return max(self.intervals.calculate_sleep_duration(state.current_attempt), asked)


class _WithinBudget(RetryHandler):
    """Mixed into slack-sdk's retry handlers: they choose what is worth a retry; a retry happens
    only while RETRIES last and its pause fits in the channel's TIMEOUT, and the next attempt's
    timeout is cut to what the budget has left."""

    def __init__(self, budget: _Budget, **options):
        super().__init__(max_retry_count=budget.retries, interval_calculator=budget.intervals, **options)
        self.budget = budget

    def can_retry(self, *, state, request, response=None, error=None) -> bool:
        self.budget.state = state
        if not super().can_retry(state=state, request=request, response=response, error=error):
            return False
        if self.budget.pause(state, response) >= self.budget.channel.remaining():
            self.budget.out_of_time = True
            return False
        return True

    def prepare_for_next_attempt(self, *, state, request, response=None, error=None) -> None:
        state.next_attempt_requested = True
        time.sleep(self.budget.pause(state, response))
        state.increment_current_attempt()
        assert self.budget.client is not None, "deliver() makes the client before its first attempt"
        self.budget.client.timeout = self.budget.attempt_timeout()  # type: ignore[assignment]  # see deliver()


class _RateLimited(_WithinBudget, RateLimitErrorRetryHandler):
    pass


class _ServerError(_WithinBudget, ServerErrorRetryHandler):
    def _can_retry(self, *, state, request, response=None, error=None) -> bool:
        # The SDK retries 500 and 503; a proxy in front of Slack answers 502 and 504 as well.
        return response is not None and response.status_code >= 500


class _Unreachable(_WithinBudget, ConnectionErrorRetryHandler):
    def __init__(self, budget: _Budget):
        # The SDK's list, and timeouts (a socket timeout while reading is no URLError).
        super().__init__(budget, error_types=[URLError, ConnectionResetError, RemoteDisconnected, TimeoutError])


class SlackChannel(Channel):
    name = "slack"
    secret_options = ("WEBHOOK_URL",)
    required_options = ("WEBHOOK_URL",)

    def build_payload(self, event: Event) -> dict:
        return message(event)

    def deliver(self, payload: dict) -> int:
        """POST with slack-sdk's own retry handlers (429 by Retry-After, 5xx, unreachable), within the budget."""
        budget = _Budget(self)
        handlers: list[RetryHandler] = [_RateLimited(budget), _ServerError(budget), _Unreachable(budget)]
        # slack-sdk types timeout as int, but hands it to urllib's urlopen, which takes seconds as a float.
        client = budget.client = WebhookClient(
            self.options["WEBHOOK_URL"],
            timeout=budget.attempt_timeout(),  # type: ignore[arg-type]
            retry_handlers=handlers,
            logger=_sdk_logger,
        )
        try:
            response = client.send_dict(payload)
        except (TimeoutError, URLError) as error:
            self._give_up(str(unreachable("Slack", error, client.timeout)), budget)
        status = response.status_code
        if status == 200:
            return budget.attempts()
        if status == 429:
            self._give_up(_("Slack answered 429 (rate limited)"), budget)
        if status >= 500:
            self._give_up(_("Slack answered HTTP %(status)s") % {"status": status}, budget)
        raise DeliveryFailed(
            _("Slack refused the message with HTTP %(status)s: %(body)s") % {"status": status, "body": response.body[:200]},
            budget.attempts(),
        )

    def _give_up(self, problem: str, budget: _Budget) -> NoReturn:
        attempts = budget.attempts()
        raise DeliveryFailed(gave_up(problem, attempts, self.timeout if budget.out_of_time else None), attempts) from None
