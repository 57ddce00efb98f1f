"""WebDAV/CalDAV/CardDAV request bodies and multistatus answers (RFC 4918 §14.16).

Parsing uses the standard library's ElementTree (expat never resolves external entities);
what is read here is element names and text, no calendar or contact syntax.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import unquote
from xml.sax.saxutils import escape

from mailtrek.errors import ProtocolError

DAV = "DAV:"
CALDAV = "urn:ietf:params:xml:ns:caldav"
CARDDAV = "urn:ietf:params:xml:ns:carddav"
CS = "http://calendarserver.org/ns/"
NS = f'xmlns:D="{DAV}" xmlns:C="{CALDAV}" xmlns:A="{CARDDAV}" xmlns:CS="{CS}"'
HEAD = '<?xml version="1.0" encoding="utf-8"?>'


def tag(ns: str, name: str) -> str:
    """ElementTree's ``{namespace}name``."""
    return f"{{{ns}}}{name}"


def propfind(*props: str) -> bytes:
    """A PROPFIND body asking for ``props`` (prefixed names such as ``D:getetag``)."""
    inner = "".join(f"<{p}/>" for p in props)
    return f"{HEAD}<D:propfind {NS}><D:prop>{inner}</D:prop></D:propfind>".encode()


def multiget(kind: str, hrefs: Iterable[str]) -> bytes:
    """A calendar-multiget (RFC 4791 §7.9) or addressbook-multiget (RFC 6352 §8.7) body."""
    root, data = (("C:calendar-multiget", "C:calendar-data") if kind == "calendar"
                  else ("A:addressbook-multiget", "A:address-data"))
    refs = "".join(f"<D:href>{escape(h)}</D:href>" for h in hrefs)
    return (f"{HEAD}<{root} {NS}><D:prop><D:getetag/><{data}/></D:prop>{refs}</{root}>"
            ).encode()


def sync_collection(token: str) -> bytes:
    """A sync-collection REPORT body (RFC 6578 §3.2) asking what changed since ``token``."""
    return (f"{HEAD}<D:sync-collection {NS}><D:sync-token>{escape(token)}</D:sync-token>"
            "<D:sync-level>1</D:sync-level><D:prop><D:getetag/></D:prop>"
            "</D:sync-collection>").encode()


def sync_token_of(body: bytes) -> str | None:
    """The new ``DAV:sync-token`` at the end of a sync-collection answer."""
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        return None
    token = root.findtext(tag(DAV, "sync-token"))
    return token.strip() if token else None


def mkcalendar(name: str) -> bytes:
    """An MKCALENDAR body (RFC 4791 §5.3.1) setting the display name."""
    return (f"{HEAD}<C:mkcalendar {NS}><D:set><D:prop><D:displayname>{escape(name)}"
            "</D:displayname></D:prop></D:set></C:mkcalendar>").encode()


def mkaddressbook(name: str) -> bytes:
    """An extended MKCOL body (RFC 5689, RFC 6352 §6.3.1) making an address book."""
    return (f"{HEAD}<D:mkcol {NS}><D:set><D:prop><D:resourcetype><D:collection/>"
            f"<A:addressbook/></D:resourcetype><D:displayname>{escape(name)}</D:displayname>"
            "</D:prop></D:set></D:mkcol>").encode()


@dataclass(slots=True)
class Response:
    """One ``D:response``: its href, its status (for gone members), and the found props."""

    href: str
    status: int | None = None
    props: dict[str, ET.Element] = field(default_factory=dict)

    def text(self, name: str) -> str | None:
        el = self.props.get(name)
        return el.text.strip() if el is not None and el.text is not None else None

    def hrefs(self, name: str) -> list[str]:
        """The ``D:href`` values inside property ``name`` (home sets, principals)."""
        el = self.props.get(name)
        if el is None:
            return []
        return [unquote(h.text.strip()) for h in el.iter(tag(DAV, "href")) if h.text]

    def has_type(self, name: str) -> bool:
        el = self.props.get(tag(DAV, "resourcetype"))
        return el is not None and el.find(name) is not None


def _status_code(text: str | None) -> int | None:
    try:
        return int((text or "").split()[1])
    except (IndexError, ValueError):
        return None


def parse_multistatus(body: bytes) -> list[Response]:
    """Read a 207 answer; ProtocolError when it is not a multistatus document."""
    try:
        root = ET.fromstring(body)
    except ET.ParseError as e:
        raise ProtocolError(f"the DAV server sent unreadable XML: {e}") from None
    if root.tag != tag(DAV, "multistatus"):
        raise ProtocolError(f"the DAV server sent {root.tag} instead of a multistatus")
    out = []
    for resp in root.findall(tag(DAV, "response")):
        href_el = resp.find(tag(DAV, "href"))
        if href_el is None or not href_el.text:
            continue
        r = Response(unquote(href_el.text.strip()),
                     _status_code(resp.findtext(tag(DAV, "status"))))
        for ps in resp.findall(tag(DAV, "propstat")):
            if _status_code(ps.findtext(tag(DAV, "status"))) != 200:
                continue
            prop = ps.find(tag(DAV, "prop"))
            for el in prop if prop is not None else ():
                r.props[el.tag] = el
        out.append(r)
    return out


def conflict_href(body: bytes) -> str | None:
    """The href named by a ``no-uid-conflict`` precondition error (RFC 4791 §5.3.2.1)."""
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        return None
    for ns in (CALDAV, CARDDAV):
        el = root.find(tag(ns, "no-uid-conflict"))
        if el is not None:
            href = el.findtext(tag(DAV, "href"))
            return unquote(href.strip()) if href else None
    return None
