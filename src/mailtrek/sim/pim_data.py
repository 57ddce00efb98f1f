"""The simulator's calendars, events, contact folders and contacts, and the invitation outbox.

Kept in memory (a restart forgets them, unlike mail). Events follow the Graph ``event``
resource (learn.microsoft.com/graph/api/resources/event): a series master holds a
``patternedRecurrence``; its occurrences are computed from the pattern
(learn.microsoft.com/graph/api/resources/patternedrecurrence) and only those that were
changed (``exception``) or deleted (``cancelledOccurrences``) are stored.

The outbox: "When an event is sent, the server sends invitations to all the attendees"
(learn.microsoft.com/graph/api/user-post-events). Every event created or updated in the
organizer's calendar with attendees records one invitation per attendee here, so a test
can assert that a migration sent none.
"""

from __future__ import annotations

import copy
import datetime as dt
import threading
import zoneinfo
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from mailtrek.sim.store import new_id

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
INDEXES = {"first": 1, "second": 2, "third": 3, "fourth": 4, "last": -1}
MAX_OCCURRENCES = 2000  # how far a series without end is expanded (instances queries)


@dataclass
class Invitation:
    """One meeting request (or update) Exchange would have sent."""

    mailbox: str
    event_id: str
    subject: str
    recipient: str
    kind: str  # "request" (create) or "update" (attendees changed)


@dataclass
class PimFolder:
    """A calendar or a contact folder."""

    id: str
    mailbox: str
    kind: str  # "calendar" | "contacts" | "todo"
    name: str
    is_default: bool = False
    ext: dict[str, str] = field(default_factory=dict)


@dataclass
class PimItem:
    """An event (series master or single) or a contact: its JSON properties."""

    id: str
    mailbox: str
    folder_id: str
    kind: str  # "event" | "contact" | "task"
    props: dict[str, Any]
    ext: dict[str, str] = field(default_factory=dict)  # singleValueExtendedProperties
    version: int = 1
    # series only: occurrence date (ISO) -> changed properties / cancelled
    exceptions: dict[str, dict[str, Any]] = field(default_factory=dict)
    cancelled: set[str] = field(default_factory=set)
    attachments: list[dict[str, Any]] = field(default_factory=list)  # events' files


class PimData:
    """Every mailbox's calendars and contacts; thread-safe (tests read while routes write)."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.folders: dict[str, PimFolder] = {}
        self.items: dict[str, PimItem] = {}
        self.outbox: list[Invitation] = []

    # -- folders ----------------------------------------------------------------------
    def ensure_defaults(self, mailbox: str) -> None:
        """Every mailbox has a default calendar "Calendar" (learn.microsoft.com/graph/api/user-list-calendars)
        and a default To Do list "Tasks" (learn.microsoft.com/graph/api/resources/todotasklist:
        ``wellknownListName`` ``defaultList``)."""
        with self.lock:
            for kind, name in (("calendar", "Calendar"), ("todo", "Tasks")):
                if not any(f.mailbox == mailbox and f.is_default and f.kind == kind
                           for f in self.folders.values()):
                    f = PimFolder(new_id(kind), mailbox, kind, name, True)
                    self.folders[f.id] = f

    def list_folders(self, mailbox: str, kind: str) -> list[PimFolder]:
        self.ensure_defaults(mailbox)
        with self.lock:
            return [f for f in self.folders.values() if f.mailbox == mailbox and f.kind == kind]

    def folder(self, mailbox: str, key: str, kind: str) -> PimFolder | None:
        with self.lock:
            f = self.folders.get(key)
            return f if f is not None and f.mailbox == mailbox and f.kind == kind else None

    def create_folder(self, mailbox: str, kind: str, name: str) -> PimFolder | None:
        """A new folder, or None when one of that name exists (case-insensitive)."""
        with self.lock:
            if any(f.name.casefold() == name.casefold() for f in self.list_folders(mailbox, kind)):
                return None
            f = PimFolder(new_id(kind), mailbox, kind, name)
            self.folders[f.id] = f
            return f

    # -- items ------------------------------------------------------------------------
    def add_item(self, mailbox: str, folder_id: str, kind: str, props: dict[str, Any],
                 ext: dict[str, str]) -> PimItem:
        with self.lock:
            item = PimItem(new_id(kind), mailbox, folder_id, kind, props, ext)
            self.items[item.id] = item
            return item

    def item(self, mailbox: str, key: str) -> PimItem | None:
        with self.lock:
            found = self.items.get(key)
            return found if found is not None and found.mailbox == mailbox else None

    def list_items(self, mailbox: str, folder_id: str, kind: str) -> list[PimItem]:
        with self.lock:
            return [i for i in self.items.values()
                    if i.mailbox == mailbox and i.folder_id == folder_id and i.kind == kind]

    def events(self, mailbox: str) -> list[PimItem]:
        """Every event of a mailbox (tests)."""
        with self.lock:
            return [copy.deepcopy(i) for i in self.items.values()
                    if i.mailbox == mailbox and i.kind == "event"]

    def contacts(self, mailbox: str) -> list[PimItem]:
        """Every contact of a mailbox (tests)."""
        with self.lock:
            return [copy.deepcopy(i) for i in self.items.values()
                    if i.mailbox == mailbox and i.kind == "contact"]

    def tasks(self, mailbox: str) -> list[PimItem]:
        """Every To Do task of a mailbox (tests)."""
        with self.lock:
            return [copy.deepcopy(i) for i in self.items.values()
                    if i.mailbox == mailbox and i.kind == "task"]

    def send_invitations(self, item: PimItem, recipients: list[str], kind: str) -> None:
        with self.lock:
            self.outbox += [Invitation(item.mailbox, item.id, str(item.props.get("subject", "")),
                                       r, kind) for r in recipients]


# -- recurrence ---------------------------------------------------------------------------
@cache
def zone(name: str | None) -> dt.tzinfo:
    """A tzinfo for a Graph time zone name (Windows or IANA); UTC when unknown."""
    if not name or name.upper() in ("UTC", "Z"):
        return dt.UTC
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        pass
    from icalendar.timezone.windows_to_olson import WINDOWS_TO_OLSON

    olson = WINDOWS_TO_OLSON.get(name)
    return zoneinfo.ZoneInfo(olson) if olson else dt.UTC


def local_start(props: dict[str, Any]) -> dt.datetime:
    """The event's start as an aware datetime in its own zone."""
    s = props["start"]
    return dt.datetime.fromisoformat(s["dateTime"][:19]).replace(tzinfo=zone(s.get("timeZone")))


def occurrence_dates(props: dict[str, Any]) -> list[dt.date]:
    """The dates of a series' occurrences, from its ``patternedRecurrence``.

    Expanded as the RFC 5545 rule of the same meaning (dateutil), which is also how
    mailtrek reads it back; at most ``MAX_OCCURRENCES``.
    """
    from dateutil import rrule

    rec = props.get("recurrence") or {}
    pattern, rng = rec.get("pattern") or {}, rec.get("range") or {}
    first = local_start(props).replace(tzinfo=None)
    kinds = {"daily": rrule.DAILY, "weekly": rrule.WEEKLY, "absoluteMonthly": rrule.MONTHLY,
             "relativeMonthly": rrule.MONTHLY, "absoluteYearly": rrule.YEARLY,
             "relativeYearly": rrule.YEARLY}
    ptype = pattern.get("type", "daily")
    days = [getattr(rrule, d[:2].upper()) for d in pattern.get("daysOfWeek") or []]
    args: dict[str, Any] = {"interval": int(pattern.get("interval") or 1), "dtstart": first}
    if ptype == "weekly":
        args["byweekday"] = days or None
        args["wkst"] = WEEKDAYS.index(str(pattern.get("firstDayOfWeek", "sunday")).lower())
    elif ptype.startswith("absolute"):
        args["bymonthday"] = int(pattern.get("dayOfMonth") or first.day)
    elif ptype.startswith("relative"):
        args["byweekday"] = days
        args["bysetpos"] = INDEXES.get(str(pattern.get("index", "first")).lower(), 1)
    if ptype.endswith("Yearly"):
        args["bymonth"] = int(pattern.get("month") or first.month)
    if rng.get("type") == "numbered":
        args["count"] = int(rng.get("numberOfOccurrences") or 1)
    elif rng.get("type") == "endDate" and rng.get("endDate"):
        args["until"] = dt.datetime.combine(dt.date.fromisoformat(rng["endDate"]),
                                            dt.time(23, 59, 59))
    out: list[dt.date] = []
    for when in rrule.rrule(kinds.get(ptype, rrule.DAILY), **args):
        out.append(when.date())
        if len(out) >= MAX_OCCURRENCES:
            break
    return out
