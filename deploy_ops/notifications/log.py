"""The always-on channel: one JSON line per event in ``<LOG_DIR>/notifications.log`` (0600, in a 0700 LOG_DIR)."""

from __future__ import annotations

import json
from pathlib import Path

from ..conf import ops_settings
from ..privatefiles import open_private_append
from ..secrets import mask_fields
from .channels import Channel
from .events import TEXT_FIELDS, Event

LOG_NAME = "notifications.log"


def log_path() -> Path:
    return ops_settings.log_dir / LOG_NAME


class LogChannel(Channel):
    name = "log"

    def build_payload(self, event: Event) -> str:
        # Masked again here: an event built by hand (a custom caller) reaches the log too.
        return json.dumps(mask_fields(event.as_dict(), TEXT_FIELDS), sort_keys=True) + "\n"

    def deliver(self, payload: str) -> None:
        # One write of one line in append mode: concurrent writers do not interleave lines.
        with open_private_append(log_path()) as log:
            log.write(payload)
