"""Pure mappings: iCalendar VEVENT → Graph ``event`` JSON, vCard → Graph ``contact`` JSON.

Following Microsoft Learn's Graph resources (``event``, ``patternedRecurrence``,
``recurrencePattern``, ``recurrenceRange``, ``dateTimeTimeZone``, ``contact``). Every
mapping returns the JSON and ``lost``: what Graph cannot hold, one line each with the
reason, for the per-item report. Nothing here talks to Graph.

What travels beside the JSON, for the destination store to apply after creating the
series: ``cancelled`` (EXDATE instances to delete), ``overrides`` (RECURRENCE-ID
instances to update), ``attendees``/``organizer`` (kept apart on purpose: sending them in
the create body makes Exchange send invitations, which a migration must never do) and a
contact's ``photo`` bytes (Graph sets photos with a separate request).
"""

from __future__ import annotations

import datetime as dt
import warnings
from dataclasses import dataclass, field
from typing import Any

from mailtrek.pim.fields import BrokenObjectError
from mailtrek.pim.graph_time import UTC_NAME, graph_datetime

DAYS = {"MO": "monday", "TU": "tuesday", "WE": "wednesday", "TH": "thursday",
        "FR": "friday", "SA": "saturday", "SU": "sunday"}
WEEKDAY_CODES = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
INDEX = {1: "first", 2: "second", 3: "third", 4: "fourth", -1: "last"}
SUPPORTED_RULE_PARTS = {"FREQ", "INTERVAL", "COUNT", "UNTIL", "BYDAY", "BYMONTHDAY",
                        "BYMONTH", "BYSETPOS", "WKST"}
MAX_EMAILS = 3  # Outlook contacts hold Email1..Email3


INLINE_EVENT_FILE = 3 * 1024 * 1024  # "limits the size of the attachment ... to under 3 MB"
MAX_EVENT_FILE = 150 * 1024 * 1024  # upload sessions: "between 3 MB and 150 MB"
FILENAME_PARAMS = ("X-FILENAME", "FILENAME", "X-APPLE-FILENAME", "X-ORACLE-FILENAME")


@dataclass(frozen=True)
class EventFile:
    """An inline ATTACH as a Graph ``fileAttachment`` (name, contentType, the bytes)."""

    name: str
    content_type: str
    content: bytes


@dataclass
class GraphEvent:
    """A series (or single event) as Graph JSON, with what must follow its creation."""

    uid: str
    body: dict[str, Any]
    lost: list[str] = field(default_factory=list)
    cancelled: list[dict[str, str]] = field(default_factory=list)
    overrides: list[tuple[dict[str, str], dict[str, Any]]] = field(default_factory=list)
    attendees: list[dict[str, Any]] = field(default_factory=list)
    organizer: dict[str, Any] | None = None
    files: list[EventFile] = field(default_factory=list)  # inline ATTACH, to add after
    links: list[str] = field(default_factory=list)  # ATTACH by URI, kept in the body


@dataclass
class GraphContact:
    """A contact as Graph JSON, its photo (set separately) and what was lost."""

    uid: str | None
    body: dict[str, Any]
    lost: list[str] = field(default_factory=list)
    photo: bytes | None = None


def _components(body: bytes, name: str) -> tuple[list[Any], Any]:
    """Return the ``name`` components of an iCalendar object and its master (the one
    without RECURRENCE-ID); BrokenObjectError when unreadable or holding none."""
    import icalendar

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cal = icalendar.Calendar.from_ical(body)
    except Exception as e:
        raise BrokenObjectError(f"unreadable iCalendar: {e}") from None
    found = [c for c in cal.subcomponents if c.name == name]
    if not found:
        raise BrokenObjectError(f"no {name} in it")
    return found, next((c for c in found if c.get("RECURRENCE-ID") is None), found[0])


# -- events ------------------------------------------------------------------------------
def event_to_graph(body: bytes, *, default_zone: str = UTC_NAME) -> GraphEvent:
    """Map one calendar object resource (a VEVENT series with its overrides).

    Raises BrokenObjectError when it holds no VEVENT or no UID; everything else that
    Graph cannot express is listed in ``lost``.
    """
    events, master = _components(body, "VEVENT")
    uid = master.get("UID")
    if uid is None:
        raise BrokenObjectError("no UID")
    out = GraphEvent(str(uid), {})
    out.body = _event_body(master, default_zone, out.lost, "event")
    if master.get("RECURRENCE-ID") is not None:
        out.lost.append("only changed occurrences, without their series: the first is kept "
                        "as a single event")
    rrule = master.get("RRULE")
    if isinstance(rrule, list):
        out.lost.append(f"{len(rrule)} RRULEs: only the first is kept")
        rrule = rrule[0]
    if rrule is not None:
        recurrence = _recurrence(rrule, master, out.body["start"], out.lost)
        if recurrence is not None:
            out.body["recurrence"] = recurrence
    if master.get("RDATE") is not None:
        out.lost.append("RDATE: a Graph recurrence cannot add single dates "
                        "(each would be a separate event)")
    for ex in _as_list(master.get("EXDATE")):
        for v in getattr(ex, "dts", []):
            tzid = ex.params.get("TZID") if hasattr(ex, "params") else None
            out.cancelled.append(graph_datetime(v.dt, tzid, default_zone, out.lost, "EXDATE"))
    for override in events:
        rid = override.get("RECURRENCE-ID")
        if rid is None or override is master:
            continue
        when = graph_datetime(rid.dt, rid.params.get("TZID"), default_zone, out.lost,
                              "RECURRENCE-ID")
        extra = [p for p in ("RRULE", "RDATE", "EXDATE") if override.get(p) is not None]
        if extra:
            out.lost.append(f"the occurrence of {when['dateTime']} has its own "
                            f"{', '.join(extra)}: an occurrence in Graph cannot")
        out.overrides.append((when, _event_body(override, default_zone, out.lost, "override")))
    _attachments(master, out)
    out.organizer = _person(master.get("ORGANIZER"))
    for a in _as_list(master.get("ATTENDEE")):
        person = _person(a)
        if person is not None:
            role = str(a.params.get("ROLE", "REQ-PARTICIPANT")).upper()
            cutype = str(a.params.get("CUTYPE", "INDIVIDUAL")).upper()
            person["type"] = ("resource" if cutype in ("RESOURCE", "ROOM") else
                              "optional" if role in ("OPT-PARTICIPANT", "NON-PARTICIPANT")
                              else "required")
            out.attendees.append(person)
    return out


def _attachments(master: Any, out: GraphEvent) -> None:
    """Inline ATTACH (ENCODING=BASE64;VALUE=BINARY) → ``files`` for fileAttachments
    (learn.microsoft.com/graph/api/event-post-attachments: "under 3 MB"; from 3 MB to
    150 MB through an upload session, learn.microsoft.com/graph/api/resources/attachment;
    bigger ones are listed in ``lost``); ATTACH by URI → ``links``, written into the
    event body."""
    import base64
    import binascii

    for n, a in enumerate(_as_list(master.get("ATTACH")), 1):
        params = getattr(a, "params", {})
        binary = (str(params.get("VALUE", "")).upper() == "BINARY"
                  or str(params.get("ENCODING", "")).upper() == "BASE64")
        if not binary:
            uri = str(a).strip()
            if uri:
                out.links.append(uri)
                out.lost.append(f"attachment link {uri}: kept as a link in the event body")
            continue
        name = next((str(params[k]) for k in FILENAME_PARAMS if params.get(k)),
                    f"attachment-{n}")
        try:
            raw = a.to_ical() if hasattr(a, "to_ical") else str(a).encode()
            content = base64.b64decode(raw, validate=False)
        except (binascii.Error, ValueError):
            out.lost.append(f"attachment {name}: not valid base64: not copied")
            continue
        if len(content) > MAX_EVENT_FILE:
            out.lost.append(f"attachment {name} ({len(content)} bytes): Graph attaches files "
                            "of up to 150 MB to an event: not copied")
            continue
        out.files.append(EventFile(name, str(params.get("FMTTYPE") or
                                             "application/octet-stream"), content))


def _as_list(value: Any) -> list[Any]:
    return [] if value is None else value if isinstance(value, list) else [value]


def _person(prop: Any) -> dict[str, Any] | None:
    if prop is None:
        return None
    address = str(prop)
    if address.lower().startswith("mailto:"):
        address = address[7:]
    name = str(prop.params.get("CN", "")) if hasattr(prop, "params") else ""
    return {"emailAddress": {"address": address, **({"name": name} if name else {})}}


def _event_body(e: Any, default_zone: str, lost: list[str], what: str) -> dict[str, Any]:
    start_prop = e.get("DTSTART")
    if start_prop is None or isinstance(start_prop, list):
        raise BrokenObjectError(f"{what}: no single DTSTART")
    start = start_prop.dt
    tzid = start_prop.params.get("TZID")
    if e.get("DTEND") is not None:
        end_prop = e.get("DTEND")
        end, end_tz = end_prop.dt, end_prop.params.get("TZID")
    elif e.get("DURATION") is not None:
        end, end_tz = start + e.get("DURATION").dt, tzid
    else:  # RFC 5545 §3.6.1: a day for dates, no duration for times
        end, end_tz = (start + dt.timedelta(days=1) if not isinstance(start, dt.datetime)
                       else start), tzid
    all_day = not isinstance(start, dt.datetime)
    body: dict[str, Any] = {
        "subject": str(e.get("SUMMARY", "")),
        "start": graph_datetime(start, tzid, default_zone, lost, f"{what} start"),
        "end": graph_datetime(end, end_tz, default_zone, lost, f"{what} end"),
        "isAllDay": all_day,
    }
    if e.get("DESCRIPTION") is not None:
        body["body"] = {"contentType": "text", "content": str(e.get("DESCRIPTION"))}
    if e.get("LOCATION") is not None:
        body["location"] = {"displayName": str(e.get("LOCATION"))}
    cats = [str(c) for p in _as_list(e.get("CATEGORIES")) for c in getattr(p, "cats", [p])]
    if cats:
        body["categories"] = cats
    if str(e.get("TRANSP", "")).upper() == "TRANSPARENT":
        body["showAs"] = "free"
    klass = str(e.get("CLASS", "")).upper()
    if klass in ("PRIVATE", "CONFIDENTIAL"):
        body["sensitivity"] = klass.lower()
    _reminder(e, body, lost, what)
    return body


def _reminder(e: Any, body: dict[str, Any], lost: list[str], what: str) -> None:
    alarms = [a for a in e.subcomponents if a.name == "VALARM"]
    if not alarms:
        return
    trigger = alarms[0].get("TRIGGER")
    value = getattr(trigger, "dt", None)
    related = str(trigger.params.get("RELATED", "START")).upper() if trigger is not None else ""
    if isinstance(value, dt.timedelta) and related == "START" and value <= dt.timedelta(0):
        body["isReminderOn"] = True
        body["reminderMinutesBeforeStart"] = int(-value.total_seconds() // 60)
    else:
        lost.append(f"{what}: an alarm not relative to the start: Graph keeps minutes before "
                    "the start only")
    if len(alarms) > 1:
        lost.append(f"{what}: {len(alarms) - 1} more alarms: Graph keeps one reminder")


def _recurrence(rrule: Any, master: Any, start: dict[str, str],
                lost: list[str], first: Any = None) -> dict[str, Any] | None:
    """A ``patternedRecurrence`` for an RRULE, or None (with the reason in ``lost``).

    ``first`` is the series' anchor (DTSTART unless given: a task's DUE)."""
    rule = {k.upper(): v for k, v in rrule.items()}
    text = rrule.to_ical().decode()
    unsupported = sorted(set(rule) - SUPPORTED_RULE_PARTS)
    if unsupported:
        lost.append(f"RRULE {text}: Graph has no {', '.join(unsupported)}: not a series")
        return None
    freq = str(rule["FREQ"][0]).upper()
    interval = int(rule.get("INTERVAL", [1])[0])
    if first is None:
        first = master.get("DTSTART").dt
    byday = [str(d).upper() for d in rule.get("BYDAY", [])]
    monthdays = [int(d) for d in rule.get("BYMONTHDAY", [])]
    months = [int(m) for m in rule.get("BYMONTH", [])]
    setpos = [int(p) for p in rule.get("BYSETPOS", [])]

    def refuse(why: str) -> dict[str, Any] | None:
        lost.append(f"RRULE {text}: {why}: not a series")
        return None

    pattern: dict[str, Any] = {"interval": interval}
    if freq == "DAILY" and not (byday or monthdays or months):
        pattern["type"] = "daily"
    elif freq == "WEEKLY" or (freq == "DAILY" and byday and interval == 1
                              and not (monthdays or months)):
        if monthdays or months or any(len(d) != 2 for d in byday):
            return refuse("weekly with month days, months or numbered days")
        codes = byday or [WEEKDAY_CODES[first.weekday()]]
        pattern.update(type="weekly", daysOfWeek=[DAYS[c] for c in codes],
                       firstDayOfWeek=DAYS[str(rule.get("WKST", ["MO"])[0]).upper()])
    elif freq in ("MONTHLY", "YEARLY"):
        if freq == "YEARLY":
            if len(months) > 1:
                return refuse("several months")
            pattern["month"] = months[0] if months else first.month
        elif months:
            return refuse("monthly limited to some months")
        relative = _relative_day(byday, setpos)
        if relative is not None:
            index, days = relative
            pattern.update(type="relative" + freq.capitalize(), index=index, daysOfWeek=days)
        elif byday:
            return refuse("days of the week Graph cannot number (first to fourth, or last)")
        elif len(monthdays) > 1 or any(d < 1 for d in monthdays):
            return refuse("several or counted-from-the-end month days")
        else:
            pattern.update(type="absolute" + freq.capitalize(),
                           dayOfMonth=monthdays[0] if monthdays else first.day)
    else:
        return refuse(f"frequency {freq}")
    if setpos and not pattern["type"].startswith("relative"):
        return refuse("BYSETPOS")
    rng: dict[str, Any] = {"startDate": (first.date() if isinstance(first, dt.datetime)
                                         else first).isoformat(),
                           "recurrenceTimeZone": start["timeZone"]}
    if "COUNT" in rule:
        rng.update(type="numbered", numberOfOccurrences=int(rule["COUNT"][0]))
    elif "UNTIL" in rule:
        rng.update(type="endDate", endDate=_last_date(text, first, rule["UNTIL"][0]))
    else:
        rng["type"] = "noEnd"
    return {"pattern": pattern, "range": rng}


def _last_date(text: str, first: Any, until: Any) -> str:
    """Graph's ``endDate`` for an RRULE with UNTIL: the date of its last occurrence.

    Graph ends a series on a date (every occurrence on it included), RFC 5545 at an
    instant: the UNTIL date itself would add the occurrence after UNTIL on that day.
    """
    if isinstance(until, dt.datetime) and isinstance(first, dt.datetime) and first.tzinfo:
        until = until.astimezone(first.tzinfo) if until.tzinfo else until.replace(
            tzinfo=first.tzinfo)
    fallback = (until.date() if isinstance(until, dt.datetime) else until).isoformat()
    try:
        from dateutil import rrule as du

        start = first if isinstance(first, dt.datetime) else dt.datetime.combine(first, dt.time())
        if not isinstance(until, dt.datetime):  # a DATE: the whole day
            until = dt.datetime.combine(until, dt.time(23, 59, 59), start.tzinfo)
        elif (until.tzinfo is None) != (start.tzinfo is None):
            until = until.replace(tzinfo=start.tzinfo)
        open_ended = ";".join(p for p in text.split(";") if not p.upper().startswith("UNTIL="))
        last = None
        for n, occurrence in enumerate(du.rrulestr(open_ended, dtstart=start)):
            if occurrence > until or n > 100_000:
                break
            last = occurrence
        return fallback if last is None else last.date().isoformat()
    except (ValueError, TypeError, OverflowError):
        return fallback


def _relative_day(byday: list[str], setpos: list[int]) -> tuple[str, list[str]] | None:
    """``2TU``/``-1FR`` or ``TU`` with BYSETPOS=2 → ("second", ["tuesday"]); else None."""
    if not byday:
        return None
    numbered = {d[:-2] for d in byday}
    codes = [d[-2:] for d in byday]
    if len(numbered) != 1 or any(c not in DAYS for c in codes):
        return None
    n = numbered.pop()
    if n == "" and len(setpos) == 1:
        n = str(setpos[0])
    elif n == "" or setpos:
        return None
    try:
        index = INDEX[int(n)]
    except (ValueError, KeyError):
        return None
    return index, [DAYS[c] for c in codes]


# -- tasks -------------------------------------------------------------------------------
TASK_STATUS = {"NEEDS-ACTION": "notStarted", "IN-PROCESS": "inProgress",
               "COMPLETED": "completed"}
UNTITLED = "(untitled task)"


@dataclass
class GraphTask:
    """A VTODO as a Microsoft To Do ``todoTask`` (learn.microsoft.com/graph/api/resources/todotask)."""

    uid: str
    body: dict[str, Any]
    lost: list[str] = field(default_factory=list)


def has_task(body: bytes) -> bool:
    """True when the calendar object holds VTODOs and no VEVENT (a task, for To Do)."""
    return b"BEGIN:VTODO" in body.upper() and b"BEGIN:VEVENT" not in body.upper()


def importance(priority: Any) -> str:
    """RFC 5545 §3.8.1.9 PRIORITY to a todoTask ``importance``: "1-4 HIGH, 5 MEDIUM,
    6-9 LOW" for a three-level scale; 0 (undefined) and absent are ``normal``."""
    try:
        p = int(str(priority))
    except (TypeError, ValueError):
        return "normal"
    return "high" if 1 <= p <= 4 else "low" if 6 <= p <= 9 else "normal"


def todo_to_graph(body: bytes, *, default_zone: str = UTC_NAME) -> GraphTask:
    """Map one VTODO object resource to a todoTask (learn.microsoft.com/graph/api/todotasklist-post-tasks).

    title (SUMMARY), body (DESCRIPTION), status (NEEDS-ACTION, IN-PROCESS, COMPLETED →
    notStarted, inProgress, completed), importance (PRIORITY), startDateTime (DTSTART),
    dueDateTime (DUE, or DTSTART + DURATION), completedDateTime (COMPLETED), categories,
    reminderDateTime/isReminderOn (the first VALARM, as an instant) and recurrence (a
    ``patternedRecurrence``, as for events, anchored at DTSTART or else DUE). What To Do
    cannot hold is listed in ``lost``. BrokenObjectError without a VTODO or a UID.
    """
    todos, master = _components(body, "VTODO")
    if master.get("UID") is None:
        raise BrokenObjectError("no UID")
    lost: list[str] = []
    out: dict[str, Any] = {}
    title = str(master.get("SUMMARY", "")).strip()
    if not title:
        lost.append(f"no SUMMARY: To Do needs a title, {UNTITLED!r} given")
    out["title"] = title or UNTITLED
    if master.get("DESCRIPTION") is not None:
        out["body"] = {"contentType": "text", "content": str(master.get("DESCRIPTION"))}
    status = str(master.get("STATUS", "NEEDS-ACTION")).upper()
    out["status"] = TASK_STATUS.get(status, "notStarted")
    if status not in TASK_STATUS:
        lost.append(f"STATUS {status}: To Do has no such state, kept as not started")
    out["importance"] = importance(master.get("PRIORITY"))
    start_prop, due_prop = master.get("DTSTART"), master.get("DUE")
    start = start_prop.dt if start_prop is not None else None
    if start_prop is not None and start is not None:
        out["startDateTime"] = graph_datetime(start, start_prop.params.get("TZID"),
                                              default_zone, lost, "start")
    due, due_tz = None, None
    if due_prop is not None:
        due, due_tz = due_prop.dt, due_prop.params.get("TZID")
    elif master.get("DURATION") is not None and start is not None:
        due = start + master.get("DURATION").dt
        due_tz = start_prop.params.get("TZID")
    if due is not None:
        out["dueDateTime"] = graph_datetime(due, due_tz, default_zone, lost, "due")
    for what, value in (("start", start), ("due", due)):
        if isinstance(value, dt.datetime) and value.time() == dt.time():
            lost.append(f"{what} at midnight: To Do holds it as a date")
    if master.get("COMPLETED") is not None:
        out["completedDateTime"] = graph_datetime(master.get("COMPLETED").dt, None,
                                                  default_zone, lost, "completed")
    cats = [str(c) for p in _as_list(master.get("CATEGORIES")) for c in getattr(p, "cats", [p])]
    if cats:
        out["categories"] = cats
    _task_reminder(master, start, due, out, default_zone, lost)
    anchor = start if start is not None else due
    rrule = master.get("RRULE")
    if isinstance(rrule, list):
        lost.append(f"{len(rrule)} RRULEs: only the first is kept")
        rrule = rrule[0]
    if rrule is not None:
        if anchor is None:
            lost.append("RRULE without DTSTART or DUE: To Do repeats from a date: not repeated")
        else:
            anchor_json = out.get("startDateTime") or out["dueDateTime"]
            recurrence = _recurrence(rrule, master, anchor_json, lost, first=anchor)
            if recurrence is not None:
                out["recurrence"] = recurrence
    for name in ("RDATE", "EXDATE"):
        if master.get(name) is not None:
            lost.append(f"{name}: a To Do recurrence cannot add or skip single dates")
    changed = [t for t in todos if t is not master]
    if changed:
        lost.append(f"{len(changed)} changed occurrences: To Do keeps the series only")
    return GraphTask(str(master.get("UID")), out, lost)


def _task_reminder(todo: Any, start: Any, due: Any, out: dict[str, Any], default_zone: str,
                   lost: list[str]) -> None:
    """The first VALARM as ``reminderDateTime`` (To Do reminds at an instant)."""
    alarms = [a for a in todo.subcomponents if a.name == "VALARM"]
    if not alarms:
        return
    trigger = alarms[0].get("TRIGGER")
    value = getattr(trigger, "dt", None)
    at: Any = None
    if isinstance(value, dt.timedelta):
        related = str(trigger.params.get("RELATED", "START")).upper()
        anchor = due if related == "END" else start
        if anchor is None:
            anchor = due if start is None else start
        if anchor is not None:
            if not isinstance(anchor, dt.datetime):
                anchor = dt.datetime.combine(anchor, dt.time())
            at = anchor + value
    elif isinstance(value, dt.datetime):
        at = value
    if at is None:
        lost.append("an alarm To Do cannot place (no start or due to count from)")
        return
    out["isReminderOn"] = True
    out["reminderDateTime"] = graph_datetime(at, None, default_zone, [], "reminder")
    if len(alarms) > 1:
        lost.append(f"{len(alarms) - 1} more alarms: To Do keeps one reminder")


# -- contacts ----------------------------------------------------------------------------
def contact_to_graph(body: bytes) -> GraphContact:
    """Map one vCard (3.0 or 4.0) to a Graph contact; BrokenObjectError if unreadable."""
    import logging

    import vobject

    logging.disable(logging.ERROR)
    try:
        card = vobject.readOne(body.decode("utf-8-sig"))
    except Exception as e:
        raise BrokenObjectError(f"unreadable vCard: {e}") from None
    finally:
        logging.disable(logging.NOTSET)
    c = card.contents
    lost: list[str] = []
    uid = str(c["uid"][0].value) if c.get("uid") else None
    out: dict[str, Any] = {}
    if c.get("fn"):
        out["displayName"] = str(c["fn"][0].value)
    if c.get("n"):
        n = c["n"][0].value
        for key, val in (("givenName", n.given), ("surname", n.family),
                         ("middleName", n.additional), ("title", n.prefix),
                         ("generation", n.suffix)):
            text = " ".join(val) if isinstance(val, list) else str(val or "")
            if text.strip():
                out[key] = text.strip()
    emails = [str(e.value).strip() for e in c.get("email", []) if str(e.value).strip()]
    if emails:
        out["emailAddresses"] = [{"address": a, "name": out.get("displayName", a)}
                                 for a in emails[:MAX_EMAILS]]
    if len(emails) > MAX_EMAILS:
        lost.append(f"{len(emails) - MAX_EMAILS} e-mail addresses beyond {MAX_EMAILS}: "
                    f"{', '.join(emails[MAX_EMAILS:])}")
    _phones(c.get("tel", []), out, lost)
    _addresses(c.get("adr", []), out, lost)
    if c.get("org"):
        org = c["org"][0].value
        parts = org if isinstance(org, list) else [str(org)]
        if parts and parts[0]:
            out["companyName"] = parts[0]
        if len(parts) > 1 and parts[1]:
            out["department"] = parts[1]
    for src, dst in (("title", "jobTitle"), ("nickname", "nickName"), ("note", "personalNotes")):
        if c.get(src):
            out[dst] = str(c[src][0].value)
    if c.get("bday"):
        _birthday(str(c["bday"][0].value), out, lost)
    if c.get("categories"):
        out["categories"] = [str(x) for x in c["categories"][0].value]
    photo = _photo(c.get("photo", []), lost)
    return GraphContact(uid, out, lost, photo)


def _types(prop: Any) -> set[str]:
    return {str(t).lower() for t in prop.params.get("TYPE", [])}


def _phones(tels: list[Any], out: dict[str, Any], lost: list[str]) -> None:
    for t in tels:
        number, kinds = str(t.value).strip(), _types(t)
        if number.lower().startswith("tel:"):
            number = number[4:]
        if "cell" in kinds and "mobilePhone" not in out:
            out["mobilePhone"] = number
        elif "home" in kinds:
            out.setdefault("homePhones", []).append(number)
        elif "work" in kinds or not kinds & {"cell", "fax", "pager"}:
            out.setdefault("businessPhones", []).append(number)
        else:
            lost.append(f"phone {number} ({', '.join(sorted(kinds))}): no such Graph field")


def _addresses(adrs: list[Any], out: dict[str, Any], lost: list[str]) -> None:
    for a in adrs:
        v, kinds = a.value, _types(a)
        key = ("homeAddress" if "home" in kinds else "businessAddress" if "work" in kinds
               else "otherAddress")
        if key in out:
            lost.append(f"a second {key}: Graph keeps one of each")
            continue

        def text(x: Any) -> str:
            return " ".join(x) if isinstance(x, list) else str(x or "")

        out[key] = {k: text(val).strip() for k, val in (
            ("street", v.street), ("city", v.city), ("state", v.region),
            ("postalCode", v.code), ("countryOrRegion", v.country)) if text(val).strip()}


def _birthday(text: str, out: dict[str, Any], lost: list[str]) -> None:
    digits = text.replace("-", "")
    if text.startswith("--") or len(digits) < 8:
        lost.append(f"birthday {text} without a year: Graph needs a full date")
        return
    try:
        day = dt.date(int(digits[:4]), int(digits[4:6]), int(digits[6:8]))
    except ValueError:
        lost.append(f"birthday {text}: not a date")
        return
    out["birthday"] = f"{day.isoformat()}T00:00:00Z"


def _photo(photos: list[Any], lost: list[str]) -> bytes | None:
    import base64

    if not photos:
        return None
    value = photos[0].value
    if isinstance(value, bytes):
        return value
    text = str(value)
    if text.startswith("data:") and ";base64," in text:
        return base64.b64decode(text.split(";base64,", 1)[1])
    if text.startswith("data:"):  # vobject 0.9 splits a vCard 4 data URI at its comma
        lost.append("photo: a vCard 4 data URI, which the vCard reader cannot decode")
    else:
        lost.append("photo: given as a link, not as data: not fetched")
    return None
