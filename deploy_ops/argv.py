"""How a command line and its output are shown: secrets replaced by ``***``, argv shell-quoted.

A leaf module (it imports nothing of deploy_ops), so that the runner, the errors it raises and the
secrets module can all show a command without importing one another.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence

REDACTED = "***"


def redact(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return text


def redact_argv(argv: Sequence[str], secrets: Sequence[str]) -> list[str]:
    return [redact(part, secrets) for part in argv]


def display_argv(argv: Sequence[str]) -> str:
    return shlex.join(list(argv))
