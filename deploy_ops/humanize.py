"""How sizes, ages and durations read, the same in every command and in the admin.

Sizes and ages are Django's own (``filesizeformat``, ``timesince``); durations are seconds said
in the two largest units ("4 min 12 s", "1 h 3 min"), which ``timesince`` cannot do below a minute.
"""

from __future__ import annotations

from datetime import datetime

from django.template.defaultfilters import filesizeformat
from django.utils.formats import get_format
from django.utils.timesince import timesince
from django.utils.translation import gettext as _
from django.utils.translation import pgettext_lazy

UNITS = (
    (86400, pgettext_lazy("duration unit: days", "d")),
    (3600, pgettext_lazy("duration unit: hours", "h")),
    (60, pgettext_lazy("duration unit: minutes", "min")),
    (1, pgettext_lazy("duration unit: seconds", "s")),
)


def size(octets: int | None) -> str:
    return "?" if octets is None else str(filesizeformat(octets))


def age(moment: datetime | None) -> str:
    """ "3 hours, 5 minutes" (Django's timesince, two units)."""
    return "?" if moment is None else timesince(moment)


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds < 10:
        return _("%(seconds)s s") % {"seconds": decimal(seconds, ".1f")}
    remaining = round(seconds)
    parts: list[str] = []
    for unit_seconds, unit in UNITS:
        if remaining >= unit_seconds and len(parts) < 2:
            parts.append(f"{remaining // unit_seconds} {unit}")
            remaining %= unit_seconds
        elif parts:
            break
    return " ".join(parts)


def decimal(number: float, spec: str) -> str:
    """``format(number, spec)`` with the active language's decimal separator ("0,9" in Spanish)."""
    return format(number, spec).replace(".", get_format("DECIMAL_SEPARATOR"))


def percent(share: float | None) -> str:
    return "–" if share is None else f"{share * 100:.0f} %"
