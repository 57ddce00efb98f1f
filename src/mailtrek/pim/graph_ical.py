"""The way back: Graph ``event``/``contact`` JSON as iCalendar/vCard text, and projections.

A Graph destination is read (to verify, and to adopt after a lost state) through the same
``read_object`` as any DAV store, so what Graph holds is written out as iCalendar: the
series (start, end, subject, the RRULE of its ``patternedRecurrence``), one VEVENT per
changed occurrence (RECURRENCE-ID from ``originalStart``) and an EXDATE per cancelled one;
a contact as a vCard 3.0 (UID, FN, N, EMAIL); a To Do task as a VTODO (SUMMARY, STATUS,
PRIORITY, DTSTART, DUE, COMPLETED, RRULE).

``project_event``/``project_contact`` give what a source object *becomes* in Graph
(mapped by ``graph_map`` and written back here, no network): comparing that projection
with what Graph holds tells a faithful copy from a wrong one, while what the mapping had
to leave out is reported when copying (``lost``), not again on every comparison.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Iterable
from functools import cache
from typing import Any

from mailtrek.pim.graph_map import TASK_STATUS, contact_to_graph, event_to_graph, todo_to_graph

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
INDEX = {"first": "1", "second": "2", "third": "3", "fourth": "4", "last": "-1"}


@cache
def zone(name: str | None) -> dt.tzinfo:
    """A tzinfo for a Graph ``timeZone`` (Windows or IANA name); UTC when unknown."""
    if not name or name.upper() in ("UTC", "Z", "ETC/UTC"):
        return dt.UTC
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        pass
    from icalendar.timezone.windows_to_olson import WINDOWS_TO_OLSON

    olson = WINDOWS_TO_OLSON.get(name)
    return zoneinfo.ZoneInfo(olson) if olson else dt.UTC


def when(value: dict[str, Any]) -> dt.datetime:
    """A ``dateTimeTimeZone`` as an aware datetime."""
    return dt.datetime.fromisoformat(value["dateTime"][:19]).replace(
        tzinfo=zone(value.get("timeZone")))


def _fmt(value: dt.datetime | dt.date) -> str:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return value.strftime("%Y%m%d")


def _prop(name: str, value: dt.datetime | dt.date) -> str:
    """A DATE, a UTC DATE-TIME, or a local one with its IANA TZID (so a series keeps its
    wall-clock time across DST changes when expanded)."""
    if not isinstance(value, dt.datetime):
        return f"{name};VALUE=DATE:{_fmt(value)}"
    key = getattr(value.tzinfo, "key", None)
    if key and key not in ("UTC", "Etc/UTC"):
        return f"{name};TZID={key}:{value.strftime('%Y%m%dT%H%M%S')}"
    return f"{name}:{_fmt(value)}"


def _escape(text: str) -> str:
    return (text.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,")
            .replace("\r\n", "\\n").replace("\n", "\\n"))


def _times(ev: dict[str, Any]) -> tuple[dt.datetime | dt.date, dt.datetime | dt.date]:
    start, end = when(ev["start"]), when(ev["end"])
    if ev.get("isAllDay"):
        return start.date(), end.date()
    return start, end


def rrule_text(recurrence: dict[str, Any], start: dt.datetime | dt.date,
               local_until: bool = False) -> str | None:
    """The RRULE meaning the same as a ``patternedRecurrence`` (None for an unknown type).

    ``local_until`` writes UNTIL as a floating wall-clock time (for expanding the rule
    from a naive start, which is much faster than with time zones)."""
    pattern, rng = recurrence.get("pattern") or {}, recurrence.get("range") or {}
    ptype = str(pattern.get("type", ""))
    parts = {"daily": ["FREQ=DAILY"], "weekly": ["FREQ=WEEKLY"],
             "absoluteMonthly": ["FREQ=MONTHLY"], "relativeMonthly": ["FREQ=MONTHLY"],
             "absoluteYearly": ["FREQ=YEARLY"], "relativeYearly": ["FREQ=YEARLY"]}.get(ptype)
    if parts is None:
        return None
    parts = list(parts)
    interval = int(pattern.get("interval") or 1)
    if interval != 1:
        parts.append(f"INTERVAL={interval}")
    days = ",".join(d[:2].upper() for d in pattern.get("daysOfWeek") or [])
    if ptype.endswith("Yearly"):
        parts.append(f"BYMONTH={int(pattern.get('month') or start.month)}")
    if ptype == "weekly":
        if days:
            parts.append(f"BYDAY={days}")
        parts.append(f"WKST={str(pattern.get('firstDayOfWeek') or 'sunday')[:2].upper()}")
    elif ptype.startswith("absolute"):
        parts.append(f"BYMONTHDAY={int(pattern.get('dayOfMonth') or start.day)}")
    elif ptype.startswith("relative"):
        parts.append(f"BYDAY={days}")
        parts.append(f"BYSETPOS={INDEX.get(str(pattern.get('index') or 'first').lower(), '1')}")
    if rng.get("type") == "numbered":
        parts.append(f"COUNT={int(rng.get('numberOfOccurrences') or 1)}")
    elif rng.get("type") == "endDate" and rng.get("endDate"):
        last = dt.date.fromisoformat(str(rng["endDate"])[:10])
        if local_until and isinstance(start, dt.datetime):
            parts.append(f"UNTIL={last.strftime('%Y%m%d')}T235959")
            return ";".join(parts)
        if isinstance(start, dt.datetime):
            tz = zone(rng.get("recurrenceTimeZone")) if rng.get("recurrenceTimeZone") \
                else start.tzinfo
            until: dt.datetime | dt.date = dt.datetime.combine(last, dt.time(23, 59, 59), tz)
        else:
            until = last
        parts.append(f"UNTIL={_fmt(until)}")
    return ";".join(parts)


def event_ical(uid: str, master: dict[str, Any], exceptions: Iterable[dict[str, Any]] = (),
               cancelled: Iterable[dt.datetime | dt.date] = ()) -> bytes:
    """One calendar object resource for a Graph series (or single event).

    ``exceptions`` are instance resources with ``originalStart``; ``cancelled`` the
    original starts of deleted occurrences.
    """
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//mailtrek//Graph readback//EN"]

    def vevent(ev: dict[str, Any], rid: dt.datetime | dt.date | None) -> None:
        s, e = _times(ev)
        lines.extend(["BEGIN:VEVENT", f"UID:{_escape(uid)}", "DTSTAMP:20000101T000000Z",
                      _prop("DTSTART", s), _prop("DTEND", e),
                      f"SUMMARY:{_escape(str(ev.get('subject') or ''))}"])
        if rid is not None:
            lines.append(_prop("RECURRENCE-ID", rid))
        else:
            rule = rrule_text(ev["recurrence"], s) if ev.get("recurrence") else None
            if rule:
                lines.append(f"RRULE:{rule}")
            for c in sorted(cancelled, key=_fmt):
                lines.append(_prop("EXDATE", c))
        lines.append("END:VEVENT")

    vevent(master, None)
    for ex in exceptions:
        start = dt.datetime.fromisoformat(str(ex["originalStart"]).replace("Z", "+00:00"))
        rid: dt.datetime | dt.date = start
        if master.get("isAllDay"):
            rid = start.astimezone(when(master["start"]).tzinfo).date()
        vevent(ex, rid)
    lines.append("END:VCALENDAR")
    return ("\r\n".join(lines) + "\r\n").encode()


def contact_vcard(uid: str, contact: dict[str, Any]) -> bytes:
    """A vCard 3.0 for a Graph contact: UID, FN, N and its e-mail addresses."""
    lines = ["BEGIN:VCARD", "VERSION:3.0", f"UID:{_escape(uid)}",
             f"FN:{_escape(str(contact.get('displayName') or ''))}",
             "N:" + ";".join(_escape(str(contact.get(k) or "")) for k in (
                 "surname", "givenName", "middleName", "title", "generation"))]
    for e in contact.get("emailAddresses") or []:
        address = str((e or {}).get("address") or "").strip()
        if address:
            lines.append(f"EMAIL;TYPE=INTERNET:{_escape(address)}")
    lines.append("END:VCARD")
    return ("\r\n".join(lines) + "\r\n").encode()


def _instant(value: dict[str, str], master: dict[str, Any]) -> dt.datetime | dt.date:
    at = when(value)
    return at.date() if master.get("isAllDay") else at


MAX_OCCURRENCES = 2000  # how far a series without end is read (as the simulator does)


def series_dates(master: dict[str, Any]) -> list[dt.date]:
    """The dates of a Graph series' occurrences (at most ``MAX_OCCURRENCES``)."""
    from dateutil import rrule

    # Wall-clock expansion (naive): the series' local dates, whatever the DST offsets.
    start = when(master["start"])
    local = start.replace(tzinfo=None)
    if master.get("isAllDay"):
        local = dt.datetime.combine(start.date(), dt.time())
    text = rrule_text(master.get("recurrence") or {}, local, local_until=True)
    if text is None:
        return []
    out = []
    for n, occurrence in enumerate(rrule.rrulestr(text, dtstart=local)):
        if n >= MAX_OCCURRENCES:
            break
        out.append(occurrence.date())
    return out


def occurs(master: dict[str, Any], at: dt.datetime | dt.date,
           dates: list[dt.date] | None = None) -> bool:
    """True when the series has an occurrence starting at ``at`` (its date, all-day)."""
    dates = series_dates(master) if dates is None else dates
    if master.get("isAllDay") or not isinstance(at, dt.datetime):
        day = at if not isinstance(at, dt.datetime) else at.date()
        return day in dates
    first = when(master["start"])
    local = at.astimezone(first.tzinfo)
    return local.date() in dates and local.timetz().replace(tzinfo=None) == \
        first.timetz().replace(tzinfo=None)


def project_event(body: bytes) -> bytes:
    """What a calendar object resource becomes in Graph, as iCalendar (no network).

    Overrides and EXDATEs of no occurrence of the series are left out (the store cannot
    apply them, and says so). Raises BrokenObjectError for what ``event_to_graph`` cannot
    map at all.
    """
    ge = event_to_graph(body)
    dates = series_dates(ge.body) if ge.body.get("recurrence") else []
    exceptions = []
    for rid, changed in ge.overrides:
        at = _instant(rid, ge.body)
        if not occurs(ge.body, at, dates):
            continue
        start = at if isinstance(at, dt.datetime) else dt.datetime.combine(at, dt.time(), dt.UTC)
        exceptions.append({**changed, "originalStart": start.astimezone(dt.UTC).strftime(
            "%Y-%m-%dT%H:%M:%SZ")})
    cancelled = [at for at in (_instant(c, ge.body) for c in ge.cancelled)
                 if occurs(ge.body, at, dates)]
    return event_ical(ge.uid, ge.body, exceptions, cancelled)


def project_contact(body: bytes, uid: str) -> bytes:
    """What a vCard becomes in Graph, as a vCard (no network)."""
    return contact_vcard(uid, contact_to_graph(body).body)


# -- tasks -------------------------------------------------------------------------------
ICAL_STATUS = {v: k for k, v in TASK_STATUS.items()}


def task_ical(uid: str, task: dict[str, Any]) -> bytes:
    """One VTODO for a To Do ``todoTask``: SUMMARY, STATUS, DTSTART, DUE, COMPLETED,
    PRIORITY, the RRULE of its ``patternedRecurrence`` (anchored at its start, else due)."""
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//mailtrek//Graph readback//EN",
             "BEGIN:VTODO", f"UID:{_escape(uid)}", "DTSTAMP:20000101T000000Z",
             f"SUMMARY:{_escape(str(task.get('title') or ''))}",
             f"STATUS:{ICAL_STATUS.get(str(task.get('status')), 'NEEDS-ACTION')}",
             f"PRIORITY:{ {'high': 1, 'low': 9}.get(str(task.get('importance')), 5)}"]
    start = _task_time(task.get("startDateTime"))
    due = _task_time(task.get("dueDateTime"))
    if start is not None:
        lines.append(_prop("DTSTART", start))
    if due is not None:
        lines.append(_prop("DUE", due))
    if task.get("completedDateTime"):
        lines.append(f"COMPLETED:{_fmt(when(task['completedDateTime']))}")
    anchor = start or due
    if task.get("recurrence") and anchor is not None:
        rule = rrule_text(task["recurrence"], anchor)
        if rule:
            lines.append(f"RRULE:{rule}")
    lines += ["END:VTODO", "END:VCALENDAR"]
    return ("\r\n".join(lines) + "\r\n").encode()


def _task_time(value: dict[str, Any] | None) -> dt.datetime | dt.date | None:
    """A task's start or due: midnight is a date (To Do's due dates are days, and a DATE
    is sent as midnight, ``graph_time.graph_datetime``)."""
    if not value:
        return None
    at = when(value)
    return at.date() if at.timetz().replace(tzinfo=None) == dt.time() else at


def project_task(body: bytes) -> bytes:
    """What a VTODO becomes in To Do, as a VTODO (no network)."""
    gt = todo_to_graph(body)
    return task_ical(gt.uid, gt.body)
