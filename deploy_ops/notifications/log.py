"""The always-on channel: one JSON line per event in ``<LOG_DIR>/notifications.log``."""

from __future__ import annotations

import json
from pathlib import Path

from ..conf import ops_settings
from .channels import Channel
from .events import Event

LOG_NAME = "notifications.log"


def log_path() -> Path:
    return ops_settings.log_dir / LOG_NAME


class LogChannel(Channel):
    name = "log"

    def build_payload(self, event: Event) -> str:
        return json.dumps(event.as_dict(), sort_keys=True) + "\n"

    def deliver(self, payload: str) -> None:
        path = log_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        # One write of one line in append mode: concurrent writers do not interleave lines.
        with open(path, "a", encoding="utf-8") as log:
            log.write(payload)
