"""Batch options typed by people (CLI flags, dashboard fields), read one way for both front ends."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from mailtrek.errors import UsageError

_UNITS = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


def size_option(text: str | None) -> int | None:
    """Return bytes for ``35M``, ``512k``, ``2G`` or a plain number (None stays None)."""
    if text is None:
        return None
    t = text.strip().lower().removesuffix("b")
    try:
        return int(float(t[:-1]) * _UNITS[t[-1]]) if t and t[-1] in _UNITS else int(t)
    except ValueError:
        raise UsageError(f"bad size {text!r}", hint="bytes, or a number with K, M or G (35M)") from None


def date_option(text: str | None, opt: str) -> str | None:
    """Return an ISO-8601 UTC time for ``YYYY-MM-DD`` or an ISO time (naive means UTC)."""
    if text is None:
        return None
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"bad {opt} date {text!r}", hint="use YYYY-MM-DD or an ISO-8601 time") from None
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).isoformat()


ITEMS = ("mail", "calendars", "contacts")  # what a batch user's move may carry, in run order
_ITEM_WORDS = {"mail": "mail", "email": "mail", "calendars": "calendars", "calendar": "calendars",
               "contacts": "contacts", "contact": "contacts"}


def items_option(text: str | None, opt: str = "--items") -> list[str]:
    """Return what ``mail,calendars,contacts`` names, in run order (None or blank: mail only).

    Separators may be commas, semicolons, ``+``, ``|`` or spaces (a CSV cell holds any).
    Raises UsageError naming a word it does not know.
    """
    if text is None or not text.strip():
        return ["mail"]
    chosen = set()
    for word in (w for w in re.split(r"[,;+|\s]+", text.strip().lower()) if w):
        if word not in _ITEM_WORDS:
            raise UsageError(f"{opt} takes {', '.join(ITEMS)}, not {word!r}")
        chosen.add(_ITEM_WORDS[word])
    return [i for i in ITEMS if i in chosen]
