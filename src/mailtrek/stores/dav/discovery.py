"""Find a DAV account's calendars and address books the standard way (RFC 6764 §6).

From the start path (or ``/.well-known/caldav`` and ``/.well-known/carddav``, then ``/``):
``DAV:current-user-principal`` (RFC 5397), then the principal's ``calendar-home-set``
(RFC 4791 §6.2.1) and ``addressbook-home-set`` (RFC 6352 §7.1.1), then every collection
in those homes. A start path that is itself a calendar or address book is used alone.
DNS SRV lookups (``_caldavs._tcp``) are not done yet: give the server's host.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

from mailtrek.errors import ProtocolError
from mailtrek.pim.model import Collection, Kind
from mailtrek.stores.dav.client import DavClient
from mailtrek.stores.dav.xml import (
    CALDAV,
    CARDDAV,
    CS,
    DAV,
    Response,
    parse_multistatus,
    propfind,
    tag,
)

REDIRECTS = (301, 302, 303, 307, 308)
COLLECTION_PROPS = propfind("D:resourcetype", "D:displayname", "D:sync-token", "CS:getctag")


@dataclass(slots=True)
class Homes:
    """Where the account's collections live."""

    principal: str
    calendar: list[str] = field(default_factory=list)
    contacts: list[str] = field(default_factory=list)
    direct: list[Collection] = field(default_factory=list)  # the start path was a collection


def to_path(href: str) -> str:
    """A server path from an href that may be a full URL."""
    return urlsplit(href).path if "://" in href else href


def as_dir(path: str) -> str:
    return path if path.endswith("/") else path + "/"


def collection_of(r: Response) -> Collection | None:
    """A Collection from a PROPFIND response, or None when it is not a calendar/address book."""
    kind: Kind | None = ("calendar" if r.has_type(tag(CALDAV, "calendar"))
                         else "contacts" if r.has_type(tag(CARDDAV, "addressbook")) else None)
    if kind is None:
        return None
    href = as_dir(to_path(r.href))
    name = r.text(tag(DAV, "displayname")) or href.rstrip("/").rsplit("/", 1)[-1]
    token = r.text(tag(DAV, "sync-token")) or r.text(tag(CS, "getctag"))
    return Collection(href, kind, name, token)


async def _principal_at(client: DavClient, path: str) -> tuple[str, list[Response]] | None:
    """PROPFIND ``path`` (following same-origin redirects); None when it is not there."""
    body = propfind("D:current-user-principal", "D:resourcetype", "D:displayname",
                    "D:sync-token", "CS:getctag")
    for _ in range(5):
        resp = await client.request("PROPFIND", path, body=body, headers={"Depth": "0"},
                                    ok=(207, 404, 405, *REDIRECTS))
        if resp.status_code in REDIRECTS:
            location = resp.headers.get("Location", "")
            target = urlsplit(location)
            if target.netloc and f"{target.scheme}://{target.netloc}" != client.address.origin:
                raise ProtocolError(
                    f"{path} redirects to another server ({target.scheme}://{target.netloc})",
                    hint="use that server's address in the dav+https:// URL")
            path = target.path or "/"
            continue
        if resp.status_code != 207:
            return None
        found = parse_multistatus(resp.content)
        return path, found
    raise ProtocolError(f"too many redirects from {path}")


async def discover(client: DavClient, start: str) -> Homes:
    """Return the principal and homes of the logged-in user (see the module doc)."""
    candidates = [start] if start != "/" else ["/.well-known/caldav", "/.well-known/carddav", "/"]
    principal: str | None = None
    for path in candidates:
        hit = await _principal_at(client, path)
        if hit is None:
            continue
        where, found = hit
        if found:
            direct = collection_of(found[0])
            if direct is not None:
                return Homes(principal=where, direct=[direct])
            hrefs = found[0].hrefs(tag(DAV, "current-user-principal"))
            if hrefs:
                principal = as_dir(to_path(hrefs[0]))
                break
    if principal is None:
        raise ProtocolError(
            f"no CalDAV/CardDAV account found at {client.address.origin}{start}",
            hint="give the path of the DAV service (e.g. /remote.php/dav/ or /dav/) in the URL")
    found = await client.propfind(principal, propfind("C:calendar-home-set",
                                                      "A:addressbook-home-set"), "0")
    homes = Homes(principal)
    for r in found:
        homes.calendar += [as_dir(to_path(h)) for h in r.hrefs(tag(CALDAV, "calendar-home-set"))]
        homes.contacts += [as_dir(to_path(h))
                           for h in r.hrefs(tag(CARDDAV, "addressbook-home-set"))]
    return homes


async def list_collections(client: DavClient, homes: Homes) -> list[Collection]:
    """Every calendar and address book in the homes (or the direct one), once each."""
    if homes.direct:
        return list(homes.direct)
    seen: dict[str, Collection] = {}
    for home in dict.fromkeys(homes.calendar + homes.contacts or [homes.principal]):
        for r in await client.propfind(home, COLLECTION_PROPS, "1"):
            c = collection_of(r)
            if c is not None and c.href != home:
                seen.setdefault(c.href, c)
    return sorted(seen.values(), key=lambda c: (c.kind, c.name, c.href))
