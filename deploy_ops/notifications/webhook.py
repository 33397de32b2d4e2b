"""A signed JSON webhook, for receivers of your own.

The body is ``json.dumps(event.as_dict())``.  With a SECRET, each request carries
``X-DeployOps-Timestamp: <unix seconds>`` and
``X-DeployOps-Signature: sha256=<hex HMAC-SHA256(SECRET, "<timestamp>.<body>")>``;
a receiver checks both with :func:`verify_signature`.  Everything a receiver acts on (the
level included) is in the signed body: no other header carries meaning, so none can be
changed on the way without breaking the signature.

Options: URL (secret, required), SECRET (secret), and the common NAME, MIN_LEVEL, TIMEOUT,
RETRIES, BACKOFF, ATTEMPT_TIMEOUT.  Refused connections, timeouts, 429 and 5xx are retried
with exponential backoff within TIMEOUT; any other 4xx fails at once (retrying cannot help).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import urllib.request
from urllib.error import HTTPError, URLError

from django.utils.translation import gettext as _

from .. import __version__
from .channels import Channel, DeliveryFailed, Retryable, retry_after, unreachable
from .events import Event

TIMESTAMP_HEADER = "X-DeployOps-Timestamp"
SIGNATURE_HEADER = "X-DeployOps-Signature"


def _as_bytes(value) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode("utf-8")


def signature(secret: str, timestamp, body) -> str:
    """The X-DeployOps-Signature value for this timestamp and body."""
    digest = hmac.new(_as_bytes(secret), _as_bytes(timestamp) + b"." + _as_bytes(body), hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify_signature(secret: str, timestamp, body, signature_header: str, tolerance: int = 300) -> bool:
    """For receivers: True when the signature matches and the timestamp is within ``tolerance`` seconds.

    ``body`` must be the raw request body, before any JSON parsing.  The timestamp check refuses
    a captured request replayed later; within ``tolerance``, drop repeats by :func:`replay_key`.
    """
    try:
        sent_at = int(timestamp)
    except (TypeError, ValueError):
        return False
    if abs(time.time() - sent_at) > tolerance:
        return False
    return hmac.compare_digest(signature(secret, timestamp, body), str(signature_header or ""))


def replay_key(event: dict) -> tuple:
    """For receivers: what identifies one notification, whatever request carried it.

    A retry is signed anew (a fresh timestamp header) but carries the same body, and a replayed
    request the same everything: a receiver that remembers these keys for the ``tolerance`` window
    acts on each notification once.
    """
    return event.get("record_id"), event.get("level"), event.get("timestamp")


class WebhookChannel(Channel):
    name = "webhook"
    secret_options = ("URL", "SECRET")
    required_options = ("URL",)

    def build_payload(self, event: Event) -> bytes:
        return json.dumps(event.as_dict(), sort_keys=True).encode("utf-8")

    def deliver(self, payload: bytes) -> int:
        return self.with_retries(lambda timeout: self._attempt(payload, timeout))

    def _headers(self, body: bytes) -> dict:
        headers = {"Content-Type": "application/json", "User-Agent": f"deploy_ops/{__version__}"}
        if self.options.get("SECRET"):
            # Signed per attempt, so a retry carries a fresh timestamp.
            timestamp = str(int(time.time()))
            headers[TIMESTAMP_HEADER] = timestamp
            headers[SIGNATURE_HEADER] = signature(self.options["SECRET"], timestamp, body)
        return headers

    def _attempt(self, body: bytes, timeout: float) -> None:
        request = urllib.request.Request(self.options["URL"], data=body, headers=self._headers(body), method="POST")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                response.read()
        except HTTPError as error:
            error.close()
            if error.code == 429 or error.code >= 500:
                raise Retryable(
                    _("the webhook answered HTTP %(code)s") % {"code": error.code}, retry_after=retry_after(error.headers)
                ) from None
            raise DeliveryFailed(_("the webhook refused the event with HTTP %(code)s") % {"code": error.code}) from None
        except (TimeoutError, URLError) as error:
            raise unreachable("the webhook", error, timeout) from None
