"""Find a DAV account's calendars and address books the standard way (RFC 6764 §6).

When the address names no path and the default port, DNS comes first (:func:`locate`,
RFC 6764 §3/§6: ``_caldavs._tcp``/``_carddavs._tcp`` SRV and TXT ``path=``, see ``srv``);
without such records everything goes on at the address's own host as before.
From the start path (or ``/.well-known/caldav`` and ``/.well-known/carddav``, then ``/``):
``DAV:current-user-principal`` (RFC 5397), then the principal's ``calendar-home-set``
(RFC 4791 §6.2.1) and ``addressbook-home-set`` (RFC 6352 §7.1.1), then every collection
in those homes. A start path that is itself a calendar or address book is used alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from mailtrek.errors import ProtocolError
from mailtrek.pim.model import Collection, Kind
from mailtrek.stores.dav.address import DavAddress
from mailtrek.stores.dav.client import DavClient
from mailtrek.stores.dav.srv import DnsSettings, lookup
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
COLLECTION_PROPS = propfind("D:resourcetype", "D:displayname", "D:sync-token", "CS:getctag",
                            "C:supported-calendar-component-set")


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
    comps = r.props.get(tag(CALDAV, "supported-calendar-component-set"))
    components = tuple(str(c.get("name", "")).upper() for c in comps.iter(tag(CALDAV, "comp"))
                       ) if comps is not None and kind == "calendar" else ()
    return Collection(href, kind, name, token, components)


async def locate(address: DavAddress, kinds: Sequence[Kind],
                 dns: DnsSettings) -> tuple[DavAddress, list[str]]:
    """Return where to connect for ``address`` and notes on the DNS look (RFC 6764 §6).

    Only an address without a path and on the default port asks DNS (a path or port the
    admin wrote wins); the best SRV target (TLS first) with its TXT ``path=`` replaces
    host, port and path. No SRV record: the address as it was.
    """
    default = 443 if address.scheme == "https" else 80
    if address.path != "/" or address.port != default:
        return address, []
    targets, notes = await lookup(address.host, kinds, allow_plain=address.scheme == "http",
                                  settings=dns)
    if not targets:
        return address, notes
    t = targets[0]
    return DavAddress(t.scheme, address.user, t.host, t.port, as_dir(t.path or "/")), notes


async def _principal_at(client: DavClient, path: str) -> tuple[str, list[Response]] | None:
    """PROPFIND ``path`` (following same-origin redirects); None when it is not there."""
    body = propfind("D:current-user-principal", "D:resourcetype", "D:displayname",
                    "D:sync-token", "CS:getctag", "C:supported-calendar-component-set")
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
