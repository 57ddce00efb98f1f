"""Fill a DAV user's calendars and address books from ``.ics``/``.vcf`` files (tests, demos).

Each file becomes one resource per UID, as CalDAV/CardDAV require (RFC 4791 §4.1,
RFC 6352 §5.1): a file holding one object is PUT byte for byte (odd or broken content
reaches the server unchanged); a file holding several is split with ``vobject``. What
the server refuses is returned with its reason, file by file, never raised.
"""

from __future__ import annotations

import logging
import re
import ssl
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import httpx

__all__ = ["LoadResult", "Loader", "StoredItem"]

Kind = Literal["calendar", "contacts"]
MKCALENDAR = (
    '<?xml version="1.0" encoding="utf-8"?>'
    '<C:mkcalendar xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav">'
    "<D:set><D:prop><D:displayname>{name}</D:displayname></D:prop></D:set></C:mkcalendar>"
)
MKADDRESSBOOK = (
    '<?xml version="1.0" encoding="utf-8"?>'
    '<D:mkcol xmlns:D="DAV:" xmlns:A="urn:ietf:params:xml:ns:carddav">'
    "<D:set><D:prop><D:resourcetype><D:collection/><A:addressbook/></D:resourcetype>"
    "<D:displayname>{name}</D:displayname></D:prop></D:set></D:mkcol>"
)
CONTENT_TYPE = {"calendar": "text/calendar; charset=utf-8", "contacts": "text/vcard; charset=utf-8"}


@dataclass(frozen=True)
class StoredItem:
    """One resource the server accepted: which file it came from, its href and UID."""

    file: str
    href: str
    uid: str | None


@dataclass
class LoadResult:
    """What a load stored and what the server (or the splitter) refused, with reasons."""

    stored: list[StoredItem] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)[:120] or "item"


def split_objects(raw: bytes, kind: Kind) -> list[tuple[str | None, bytes]] | None:
    """Return ``[(uid, body)]`` when ``raw`` holds several objects; None to PUT it as is.

    Splits with vobject (the parser Radicale uses), falling back to icalendar for
    calendars vobject cannot write back; None when neither can: the server then judges
    the raw bytes.
    """
    logging.disable(logging.ERROR)  # vobject logs unknown TZIDs on the root logger
    try:
        return _split_vobject(raw, kind)
    except Exception:
        if kind == "contacts":
            return None
    finally:
        logging.disable(logging.NOTSET)
    try:
        return _split_icalendar(raw) or None
    except Exception:
        return None


def _split_vobject(raw: bytes, kind: Kind) -> list[tuple[str | None, bytes]] | None:
    import vobject

    tops = list(vobject.readComponents(raw.decode("utf-8-sig")))
    if kind == "contacts":
        if len(tops) <= 1:
            return None
        return [(_uid(card), card.serialize().encode("utf-8")) for card in tops]
    groups: dict[str | None, list[object]] = {}
    for cal in tops:
        for sub in cal.getChildren():
            if getattr(sub, "name", "") in ("VEVENT", "VTODO", "VJOURNAL"):
                groups.setdefault(_uid(sub), []).append(sub)
    if len(tops) == 1 and len(groups) <= 1:
        return None
    out = []
    for uid, subs in groups.items():
        cal = vobject.iCalendar()
        for tz in (c for top in tops for c in top.getChildren() if c.name == "VTIMEZONE"):
            cal.add(tz)
        for sub in subs:
            cal.add(sub)
        out.append((uid, cal.serialize().encode("utf-8")))
    return out


def _split_icalendar(raw: bytes) -> list[tuple[str | None, bytes]] | None:
    import icalendar

    tops = icalendar.Calendar.from_ical(raw, multiple=True)
    groups: dict[str | None, list[icalendar.cal.Component]] = {}
    for cal in tops:
        for sub in cal.subcomponents:
            if sub.name in ("VEVENT", "VTODO", "VJOURNAL"):
                uid = sub.get("UID")
                groups.setdefault(str(uid) if uid is not None else None, []).append(sub)
    if len(tops) == 1 and len(groups) <= 1:
        return None
    out = []
    for uid, subs in groups.items():
        cal = icalendar.Calendar()
        cal.add("VERSION", "2.0")
        cal.add("PRODID", "-//mailtrek//dav_load//EN")
        for top in tops:
            for tz in top.walk("VTIMEZONE"):
                cal.add_component(tz)
        for sub in subs:
            cal.add_component(sub)
        out.append((uid, cal.to_ical()))
    return out


def _uid(component: object) -> str | None:
    uid = getattr(component, "uid", None)
    return str(uid.value) if uid is not None else None


class Loader:
    """Make collections and PUT files for one DAV user (a thin httpx wrapper for tests)."""

    def __init__(self, base_url: str, user: str, password: str, *,
                 verify: ssl.SSLContext | bool = True) -> None:
        self.base_url = base_url.rstrip("/")
        self.user = user
        self.client = httpx.Client(auth=(user, password), verify=verify, timeout=30)
        self._names: dict[str, str] = {}

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> Loader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def make_collection(self, name: str, kind: Kind, *, slug: str | None = None) -> str:
        """Create a calendar or address book named ``name``; return its path (``/user/x/``)."""
        path = f"/{self.user}/{_slug(slug or name)}/"
        self._names[path] = name
        if kind == "calendar":
            r = self.client.request("MKCALENDAR", self.base_url + path,
                                    content=MKCALENDAR.format(name=_escape(name)).encode())
        else:
            r = self.client.request("MKCOL", self.base_url + path,
                                    content=MKADDRESSBOOK.format(name=_escape(name)).encode())
        if r.status_code not in (200, 201):
            raise RuntimeError(f"cannot create {path}: HTTP {r.status_code} {r.text[:200]}")
        return path

    def put(self, collection: str, name: str, body: bytes, kind: Kind) -> httpx.Response:
        """PUT one resource ``collection + name`` (creates or replaces)."""
        return self.client.put(self.base_url + collection + name, content=body,
                               headers={"Content-Type": CONTENT_TYPE[kind]})

    def delete(self, href: str) -> None:
        self.client.delete(self.base_url + href)

    def load(self, collection: str, files: Iterable[Path], kind: Kind, *,
             overflow: bool = False) -> LoadResult:
        """PUT every file's objects into ``collection``; collect what was stored and refused.

        A UID that the collection already holds (several files of a corpus may share one)
        is refused with 409 by CalDAV servers; with ``overflow`` such an object goes to
        the next collection ``NAME 2``, ``NAME 3``... instead, created as needed.
        """
        result = LoadResult()
        ext = ".ics" if kind == "calendar" else ".vcf"
        chain = [collection]
        for path in files:
            raw = path.read_bytes()
            parts = split_objects(raw, kind)
            pieces = [(None, raw)] if parts is None else parts
            for i, (uid, body) in enumerate(pieces):
                name = _slug(path.stem) + (f"-{i}" if len(pieces) > 1 else "") + ext
                for depth in range(len(pieces) + 8):
                    if depth == len(chain):
                        chain.append(self.make_collection(
                            f"{self.display_name(collection)} {depth + 1}", kind,
                            slug=f"{chain[0].rstrip('/').rsplit('/', 1)[-1]}-{depth + 1}"))
                    r = self.put(chain[depth], name, body, kind)
                    if r.status_code != 409 or not overflow:
                        break
                if r.status_code in (200, 201, 204):
                    result.stored.append(StoredItem(path.name, chain[depth] + name, uid))
                else:
                    result.refused.append((path.name, f"HTTP {r.status_code}"))
        return result

    def display_name(self, collection: str) -> str:
        """The collection's name as this loader made it (its last path segment)."""
        return self._names.get(collection, collection.rstrip("/").rsplit("/", 1)[-1])
