"""Copy contacts and calendars exactly once, through the PIM store protocol only.

Per source collection:
1. Find or create its twin on the destination (state's href first, then kind and name).
2. If the last run left it complete and its sync token (RFC 6578 ``DAV:sync-token`` or
   ``getctag``) is the same, nothing changed: count its recorded objects as skipped.
3. Else ask what changed since that token (sync-collection), applied to state's listing;
   or, when the source cannot say, list every href and ETag. Objects whose (href, ETag) state already holds are skipped
   without fetching; the others are fetched in batches and read (UID, fields).
4. An object that cannot be read, lacks a UID or repeats one is reported with the
   reason; the rest goes on.
5. A UID state knows is written over its earlier copy (the source changed). When state
   knows nothing of the collection (first run, lost state) the destination collection
   is read once and objects it already holds by UID are adopted, and rewritten only if
   their fields differ from the source. Any other new UID is created with create-only
   semantics; a destination that already holds it (412, no-uid-conflict) adopts it too.
6. Copy first, record second: a row is written only after the destination confirmed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from mailtrek.errors import MailtrekError, StoreError
from mailtrek.pim.fields import BrokenObjectError, ObjectFields, differences, read_object
from mailtrek.pim.model import (
    Collection,
    Item,
    ItemRef,
    Kind,
    PimDestination,
    PimSource,
    comparable,
)
from mailtrek.pim.report import CollectionReport, PimReport
from mailtrek.state.pim import CollectionState, ItemState, PimState


async def copy_pim(src: PimSource, dst: PimDestination, state: PimState,
                   kinds: Sequence[Kind], *, concurrency: int = 4) -> PimReport:
    """Copy every collection of ``kinds``; return the report. Stores must be connected.

    Idempotent: a second run copies nothing. Errors that stop one collection (the
    destination refused to create it, the source failed to list it) are reported in
    ``errors`` and the other collections go on; authentication and connection errors
    propagate.
    """
    report = PimReport()
    started = time.monotonic()
    for collection in await src.collections(kinds):
        entry = CollectionReport(collection.kind, collection.name, collection.href)
        report.collections.append(entry)
        try:
            await _copy_collection(src, dst, state, collection, entry, concurrency)
        except StoreError as e:  # this collection only: the next one may work
            report.errors.append(f"{collection.kind} {collection.name!r}: {e}")
        finally:
            state.flush()  # what was confirmed so far, even when the run stops here
    report.elapsed = time.monotonic() - started
    return report


async def _copy_collection(src: PimSource, dst: PimDestination, state: PimState,
                           sc: Collection, entry: CollectionReport, concurrency: int) -> None:
    cs = state.collection(sc.href)
    dc = await dst.ensure_collection(sc, cs.dest_collection if cs else None)
    entry.destination = dc.href
    known = state.items(sc.href)
    if (cs is not None and cs.complete and cs.sync_token and cs.sync_token == sc.sync_token
            and cs.dest_collection == dc.href):
        entry.selected = entry.skipped = len(known)
        entry.unchanged = True
        return
    refs = await _listing(src, sc, cs, dc, known, entry)
    done = {(i.src_href, i.src_etag) for i in known.values() if i.src_etag}
    todo = [r.href for r in refs if (r.href, r.etag) not in done]
    entry.selected = len(refs)
    entry.skipped = len(refs) - len(todo)
    items = await src.fetch(sc, todo) if todo else []
    fetched = {i.href for i in items}
    for href in todo:
        if href not in fetched:
            entry.fail(href, "the source listed it but did not return it")
    # UIDs already placed this run: the unchanged objects' (from state) and each one read.
    listed = {r.href for r in refs}
    uids = {uid: i.src_href for uid, i in known.items() if i.src_href in listed}
    readable: list[tuple[Item, ObjectFields]] = []
    for item in items:
        try:
            fields = read_object(item.body, sc.kind)
        except BrokenObjectError as e:
            entry.fail(item.href, e.reason)
            continue
        other = uids.get(fields.uid)
        if other is not None and other != item.href:
            entry.fail(item.href, f"UID also used by {other}", fields.uid, fields.title)
            continue
        uids[fields.uid] = item.href
        readable.append((item, fields))
    limit = asyncio.Semaphore(concurrency)
    found: list[tuple[Item, ObjectFields, str]] = []  # already on the destination
    there: dict[str, dict[str, Any] | None] | None = None
    if readable and not known:  # first run, or a lost state: look at the destination once
        index = await _destination_index(dst, dc)
        there = {href: fields for href, fields in index.values()}
        found = [(i, f, index[f.uid][0]) for i, f in readable if f.uid in index]
        readable = [(i, f) for i, f in readable if f.uid not in index]

    async def one(item: Item, fields: ObjectFields) -> None:
        async with limit:
            existing = await _write(dst, state, sc, dc, entry, item, fields,
                                    known.get(fields.uid))
        if existing is not None:
            found.append((item, fields, existing))

    await asyncio.gather(*(one(i, f) for i, f in readable))
    if found:
        await _adopt(dst, state, sc, dc, entry, found, there)
    state.save_collection(CollectionState(sc.href, sc.kind, dc.href, sc.sync_token,
                                          complete=entry.failed == 0))


async def _listing(src: PimSource, sc: Collection, cs: CollectionState | None,
                   dc: Collection, known: dict[str, ItemState],
                   entry: CollectionReport) -> list[ItemRef]:
    """Every object of ``sc`` with its ETag: from what changed since the last complete
    run's token (RFC 6578) applied to state, or, failing that, from a full listing."""
    if (cs is not None and cs.complete and cs.sync_token and cs.dest_collection == dc.href
            and sc.sync_token != cs.sync_token):
        delta = await src.changes(sc, cs.sync_token)
        if delta is not None:
            entry.incremental = True
            listing = {i.src_href: i.src_etag for i in known.values()}
            for href in delta.removed:
                listing.pop(href, None)
            for ref in delta.changed:
                listing[ref.href] = ref.etag
            return [ItemRef(h, e) for h, e in listing.items()]
    return await src.list_items(sc)


async def _write(dst: PimDestination, state: PimState, sc: Collection, dc: Collection,
                 entry: CollectionReport, item: Item, fields: ObjectFields,
                 known: ItemState | None) -> str | None:
    """Create or update one object, count it and record it once confirmed.

    Returns the href of the destination object that already holds the UID (to adopt).
    """
    try:
        if known is not None:
            res = await dst.put(dc, fields.uid, item.body, href=known.dest_href)
            if res.error is None:
                entry.copied += 1
                entry.updated += 1
                entry.note(item.href, fields.uid, fields.title, res.notes)
                state.record(sc.href, [ItemState(fields.uid, item.href, item.etag,
                                                 res.href or known.dest_href)])
                return None
        else:
            res = await dst.put(dc, fields.uid, item.body)
            if res.existing is not None:
                return res.existing
            if res.error is None and res.href is not None:
                entry.copied += 1
                entry.note(item.href, fields.uid, fields.title, res.notes)
                state.record(sc.href, [ItemState(fields.uid, item.href, item.etag, res.href)])
                return None
        entry.fail(item.href, res.error or "the destination did not confirm it",
                   fields.uid, fields.title)
    except MailtrekError as e:
        if not isinstance(e, StoreError):
            raise  # authentication, connection: the run stops, a re-run resumes
        entry.fail(item.href, e.message, fields.uid, fields.title)
    return None


async def _destination_index(dst: PimDestination,
                             dc: Collection) -> dict[str, tuple[str, dict[str, Any]]]:
    """``{UID: (href, fields)}`` of every readable object of a destination collection."""
    refs = await dst.list_items(dc)
    out: dict[str, tuple[str, dict[str, Any]]] = {}
    for got in await dst.fetch(dc, [r.href for r in refs]) if refs else []:
        try:
            o = read_object(got.body, dc.kind)
        except BrokenObjectError:
            continue
        out.setdefault(o.uid, (got.href, o.fields))
    return out


async def _adopt(dst: PimDestination, state: PimState, sc: Collection, dc: Collection,
                 entry: CollectionReport, found: list[tuple[Item, ObjectFields, str]],
                 there: dict[str, dict[str, Any] | None] | None = None) -> None:
    """The destination already holds these UIDs: keep equal objects, correct the others.

    Their destination copies (``there``: href → fields, fetched in batches when not
    given) are compared field by field.
    """
    if there is None:
        there = {}
        for got in await dst.fetch(dc, [href for _, _, href in found]):
            try:
                there[got.href] = read_object(got.body, dc.kind).fields
            except BrokenObjectError:
                there[got.href] = None
    for item, fields, existing in found:
        theirs = there.get(existing)
        try:
            if theirs is not None and not differences(_expected(dst, dc.kind, item, fields),
                                                      theirs):
                entry.skipped += 1
                entry.adopted += 1
            else:
                res = await dst.put(dc, fields.uid, item.body, href=existing)
                if res.error is not None:
                    entry.fail(item.href, res.error, fields.uid, fields.title)
                    continue
                entry.copied += 1
                entry.updated += 1
                entry.note(item.href, fields.uid, fields.title, res.notes)
        except StoreError as e:
            entry.fail(item.href, e.message, fields.uid, fields.title)
            continue
        state.record(sc.href, [ItemState(fields.uid, item.href, item.etag, existing)])


def _expected(dst: PimDestination, kind: Kind, item: Item, fields: ObjectFields) -> dict[str, Any]:
    """The fields ``item`` has once on ``dst`` (see ``model.comparable``)."""
    try:
        return read_object(comparable(dst, kind, item.body), kind).fields
    except BrokenObjectError:
        return fields.fields
