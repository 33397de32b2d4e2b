"""Slack through an incoming webhook (slack-sdk's ``WebhookClient``), as a Block Kit message.

Options: WEBHOOK_URL (secret, required), and the common NAME, MIN_LEVEL, TIMEOUT, RETRIES,
BACKOFF, ATTEMPT_TIMEOUT.  429 and 5xx answers, timeouts and refused connections are retried
within TIMEOUT (a 429's Retry-After is honoured when it fits); other answers fail at once.
"""

from __future__ import annotations

import logging
from urllib.error import URLError

from slack_sdk.webhook import WebhookClient

from .channels import Channel, DeliveryFailed, Retryable, retry_after, unreachable
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


def _duration(seconds) -> str:
    return f"{seconds:.1f}s" if seconds is not None else "–"


def fallback_text(event: Event) -> str:
    return f"[{event.project}/{event.environment}] {event.level.name}: {event.title}"


def message(event: Event) -> dict:
    """The webhook body: a Block Kit message plus the plain ``text`` notifications show."""
    header = f"{EMOJI[event.level]} {event.level.name}: {event.title}"
    blocks = [
        {"type": "header", "text": {"type": "plain_text", "text": header[:HEADER_LIMIT], "emoji": True}},
        {
            "type": "section",
            "fields": [
                {"type": "mrkdwn", "text": f"*Project*\n{_escape(event.project)}"},
                {"type": "mrkdwn", "text": f"*Environment*\n{_escape(event.environment)}"},
                {"type": "mrkdwn", "text": f"*Host*\n{_escape(event.host)}"},
                {"type": "mrkdwn", "text": f"*Status*\n{event.kind} {event.status} in {_duration(event.duration)}"},
            ],
        },
        _section(f"*From* {_commit(event.from_commit, event.from_summary)}\n*To* {_commit(event.to_commit, event.to_summary)}"),
    ]
    if event.failed_stage:
        blocks.append(_section(f"*Failed stage:* `{event.failed_stage}`"))
    if event.message:
        blocks.append(_section(_escape(event.message)))
    if event.error_tail:
        # Keep the end of the error: that is where the cause is.
        blocks.append(_section("```" + event.error_tail[-(SECTION_LIMIT - 6):] + "```"))
    if event.stages:
        lines = [f"{stage.name} — {stage.status} ({_duration(stage.duration)})" for stage in event.stages]
        blocks.append(_section("*Timeline*\n" + "\n".join(lines)))
    if event.backup_name:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": f"Backup: `{_escape(event.backup_name)}`"}]})
    if event.admin_url:
        blocks.append(
            {
                "type": "actions",
                "elements": [{"type": "button", "text": {"type": "plain_text", "text": "Open the record"}, "url": event.admin_url}],
            }
        )
    return {"text": fallback_text(event), "blocks": blocks}


class SlackChannel(Channel):
    name = "slack"
    secret_options = ("WEBHOOK_URL",)
    required_options = ("WEBHOOK_URL",)

    def build_payload(self, event: Event) -> dict:
        return message(event)

    def deliver(self, payload: dict) -> int:
        return self.with_retries(lambda timeout: self._attempt(payload, timeout))

    def _attempt(self, payload: dict, timeout: float) -> None:
        # The SDK's own retry handlers would sleep outside our budget; with_retries does the retrying.
        client = WebhookClient(self.options["WEBHOOK_URL"], timeout=timeout, retry_handlers=[], logger=_sdk_logger)
        try:
            response = client.send_dict(payload)
        except (TimeoutError, URLError) as error:
            raise unreachable("Slack", error, timeout) from None
        status = response.status_code
        if status == 200:
            return
        if status == 429:
            raise Retryable("Slack answered 429 (rate limited)", retry_after=retry_after(response.headers))
        if status >= 500:
            raise Retryable(f"Slack answered HTTP {status}")
        raise DeliveryFailed(f"Slack refused the message with HTTP {status}: {response.body[:200]}")
