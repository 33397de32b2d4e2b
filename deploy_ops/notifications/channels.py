"""Channels, and sending one event through all of them without ever failing or stalling the caller.

Every channel follows the same fixed sequence: ``should_send(event)`` (the level filter),
``build_payload(event)``, ``deliver(payload)``.  :meth:`Channel.send` wraps that sequence so
that nothing raises out of it: a failure becomes a :class:`Delivery` with ``ok=False`` and an
error sentence from which every secret option (webhook URLs, tokens) has been removed.

:func:`send` writes the always-on log channel first, then runs the configured channels in
threads, so the total delay is bounded by the slowest channel's ``TIMEOUT`` (plus a second of
grace), even for a custom channel that ignores its budget.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from django.core.checks import Error
from django.utils.module_loading import import_string
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from ..conf import ops_settings
from ..exceptions import ConfigurationError
from ..secrets import mask, redact, secret_values
from .events import Event, Level

logger = logging.getLogger("deploy_ops.notifications")

DEFAULT_TIMEOUT = 10.0

E020 = "deploy_ops.E020"


@dataclass(frozen=True)
class Delivery:
    channel: str
    ok: bool
    error: str = ""
    attempts: int = 0
    duration: float = 0.0
    # The event was below the channel's MIN_LEVEL; nothing was sent (ok stays True).
    skipped: bool = False


class DeliveryFailed(Exception):
    """A channel could not deliver; the message is a sentence with no secret in it."""

    def __init__(self, message: str, attempts: int = 1):
        self.attempts = attempts
        super().__init__(message)


class Retryable(DeliveryFailed):
    """A failure worth another try (connection refused, timeout, 429, 5xx)."""

    def __init__(self, message: str, retry_after: float = 0.0):
        self.retry_after = retry_after
        super().__init__(message)


def unreachable(peer: str, error: Exception, timeout: float) -> Retryable:
    """A timeout or connection failure of an HTTP channel, as a sentence worth another try."""
    if isinstance(error, TimeoutError) or isinstance(getattr(error, "reason", None), TimeoutError):
        return Retryable(_("%(peer)s did not answer within %(timeout)ss") % {"peer": peer, "timeout": f"{timeout:g}"})
    return Retryable(_("could not reach %(peer)s (%(reason)s)") % {"peer": peer, "reason": getattr(error, "reason", error)})


def gave_up(problem: str, attempts: int, timeout: float | None) -> str:
    """Why a channel stopped retrying; ``timeout`` when it stopped to stay within its TIMEOUT."""
    values = {"problem": problem, "attempts": attempts, "timeout": f"{timeout:g}" if timeout is not None else ""}
    if timeout is not None:
        return (
            ngettext(
                "%(problem)s; gave up after %(attempts)d attempt to stay within the %(timeout)ss TIMEOUT.",
                "%(problem)s; gave up after %(attempts)d attempts to stay within the %(timeout)ss TIMEOUT.",
                attempts,
            )
            % values
        )
    return (
        ngettext("%(problem)s; gave up after %(attempts)d attempt.", "%(problem)s; gave up after %(attempts)d attempts.", attempts) % values
    )


def retry_after(headers) -> float:
    """Seconds a 429 or 5xx answer asks to wait (Retry-After in seconds; 0 when absent or a date)."""
    value = str(headers.get("Retry-After") or headers.get("retry-after") or "0")
    return float(value) if value.isdigit() else 0.0


class Channel:
    """Base class of every channel; subclasses implement build_payload and deliver.

    Options (the keys of the channel's dict in DEPLOY_OPS['NOTIFICATIONS'], besides BACKEND):
    NAME, MIN_LEVEL (default INFO), TIMEOUT (total seconds, retries included; default 10),
    and for channels that retry: RETRIES (default 3), BACKOFF (first pause, doubled each time;
    default 0.5) and ATTEMPT_TIMEOUT (seconds one attempt may take; default 5).
    """

    name = ""
    # Option names whose values must never be shown, besides any name containing SECRET_WORDS.
    secret_options: tuple[str, ...] = ()
    # Options that must be present; a missing one is a ConfigurationError naming it.
    required_options: tuple[str, ...] = ()

    def __init__(self, **options):
        self.options = options
        self.name = options.get("NAME") or self.name or type(self).__name__
        missing = [option for option in self.required_options if not options.get(option)]
        if missing:
            raise ConfigurationError(
                _("The notification channel %(name)r needs the option %(options)s.") % {"name": self.name, "options": ", ".join(missing)}
            )
        self.min_level = Level.parse(options.get("MIN_LEVEL", Level.INFO))
        self.timeout = self._number("TIMEOUT", DEFAULT_TIMEOUT)
        self.deadline = time.monotonic() + self.timeout

    def __repr__(self):
        # Never the options: they hold the secrets.
        return f"<{type(self).__name__} {self.name!r}>"

    def _number(self, option: str, default: float) -> float:
        value = self.options.get(option, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ConfigurationError(
                _("The notification channel %(name)r option %(option)s must be a number of 0 or more, not %(value)r.")
                % {"name": self.name, "option": option, "value": value}
            )
        return float(value)

    # -- the fixed sequence -------------------------------------------------------------
    def should_send(self, event: Event) -> bool:
        return event.level is Level.ROLLBACK_FAILED or event.level >= self.min_level

    def build_payload(self, event: Event):
        raise NotImplementedError

    def deliver(self, payload) -> int | None:
        """Send the payload; return how many attempts it took (None means one), raise to fail."""
        raise NotImplementedError

    def send(self, event: Event) -> Delivery:
        """Run the sequence within the budget; never raises."""
        started = time.monotonic()
        self.deadline = started + self.timeout
        if not self.should_send(event):
            return Delivery(self.name, ok=True, error=_("below MIN_LEVEL %(level)s") % {"level": self.min_level.name}, skipped=True)
        try:
            attempts = self.deliver(self.build_payload(event)) or 1
        except DeliveryFailed as failure:
            return self._failed(str(failure), failure.attempts, started)
        except Exception as error:  # a channel must never break a deploy, whatever it raises
            return self._failed(f"{type(error).__name__}: {error}", 1, started)
        return Delivery(self.name, ok=True, attempts=attempts, duration=round(time.monotonic() - started, 3))

    def _failed(self, error: str, attempts: int, started: float) -> Delivery:
        return Delivery(self.name, ok=False, error=self.redact(error), attempts=attempts, duration=round(time.monotonic() - started, 3))

    # -- helpers for subclasses ---------------------------------------------------------
    def secrets(self) -> list[str]:
        return secret_values(self.options, self.secret_options)

    def redact(self, text: str) -> str:
        return mask(redact(text, self.secrets()))

    def remaining(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def with_retries(self, attempt) -> int:
        """Call ``attempt(timeout)`` until it returns; retry a :class:`Retryable` with exponential backoff.

        Stops when RETRIES are used up or when the next pause would overrun the channel's TIMEOUT,
        so a channel can never hold a deploy longer than its budget.  Returns the attempts made.
        """
        retries = int(self._number("RETRIES", 3))
        backoff = self._number("BACKOFF", 0.5)
        attempt_timeout = self._number("ATTEMPT_TIMEOUT", 5)
        number = 0
        while True:
            number += 1
            try:
                attempt(max(0.05, min(attempt_timeout, self.remaining())))
                return number
            except Retryable as problem:
                pause = max(backoff * 2 ** (number - 1), problem.retry_after)
                if number > retries:
                    raise DeliveryFailed(gave_up(str(problem), number, None), number) from None
                if pause >= self.remaining():
                    raise DeliveryFailed(gave_up(str(problem), number, self.timeout), number) from None
                time.sleep(pause)
            except DeliveryFailed as failure:
                failure.attempts = number
                raise


def load_channel(options: dict) -> Channel:
    backend = options.get("BACKEND", "")
    try:
        cls = import_string(backend)
    except ImportError:
        raise ConfigurationError(
            _("The notification channel BACKEND %(backend)r cannot be imported; check the dotted path.") % {"backend": backend}
        ) from None
    if not (isinstance(cls, type) and issubclass(cls, Channel)):
        raise ConfigurationError(
            _("The notification channel BACKEND %(backend)r is not a deploy_ops.notifications.channels.Channel subclass.")
            % {"backend": backend}
        )
    return cls(**{key: value for key, value in options.items() if key != "BACKEND"})


def check_channels(app_configs=None, **kwargs) -> list[Error]:
    """System check deploy_ops.E020: every NOTIFICATIONS entry imports and accepts its options."""
    found = []
    try:
        configured = ops_settings.NOTIFICATIONS
    except ConfigurationError:
        return []  # the settings check (E001) already reports it
    for position, options in enumerate(configured):
        try:
            load_channel(options)
        except Exception as error:
            found.append(
                Error(
                    f"DEPLOY_OPS['NOTIFICATIONS'][{position}]: {redact(str(error), secret_values(options))}",
                    hint=_("See docs/NOTIFICATIONS.md."),
                    id=E020,
                )
            )
    return found
