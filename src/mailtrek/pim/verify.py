"""Compare contacts and calendars on both sides, object by object (by UID).

Collections pair up by kind and display name (the copy gives its twins the source's
name). For each pair every object of both sides is fetched and read; objects are equal
when their compared fields are (see ``pim.fields``). Source objects that cannot be read
are listed as ``broken``: the copy reports them and cannot carry them. A destination
that holds objects its own way (Graph: ``projection``) is compared with what the source
becomes there; objects it cannot hold at all are ``unsupported`` (the copy reported why).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mailtrek.pim.fields import BrokenObjectError, ObjectFields, differences, read_object
from mailtrek.pim.model import Collection, Kind, PimSource, comparable


async def _read_all(store: PimSource, c: Collection, like: object = None,
                    ) -> tuple[dict[str, ObjectFields], list[tuple[str, str]],
                               dict[str, ObjectFields | str]]:
    """Every readable object (by UID), the unreadable ones, and each object as ``like`` (a
    destination) would hold it (its fields, or why it cannot hold it at all)."""
    refs = await store.list_items(c)
    objects: dict[str, ObjectFields] = {}
    broken: list[tuple[str, str]] = []
    held: dict[str, ObjectFields | str] = {}
    for item in await store.fetch(c, [r.href for r in refs]):
        try:
            o = read_object(item.body, c.kind)
        except BrokenObjectError as e:
            broken.append((item.href, e.reason))
            continue
        objects[o.uid] = o
        if like is not None:
            try:
                held[o.uid] = read_object(comparable(like, c.kind, item.body), c.kind)
            except BrokenObjectError as e:
                held[o.uid] = e.reason
    return objects, broken, held


async def verify_pim(src: PimSource, dst: PimSource, kinds: Sequence[Kind]) -> dict[str, Any]:
    """Return ``{"ok", "totals", "collections", "problems"}``; both stores connected."""
    theirs = {(c.kind, c.name): c for c in await dst.collections(kinds)}
    totals = dict.fromkeys(("source", "matched", "missing", "different", "extra", "broken",
                            "unsupported"), 0)
    collections: list[dict[str, Any]] = []
    problems: list[dict[str, Any]] = []
    for sc in await src.collections(kinds):
        mine, broken, held = await _read_all(src, sc, dst)
        dc = theirs.get((sc.kind, sc.name))
        there, _, _ = await _read_all(dst, dc) if dc is not None else ({}, [], {})
        counts = dict.fromkeys(totals, 0)
        counts["source"], counts["broken"] = len(mine), len(broken)
        where = {"kind": sc.kind, "collection": sc.name}
        for uid, o in sorted(mine.items()):
            other = there.get(uid)
            expected = held.get(uid, o)
            if isinstance(expected, str):  # the destination cannot hold it (reported by copy)
                counts["unsupported"] += 1
                problems.append({**where, "problem": "unsupported", "uid": uid,
                                 "title": o.title, "reason": expected})
                continue
            if other is None:
                counts["missing"] += 1
                problems.append({**where, "problem": "missing", "uid": uid, "title": o.title})
                continue
            diff = differences(expected.fields, other.fields)
            if diff:
                counts["different"] += 1
                problems.append({**where, "problem": "different", "uid": uid, "title": o.title,
                                 "fields": diff})
            else:
                counts["matched"] += 1
        for uid in sorted(set(there) - set(mine)):
            counts["extra"] += 1
            problems.append({**where, "problem": "extra", "uid": uid,
                             "title": there[uid].title})
        for href, reason in broken:
            problems.append({**where, "problem": "broken", "href": href, "reason": reason})
        collections.append({**where, "source": sc.href,
                            "destination": dc.href if dc else None, **counts})
        for k in totals:
            totals[k] += counts[k]
    return {"ok": totals["missing"] == 0 and totals["different"] == 0, "totals": totals,
            "collections": collections, "problems": problems}
