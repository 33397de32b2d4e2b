"""The secrets deploy_ops knows, and :func:`mask`, which hides them in any text before it is kept or sent.

Everything deploy_ops stores or sends (a stage's output tail, a record's error, reason and
warnings, the journal, ``notifications.log``, every notification) goes through :func:`mask`,
including the output of the release's own ``manage.py`` commands, which may print anything.

Masked: the PASSWORD of every DATABASES alias, EMAIL_HOST_PASSWORD and the secret options of
every MAILERS entry (Django 6.1), HEALTH_TOKEN, and every secret option of every notification
channel (a webhook or Slack URL, and its path, where Slack keeps the token); each as written,
URL-encoded and as ``repr()`` escapes it (when it has at least MIN_SECRET_LENGTH characters).
Whatever the values, the shapes a secret is printed in are masked too: the password of any
``scheme://user:password@host`` URL, the value of any ``token=``, ``password=`` or ``secret=``
query parameter, and the value after a key named like a password, secret or token
(``'PASSWORD': '…'``, ``"api_token": "…"``, ``PASSWORD=…``, ``X-Health-Token: …``).  So a
DATABASE_URL or a ``?token=`` health URL printed by anyone is hidden without being configured here.

Only free text is masked (an error, an output tail, a summary): ids, statuses and times are
deploy_ops's own and must stay intact even when a short secret happens to appear in them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import quote, urlsplit

from django.conf import settings

from .argv import REDACTED, redact

# Options whose names contain one of these are treated as secret, on any channel or mailer.
SECRET_WORDS = ("URL", "SECRET", "TOKEN", "PASSWORD", "KEY")

# A known secret shorter than this is not replaced wherever its characters appear (a password
# "db" would blank "db.sqlite3" everywhere); the shapes below still hide it where it is a value.
MIN_SECRET_LENGTH = 4
_SECRET_NAME = r"[\w.-]*(?:password|passwd|secret|token)\w*"
# The shapes a secret is printed in, whatever its value; "keep" is what stays in front of ***.
_SHAPES = [
    # scheme://user:PASSWORD@host — the password stops at the last "@" before the host.
    re.compile(r"(?P<keep>\b[a-zA-Z][\w+.-]*://[^\s:/@'\"]*:)[^\s/'\"]+(?=@)"),
    # ?token=VALUE, &password=VALUE, ;access_token=VALUE ... in any URL or query string.
    re.compile(rf"(?P<keep>[?&;]{_SECRET_NAME}=)[^&#\s'\"]+", re.IGNORECASE),
    # 'PASSWORD': 'VALUE' in a printed dict, "token": "VALUE" in JSON, PASSWORD='VALUE' in a shell line.
    re.compile(rf"(?P<keep>\b{_SECRET_NAME}['\"]?\s*[:=]\s*['\"])(?!\*\*\*)[^'\"\n]+", re.IGNORECASE),
    # PASSWORD=VALUE, X-Health-Token: VALUE (unquoted).
    re.compile(rf"(?P<keep>\b{_SECRET_NAME}\s*[:=][ \t]*)(?!['\"*])[^\s&'\",;]+", re.IGNORECASE),
]


def secret_values(options: dict, secret_options: Iterable[str] = ()) -> list[str]:
    """The values to hide in one options dict: named secret options, anything named like one, and a URL's path."""
    found = []
    for key, value in options.items():
        if not isinstance(value, str) or not value:
            continue
        if key in secret_options or any(word in str(key).upper() for word in SECRET_WORDS):
            found.append(value)
            parts = urlsplit(value)
            if parts.scheme and len(parts.path) > 1:
                # A Slack webhook's token is its path: hide it wherever the path alone is shown.
                found.append(parts.path + (f"?{parts.query}" if parts.query else ""))
    # Longest first, so a URL is replaced whole before its path is.
    return sorted(set(found), key=len, reverse=True)


def known_secrets() -> list[str]:
    """Every configured secret, in each spelling it may be printed in; longest first."""
    from .conf import ops_settings
    from .exceptions import ConfigurationError

    found = [alias.get("PASSWORD") or "" for alias in getattr(settings, "DATABASES", {}).values()]
    # Reading the default would warn on Django 6.1. (django-stubs' plugin takes the method for a setting name.)
    if settings.is_overridden("EMAIL_HOST_PASSWORD"):  # type: ignore[misc]
        found.append(getattr(settings, "EMAIL_HOST_PASSWORD", "") or "")
    for mailer in (getattr(settings, "MAILERS", None) or {}).values():
        found += secret_values((mailer or {}).get("OPTIONS") or {})
    try:
        found.append(ops_settings.HEALTH_TOKEN or "")
        channels = ops_settings.NOTIFICATIONS
    except ConfigurationError:
        # Invalid settings are `manage.py check`'s to report; mask what the raw dict holds.
        raw = getattr(settings, "DEPLOY_OPS", {}) or {}
        found.append(raw.get("HEALTH_TOKEN") if isinstance(raw.get("HEALTH_TOKEN"), str) else "")
        channels = raw.get("NOTIFICATIONS") if isinstance(raw.get("NOTIFICATIONS"), list) else []
    for channel in channels:
        if isinstance(channel, dict):
            found += secret_values(channel)
    return spellings(value for value in found if isinstance(value, str) and value)


def spellings(values: Iterable[str]) -> list[str]:
    """Each value as written, URL-encoded and repr()-escaped (a printed dict escapes quotes), longest first."""
    found = set()
    for value in values:
        found.update({value, quote(value, safe=""), quote(value), repr(value)[1:-1]})
    found = {spelling for spelling in found if len(spelling) >= MIN_SECRET_LENGTH}
    # Longest first, so a URL is replaced whole before its path is.
    return sorted(found, key=len, reverse=True)


def mask(text: str, secrets: list[str] | None = None) -> str:
    """``text`` with every known secret, URL password and secret query value replaced by ***.

    ``secrets`` (from :func:`known_secrets`) saves reading the settings again when masking many texts.
    """
    if not text or not isinstance(text, str):
        return text
    text = redact(text, known_secrets() if secrets is None else secrets)
    for shape in _SHAPES:
        text = shape.sub(lambda found: found["keep"] + REDACTED, text)
    return text


def mask_fields(data: dict, names, secrets: list[str] | None = None) -> dict:
    """A copy of ``data`` with its free-text fields ``names`` masked.

    Only free text: an id, a status or a timestamp that happened to contain a short secret's
    characters must stay what it is, or the record would break.
    """
    secrets = known_secrets() if secrets is None else secrets
    return {key: mask(value, secrets) if key in names else value for key, value in data.items()}
