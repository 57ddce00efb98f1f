"""``DavStore``: one CalDAV/CardDAV account as a PIM source and destination.

Listing is a Depth-1 PROPFIND of ETags (cheap, no bodies); bodies come in batches through
calendar-multiget / addressbook-multiget REPORTs. New objects are PUT with
``If-None-Match: *`` at a name derived from the UID, so nothing is ever overwritten by
accident and a lost state finds its earlier copies (412, or the server's
``no-uid-conflict`` href).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Awaitable, Callable, Sequence
from urllib.parse import quote

from mailtrek.errors import StoreError, UsageError
from mailtrek.pim.model import (
    KINDS,
    Changes,
    Collection,
    Item,
    ItemRef,
    Kind,
    PutResult,
    match_collection,
)
from mailtrek.stores.dav.address import DavAddress
from mailtrek.stores.dav.client import DavClient
from mailtrek.stores.dav.discovery import (
    COLLECTION_PROPS,
    Homes,
    as_dir,
    collection_of,
    discover,
    list_collections,
    locate,
    to_path,
)
from mailtrek.stores.dav.presets import preset_of_address
from mailtrek.stores.dav.srv import DnsSettings
from mailtrek.stores.dav.xml import (
    CALDAV,
    CARDDAV,
    DAV,
    conflict_href,
    mkaddressbook,
    mkcalendar,
    multiget,
    parse_multistatus,
    propfind,
    sync_collection,
    sync_token_of,
    tag,
)

MULTIGET_BATCH = 50
CONTENT_TYPE = {"calendar": "text/calendar; charset=utf-8",
                "contacts": "text/vcard; charset=utf-8"}
EXTENSION = {"calendar": ".ics", "contacts": ".vcf"}
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,99}")
REFUSED = (400, 403, 409, 412, 413, 415, 422, 507)


def wire(path: str) -> str:
    """Percent-encode a path for the request line and for hrefs sent in XML."""
    return quote(path, safe="/@:+,;=~!$&'()*")


def item_name(uid: str, kind: Kind) -> str:
    """The resource name for a new object: the UID when it is a tame name, else its hash."""
    stem = uid if SAFE_NAME.fullmatch(uid) else hashlib.sha256(uid.encode()).hexdigest()[:40]
    return stem + EXTENSION[kind]


class DavStore:
    """A CalDAV/CardDAV account (``PimDestination``); call ``connect()`` first.

    ``dns`` decides the SRV look of :func:`locate` (None: the system's resolver; a store
    given its own ``client`` never moves); ``kinds`` says which services to look up.
    An address whose host is a preset name (``dav+https://alice@icloud/``) goes to that
    provider's service for ``kinds`` (UsageError when they live on two hosts: one store
    per kind then). ``token`` logs in with OAuth Bearer tokens instead of the password.
    """

    def __init__(self, address: DavAddress, password: str, *, ca_file: str | None = None,
                 connections: int = 4, client: DavClient | None = None,
                 dns: DnsSettings | None = None, kinds: Sequence[Kind] = KINDS,
                 token: Callable[[], Awaitable[str]] | None = None) -> None:
        self.kinds = tuple(kinds)
        preset = preset_of_address(address)
        if preset is not None:
            if preset.origins(self.kinds):
                raise UsageError(f"{preset.title} keeps calendars and contacts on two servers",
                                 hint="copy them one at a time: --items calendars, then "
                                      "--items contacts")
            address = preset.address(address.user, self.kinds[0])
        self.address = address
        self.dns = dns or DnsSettings(enabled=client is None and preset is None)
        self.notes: list[str] = []  # how the server was found (DNS answers)

        def make(a: DavAddress) -> DavClient:  # the password stays in this closure
            return DavClient(a, password, ca_file=ca_file, connections=connections,
                             token=token)

        self._make_client = make
        self.client = client or make(address)
        self.homes: Homes | None = None
        self._collections: list[Collection] | None = None

    async def connect(self) -> None:
        """Find the server (DNS SRV when the address has no path), log in and discover
        the homes (RFC 6764); AuthenticationError etc. on failure."""
        if self.dns.enabled:
            found, self.notes = await locate(self.address, self.kinds, self.dns)
            if found != self.address:
                await self.client.close()
                self.address, self.client = found, self._make_client(found)
        self.homes = await discover(self.client, self.address.path)

    async def close(self) -> None:
        await self.client.close()

    def _homes(self) -> Homes:
        if self.homes is None:
            raise StoreError("DavStore used before connect()")
        return self.homes

    async def collections(self, kinds: Sequence[Kind]) -> list[Collection]:
        if self._collections is None:
            self._collections = await list_collections(self.client, self._homes())
        return [c for c in self._collections if c.kind in kinds]

    async def list_items(self, collection: Collection) -> list[ItemRef]:
        found = await self.client.propfind(wire(collection.href), propfind(
            "D:getetag", "D:resourcetype"), "1")
        out = []
        for r in found:
            path = to_path(r.href)
            if as_dir(path) == collection.href or r.has_type(tag(DAV, "collection")):
                continue
            out.append(ItemRef(path, r.text(tag(DAV, "getetag"))))
        return out

    async def changes(self, collection: Collection, token: str) -> Changes | None:
        """RFC 6578 sync-collection since ``token``; None when refused (expired token,
        no support): the caller then lists by ETag."""
        resp = await self.client.request(
            "REPORT", wire(collection.href), body=sync_collection(token),
            headers={"Depth": "0", "Content-Type": "application/xml; charset=utf-8"},
            ok=(207, 400, 403, 404, 405, 409, 415, 501))
        if resp.status_code != 207:
            return None
        changed, removed = [], []
        for r in parse_multistatus(resp.content):
            path = to_path(r.href)
            if as_dir(path) == collection.href:
                continue
            if r.status == 404:
                removed.append(path)
            else:
                changed.append(ItemRef(path, r.text(tag(DAV, "getetag"))))
        return Changes(changed, removed, sync_token_of(resp.content))

    async def fetch(self, collection: Collection, hrefs: Sequence[str]) -> list[Item]:
        data = (tag(CALDAV, "calendar-data") if collection.kind == "calendar"
                else tag(CARDDAV, "address-data"))
        out = []
        for i in range(0, len(hrefs), MULTIGET_BATCH):
            batch = [wire(h) for h in hrefs[i:i + MULTIGET_BATCH]]
            for r in await self.client.report(wire(collection.href),
                                              multiget(collection.kind, batch)):
                text = r.props.get(data)
                if text is not None and text.text:
                    out.append(Item(to_path(r.href), r.text(tag(DAV, "getetag")),
                                    text.text.encode("utf-8")))
        return out

    async def ensure_collection(self, like: Collection,
                                known_href: str | None = None) -> Collection:
        found = match_collection(await self.collections([like.kind]), known_href, like.name,
                                 fold_case=False)
        return found if found is not None else await self._create(like)

    async def _create(self, like: Collection) -> Collection:
        homes = self._homes()
        home = (homes.calendar if like.kind == "calendar" else homes.contacts) or [
            homes.principal]
        taken = {c.href for c in self._collections or ()}
        slug = like.href.rstrip("/").rsplit("/", 1)[-1] or like.kind
        href = as_dir(home[0] + slug)
        n = 1
        while href in taken:
            n += 1
            href = as_dir(f"{home[0]}{slug}-{n}")
        body = mkcalendar(like.name) if like.kind == "calendar" else mkaddressbook(like.name)
        method = "MKCALENDAR" if like.kind == "calendar" else "MKCOL"
        await self.client.request(method, wire(href), body=body, headers={
            "Content-Type": "application/xml; charset=utf-8"}, ok=(200, 201))
        found = await self.client.propfind(wire(href), COLLECTION_PROPS, "0")
        made = next((c for c in map(collection_of, found) if c is not None), None)
        if made is None:
            raise StoreError(f"the DAV server did not create {href} as a {like.kind} collection")
        self._collections = [*(self._collections or []), made]
        return made

    async def put(self, collection: Collection, uid: str, body: bytes, *,
                  href: str | None = None) -> PutResult:
        create = href is None
        target = href or collection.href + item_name(uid, collection.kind)
        headers = {"Content-Type": CONTENT_TYPE[collection.kind]}
        if create:
            headers["If-None-Match"] = "*"
        resp = await self.client.request("PUT", wire(target), body=body, headers=headers,
                                         ok=(200, 201, 204, *REFUSED))
        status = resp.status_code
        if status < 300:
            return PutResult(href=target, etag=resp.headers.get("ETag"))
        if status == 412 and create:
            return PutResult(existing=target)
        other = conflict_href(resp.content) if status in (403, 409) else None
        if other is not None:
            return PutResult(existing=to_path(other))
        return PutResult(error=f"the destination refused it (HTTP {status})")
