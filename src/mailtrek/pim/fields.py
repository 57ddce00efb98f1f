"""Read one iCalendar or vCard object: its UID, and the fields a copy must keep equal.

Calendars are read with ``icalendar``, contacts with ``vobject``. What is compared
(``ObjectFields.fields``): per component (the series and each overridden instance, keyed
by RECURRENCE-ID) its type, summary, start and end as instants (UTC; dates stay dates,
floating times are marked), RRULE, RDATE and EXDATE (and a task's STATUS); for a contact FN and the e-mail
addresses. An object that cannot be read, has no UID, or holds several UIDs raises
``BrokenObjectError`` with the reason, and the caller reports it and goes on.
"""

from __future__ import annotations

import datetime as dt
import logging
import warnings
from dataclasses import dataclass, field
from typing import Any

from mailtrek.pim.model import Kind

CALENDAR_COMPONENTS = ("VEVENT", "VTODO", "VJOURNAL")
# A broken value in one of these makes the object unusable; others travel as they are.
KEY_PROPERTIES = frozenset({"UID", "DTSTART", "DTEND", "DUE", "DURATION", "RRULE", "RDATE",
                            "EXDATE", "RECURRENCE-ID"})


class BrokenObjectError(ValueError):
    """The object cannot be copied faithfully; ``reason`` says why (for the report)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ObjectFields:
    """What one object is (UID, title for reports) and its comparable fields."""

    uid: str
    kind: Kind
    title: str
    fields: dict[str, Any] = field(default_factory=dict)


def read_object(body: bytes, kind: Kind) -> ObjectFields:
    """Parse ``body`` as ``kind``; BrokenObjectError (with the reason) when it cannot be."""
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise BrokenObjectError(f"not UTF-8 text (byte {e.start})") from None
    return read_calendar(text) if kind == "calendar" else read_contact(text)


def instant(value: object) -> str:
    """A comparable text for a DATE, DATE-TIME (as UTC), floating time or PERIOD."""
    if isinstance(value, tuple):  # PERIOD: (start, end or duration)
        return "/".join(instant(v) for v in value)
    if isinstance(value, dt.datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            return "floating " + value.isoformat()
        return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return f"P{value.days}DT{value.seconds}S"
    return str(value)


def _values(prop: object) -> list[str]:
    """Every instant of an RDATE/EXDATE property (one or many lines, lists of values)."""
    lines = prop if isinstance(prop, list) else [prop]
    out = []
    for line in lines:
        for v in getattr(line, "dts", []):
            out.append(instant(v.dt))
    return sorted(out)


def _rrule(prop: object) -> str | None:
    if prop is None:
        return None
    text = prop.to_ical().decode()  # type: ignore[attr-defined]
    return ";".join(sorted(text.split(";")))


def _component_fields(c: Any) -> dict[str, Any]:
    broken = [f"{name}: {msg}" for name, msg in getattr(c, "errors", []) if name in KEY_PROPERTIES]
    if broken:
        raise BrokenObjectError(f"{c.name} has a bad {broken[0]}")
    for name in ("UID", "DTSTART", "DTEND", "DUE", "DURATION", "RECURRENCE-ID", "RRULE"):
        if isinstance(c.get(name), list):
            raise BrokenObjectError(f"{c.name} has {len(c.get(name))} {name} properties")
    try:
        start = c.get("DTSTART").dt if c.get("DTSTART") is not None else None
        end: object = None
        if c.get("DTEND") is not None:
            end = c.get("DTEND").dt
        elif c.get("DUE") is not None:
            end = c.get("DUE").dt
        elif c.get("DURATION") is not None and start is not None:
            end = start + c.get("DURATION").dt
        elif c.name == "VEVENT" and start is not None:  # RFC 5545 §3.6.1: implied end
            end = start if isinstance(start, dt.datetime) else start + dt.timedelta(days=1)
        if c.name == "VEVENT" and start is None:
            raise BrokenObjectError("VEVENT without DTSTART")
        out = {
            "type": c.name,
            "summary": str(c.get("SUMMARY", "")),
            "start": instant(start) if start is not None else None,
            "end": instant(end) if end is not None else None,
            "rrule": _rrule(c.get("RRULE")),
            "rdate": _values(c.get("RDATE", [])),
            "exdate": _values(c.get("EXDATE", [])),
        }
        if c.name == "VTODO":  # a task's progress (RFC 5545 §3.8.1.11)
            out["status"] = str(c.get("STATUS", "NEEDS-ACTION")).upper()
        return out
    except BrokenObjectError:
        raise
    except Exception as e:  # a library error on odd input: this object only
        raise BrokenObjectError(f"{c.name}: {type(e).__name__}: {e}") from None


def read_calendar(text: str) -> ObjectFields:
    """Read one calendar object resource (RFC 4791 §4.1: one UID, overrides included)."""
    import icalendar

    try:
        with warnings.catch_warnings():  # guessed vendor TZIDs: the instants still compare
            warnings.simplefilter("ignore")
            cal = icalendar.Calendar.from_ical(text)
    except Exception as e:
        raise BrokenObjectError(f"unreadable iCalendar: {e}") from None
    comps = [c for c in cal.subcomponents if c.name in CALENDAR_COMPONENTS]
    if not comps:
        raise BrokenObjectError("no event, task or journal in it")
    uids = {str(c.get("UID")) for c in comps if c.get("UID") is not None}
    if not uids:
        raise BrokenObjectError("no UID")
    if len(uids) > 1:
        raise BrokenObjectError(f"{len(uids)} different UIDs in one object")
    fields: dict[str, Any] = {}
    for c in comps:
        rid = c.get("RECURRENCE-ID")
        key = "series" if rid is None else "instance " + instant(rid.dt)
        fields[key] = _component_fields(c)
    master = fields.get("series") or next(iter(fields.values()))
    return ObjectFields(uids.pop(), "calendar", master["summary"], fields)


def read_contact(text: str) -> ObjectFields:
    """Read one vCard (3.0 or 4.0): UID, FN and e-mail addresses."""
    import vobject

    logging.disable(logging.ERROR)  # vobject logs what it raises anyway on the root logger
    try:
        card = vobject.readOne(text)
    except Exception as e:
        raise BrokenObjectError(f"unreadable vCard: {e}") from None
    finally:
        logging.disable(logging.NOTSET)
    if card.name != "VCARD":
        raise BrokenObjectError(f"a {card.name} where a VCARD was expected")
    uid = card.contents.get("uid")
    if not uid or not str(uid[0].value).strip():
        raise BrokenObjectError("no UID")
    fn = card.contents.get("fn")
    name = str(fn[0].value) if fn else ""
    emails = sorted(str(e.value).strip().lower() for e in card.contents.get("email", []))
    return ObjectFields(str(uid[0].value), "contacts", name, {"fn": name, "emails": emails})


def differences(source: dict[str, Any], dest: dict[str, Any]) -> list[str]:
    """Names of the fields that differ (``series.start``, ``emails``...); empty when equal."""
    out = []
    for key in sorted(set(source) | set(dest)):
        a, b = source.get(key), dest.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += [f"{key}.{k}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
        elif a != b:
            out.append(key)
    return out
