"""The PIM store protocol: collections of iCalendar/vCard objects, each with href and ETag.

A source lists its collections and their items (href + ETag: cheap) and fetches bodies
in batches; a destination also finds or creates a collection and PUTs objects. Every
method may raise the errors of ``mailtrek.errors`` (translated at the store boundary);
a refused single item comes back as ``PutResult.error``, never as an exception.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

Kind = Literal["calendar", "contacts"]
KINDS: tuple[Kind, ...] = ("calendar", "contacts")


@dataclass(frozen=True, slots=True)
class Collection:
    """One calendar or address book. ``href`` is its path on the server, ending in '/'."""

    href: str
    kind: Kind
    name: str  # display name (the last path segment when the server has none)
    sync_token: str | None = None  # RFC 6578 DAV:sync-token, or CalendarServer getctag
    # RFC 4791 §5.2.3 supported-calendar-component-set ("VEVENT", "VTODO"...); empty:
    # not said (any component), or not a calendar
    components: tuple[str, ...] = ()

    @property
    def tasks_only(self) -> bool:
        """A calendar that holds tasks and no events (a task list, RFC 4791 §5.2.3)."""
        return "VTODO" in self.components and "VEVENT" not in self.components


def match_collection(existing: Iterable[Collection], known_href: str | None, name: str, *,
                     fold_case: bool) -> Collection | None:
    """The collection a destination already has for a source one: the one at
    ``known_href`` (from state), else the first of that ``name`` (``fold_case``: compared
    without case, as Exchange names folders); None when there is none."""
    existing = list(existing)
    for c in existing:
        if known_href is not None and c.href == known_href:
            return c
    want = name.casefold() if fold_case else name
    for c in existing:
        if (c.name.casefold() if fold_case else c.name) == want:
            return c
    return None


@dataclass(frozen=True, slots=True)
class ItemRef:
    """One object of a collection, as listed: where it is and its version."""

    href: str
    etag: str | None


@dataclass(frozen=True, slots=True)
class Item:
    """One fetched object: its body is the iCalendar or vCard text, as served."""

    href: str
    etag: str | None
    body: bytes


@dataclass(frozen=True, slots=True)
class PutResult:
    """The outcome of one PUT: the destination href and ETag, or why it was refused.

    ``existing`` names the resource already holding the UID (RFC 4791 §5.3.2.1
    no-uid-conflict, or a taken href under ``create_only``): adopt it instead. ``notes``
    say what the destination could not hold as it was, or kept another way (Graph: an
    RDATE, attendees not invited...), one line each, for the per-item report.
    """

    href: str | None = None
    etag: str | None = None
    error: str | None = None
    existing: str | None = None
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Changes:
    """What changed in a collection since a sync token (RFC 6578): new or changed objects
    with their ETags, and hrefs that are gone."""

    changed: list[ItemRef]
    removed: list[str]
    token: str | None


@runtime_checkable
class PimSource(Protocol):
    """Where contacts and calendars come from."""

    async def connect(self) -> None:
        """Authenticate and discover the account. Raises AuthenticationError etc."""

    async def close(self) -> None:
        """Release connections; idempotent."""

    async def collections(self, kinds: Sequence[Kind]) -> list[Collection]:
        """Return every collection of the given kinds."""
        ...

    async def list_items(self, collection: Collection) -> list[ItemRef]:
        """Return every object of ``collection`` (href and ETag, no bodies)."""
        ...

    async def fetch(self, collection: Collection, hrefs: Sequence[str]) -> list[Item]:
        """Return the bodies of ``hrefs`` (missing ones are left out)."""
        ...

    async def changes(self, collection: Collection, token: str) -> Changes | None:
        """Return what changed since ``token``, or None when the store cannot say (no
        RFC 6578 support, or the token expired): then the caller lists everything."""
        ...


@runtime_checkable
class PimDestination(PimSource, Protocol):
    """Where contacts and calendars go: a source that can also create and write."""

    async def ensure_collection(self, like: Collection,
                                known_href: str | None = None) -> Collection:
        """Return the collection matching ``like`` (``known_href`` first, then kind and
        name), creating it when there is none. Idempotent."""
        ...

    async def put(self, collection: Collection, uid: str, body: bytes, *,
                  href: str | None = None) -> PutResult:
        """Write one object: replace ``href`` when given, else create a new resource
        for ``uid`` (never overwriting one that exists: then ``existing`` is set)."""
        ...


def comparable(store: object, kind: Kind, body: bytes) -> bytes:
    """``body`` as ``store`` would hold it: its ``projection`` when it has one (a store that
    cannot hold every field, like Graph), else ``body`` itself. Comparisons (adoption,
    verify) read this instead of the source object, so what a destination cannot hold is
    reported once when copying, not as a difference every time."""
    project = getattr(store, "projection", None)
    return body if project is None else project(kind, body)
