"""Time zones and times as Microsoft Graph's ``dateTimeTimeZone`` accepts them.

Graph's ``timeZone`` takes the time zones Windows supports plus a list of additional
(IANA) ones, and warns that create and update may accept only a subset
(learn.microsoft.com/graph/api/resources/datetimetimezone). So an IANA TZID is sent as
its Windows name, from the Unicode CLDR windowsZones mapping that ``icalendar`` ships
(directly, or through a zone with the same rules); a TZID that already is a Windows
name is kept; one with neither is sent as UTC and said so.
"""

from __future__ import annotations

import datetime as dt
from functools import cache

UTC_NAME = "UTC"


@cache
def _olson_to_windows() -> dict[str, str]:
    from icalendar.timezone.windows_to_olson import WINDOWS_TO_OLSON

    out: dict[str, str] = {}
    for windows, olson in sorted(WINDOWS_TO_OLSON.items()):
        out.setdefault(olson, windows)
    return out


@cache
def _windows_names() -> frozenset[str]:
    from icalendar.timezone.windows_to_olson import WINDOWS_TO_OLSON

    return frozenset(WINDOWS_TO_OLSON) | {UTC_NAME}


def _strip_vendor(tzid: str) -> str:
    """``/mozilla.org/20070129_1/America/New_York`` → ``America/New_York`` (RFC 5545 §3.2.19)."""
    if not tzid.startswith("/"):
        return tzid
    parts = [p for p in tzid.split("/") if p]
    for n in range(len(parts)):
        candidate = "/".join(parts[n:])
        if _is_iana(candidate):
            return candidate
    return tzid


def _is_iana(name: str) -> bool:
    import zoneinfo

    try:
        zoneinfo.ZoneInfo(name)
        return True
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return False


@cache
def windows_zone(tzid: str) -> str | None:
    """The Windows time zone name for an iCalendar TZID, or None when there is none."""
    if tzid in _windows_names():
        return tzid
    name = _strip_vendor(tzid)
    if name in ("UTC", "Etc/UTC", "GMT", "Etc/GMT", "Z"):
        return UTC_NAME
    table = _olson_to_windows()
    if name in table:
        return table[name]
    try:
        from icalendar.timezone.tzid import get_equivalent_tzids

        for other in get_equivalent_tzids(name):
            if other in table:
                return table[other]
    except Exception:  # an icalendar without the equivalence table: no guess
        return None
    return None


def graph_datetime(value: dt.datetime | dt.date, tzid: str | None, default_zone: str,
                   lost: list[str], what: str) -> dict[str, str]:
    """A ``dateTimeTimeZone`` for an iCalendar DATE or DATE-TIME; notes losses in ``lost``.

    Dates become midnight in ``default_zone`` (Graph's all-day form); floating times are
    pinned to ``default_zone``; zoned times keep their wall-clock time and zone.
    """
    if not isinstance(value, dt.datetime):
        return {"dateTime": f"{value.isoformat()}T00:00:00", "timeZone": default_zone}
    if value.tzinfo is None or value.utcoffset() is None:
        lost.append(f"{what}: a floating time, pinned to {default_zone}")
        return {"dateTime": value.isoformat(timespec="seconds"), "timeZone": default_zone}
    name = tzid or getattr(value.tzinfo, "key", None) or str(value.tzinfo)
    zone = windows_zone(name)
    if zone is None:
        lost.append(f"{what}: time zone {name!r} has no Windows name: sent as UTC")
        utc = value.astimezone(dt.UTC).replace(tzinfo=None)
        return {"dateTime": utc.isoformat(timespec="seconds"), "timeZone": UTC_NAME}
    if zone == UTC_NAME:
        value = value.astimezone(dt.UTC)
    return {"dateTime": value.replace(tzinfo=None).isoformat(timespec="seconds"),
            "timeZone": zone}
