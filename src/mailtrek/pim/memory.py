"""An in-memory PIM store: the reference ``PimDestination`` and a test double.

It keeps whatever it is given, readable or not (as lax servers do), so tests can hand
the sync broken objects; it enforces one UID per collection on create like CalDAV
(RFC 4791 §5.3.2.1) by answering ``existing``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from mailtrek.pim.fields import BrokenObjectError, read_object
from mailtrek.pim.model import Changes, Collection, Item, ItemRef, Kind, PutResult


def _etag(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:16] + '"'


class MemoryPimStore:
    """Collections of objects in dicts: ``{collection href: {item href: body}}``."""

    def __init__(self) -> None:
        self.meta: dict[str, Collection] = {}
        self.data: dict[str, dict[str, bytes]] = {}

    def add_collection(self, href: str, kind: Kind, name: str) -> Collection:
        c = Collection(href, kind, name, sync_token=None)
        self.meta[href], self.data[href] = c, {}
        return c

    def add(self, collection: str, name: str, body: bytes) -> str:
        """Store ``body`` as is under ``collection + name``; return the href."""
        self.data[collection][collection + name] = body
        return collection + name

    async def connect(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def collections(self, kinds: Sequence[Kind]) -> list[Collection]:
        return [c for c in self.meta.values() if c.kind in kinds]

    async def list_items(self, collection: Collection) -> list[ItemRef]:
        return [ItemRef(h, _etag(b)) for h, b in self.data[collection.href].items()]

    async def fetch(self, collection: Collection, hrefs: Sequence[str]) -> list[Item]:
        items = self.data[collection.href]
        return [Item(h, _etag(items[h]), items[h]) for h in hrefs if h in items]

    async def changes(self, collection: Collection, token: str) -> Changes | None:
        return None  # no tokens: the sync lists everything (by ETag)

    async def ensure_collection(self, like: Collection,
                                known_href: str | None = None) -> Collection:
        if known_href in self.meta:
            return self.meta[known_href]
        for c in self.meta.values():
            if (c.kind, c.name) == (like.kind, like.name):
                return c
        href = like.href
        while href in self.meta:
            href = href.rstrip("/") + "-x/"
        return self.add_collection(href, like.kind, like.name)

    def _uid_at(self, collection: Collection, uid: str) -> str | None:
        for href, body in self.data[collection.href].items():
            try:
                if read_object(body, collection.kind).uid == uid:
                    return href
            except BrokenObjectError:
                continue
        return None

    async def put(self, collection: Collection, uid: str, body: bytes, *,
                  href: str | None = None) -> PutResult:
        if href is None:
            existing = self._uid_at(collection, uid)
            if existing is not None:
                return PutResult(existing=existing)
            href = collection.href + hashlib.sha256(uid.encode()).hexdigest()[:20]
        self.data[collection.href][href] = body
        return PutResult(href=href, etag=_etag(body))
