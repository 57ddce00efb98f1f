"""Prove a copy: compare source and destination message by message.

Where the destination keeps bytes exactly (IMAP), every message of both sides is
fetched and compared by SHA-256; elsewhere (Microsoft Graph JSON items) by fingerprint.
Counting is by multiset, so duplicates must be duplicated. Flags and received dates of
matched messages are compared too. Nothing is written anywhere.

Exchange Online's IMAP (``ImapStore`` with ``settings.exchange``) gets some messages in a
changed form (see ``stores.imap.exchange``): a copy stamped ``X-Mailtrek-Origin`` is
matched by the source fingerprint and size it names, not by bytes; any other copy is
hashed after ``restore_disarmed`` (the read-receipt rename keeps the size, so undoing it
restores the source bytes); mail-system keywords it is never sent are not a difference.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mailtrek.model import FolderInfo, portable_flags
from mailtrek.stores.base import DestinationStore, SourceStore
from mailtrek.stores.imap.exchange import exchange_flags, restore_disarmed
from mailtrek.stores.imap.store import ImapStore
from mailtrek.sync.engine import _find_dest
from mailtrek.sync.filters import folder_selected, message_date_selected
from mailtrek.sync.fingerprint import ORIGIN_FIELD, fingerprint, parse_origin
from mailtrek.sync.mapping import map_folders
from mailtrek.sync.options import CopyOptions

# Keywords Microsoft 365 keeps as no category: not a difference there.
_GRAPH_DROPS = {"$MDNSent", "$Forwarded", "$Junk", "$NotJunk", "NonJunk", "Junk", "\\Answered",
                "\\Draft", "$Phishing", "$SubmitPending", "$Submitted"}


@dataclass(slots=True)
class _Item:
    uid: int
    digest: str | None
    fp: str | None
    flags: frozenset[str]
    date: datetime | None
    size: int
    subject: str | None = None
    # Source side: the key a destination copy stamped with this message's origin has.
    origin_key: str | None = None
    # Exchange side: the digest of the bytes as served, when restoring them changed them
    # (a source may carry an X-Disposition-Notification field of its own).
    served_digest: str | None = None


async def verify_mailbox(
    source: SourceStore, dest: DestinationStore, options: CopyOptions
) -> dict[str, Any]:
    """Compare every selected folder; return the documented JSON-able result."""
    src_folders, dest_folders = await asyncio.gather(source.list_folders(), dest.list_folders())
    mappings = [m for m in map_folders(src_folders, dest.features, dest_root=options.dest_root)
                if folder_selected(m.source, options.include, options.exclude)]
    exact = dest.features.exact_mime and hasattr(dest, "fetch")
    exchange = isinstance(dest, ImapStore) and dest.exchange
    kind = "exchange" if exchange else dest.features.kind
    problems: list[dict[str, Any]] = []
    folders = []
    totals: defaultdict[str, int] = defaultdict(int)
    for m in mappings:
        d = _find_dest(dest, dest_folders, m)
        src_items = [i for i in await _items(source, m.source, exact)
                     if message_date_selected_item(i, options)
                     and (options.max_size is None or i.size <= options.max_size)]
        dst_items = await _items(dest, d, exact, exchange=exchange) if d is not None else []
        res = _compare(m.source.display, src_items, dst_items, exact, kind)
        problems.extend(res["problems"])
        folders.append({"source": m.source.display,
                        "destination": d.display if d else "/".join(m.dest_path),
                        **{k: v for k, v in res.items() if k != "problems"}})
        for k in ("source", "matched", "missing", "different", "extra"):
            totals[k] += res[k]
    ok = totals["missing"] == 0 and totals["different"] == 0
    return {"ok": ok, "exact_bytes": exact, "totals": dict(totals), "folders": folders,
            "problems": problems}


def message_date_selected_item(i: _Item, options: CopyOptions) -> bool:
    from mailtrek.model import MessageMeta

    return message_date_selected(MessageMeta(uid=i.uid, size=i.size, internaldate=i.date),
                                 options.since, options.before)


async def _items(store: Any, folder: FolderInfo | None, exact: bool, *,
                 exchange: bool = False) -> list[_Item]:
    """Every message of ``folder``; ``exchange``: read it as an Exchange destination."""
    if folder is None or not folder.selectable:
        return []
    metas = await store.list_messages(folder, fingerprints=True)
    by_uid = {x.uid: x for x in metas}
    if not exact:
        return [_Item(x.uid, None, x.fingerprint, portable_flags(x.flags), x.internaldate,
                      x.size, x.subject) for x in metas]
    out = []
    async for msg in store.fetch(folder, [x.uid for x in metas]):
        meta = by_uid.get(msg.uid)
        raw = msg.raw
        fp, size = fingerprint(raw), msg.size
        origin = _origin(raw) if exchange else None
        served: str | None = None
        if origin is not None:  # changed for Exchange: it stands for the stamped source
            fp, size = origin
            digest = _origin_key(fp, size)
        else:
            restored = restore_disarmed(raw) if exchange else raw
            digest = hashlib.sha256(restored).hexdigest()
            if restored != raw:
                served = hashlib.sha256(raw).hexdigest()
        out.append(_Item(msg.uid, digest, fp, portable_flags(msg.flags), msg.internaldate,
                         size, meta.subject if meta else None,
                         origin_key=None if exchange else _origin_key(fp, len(raw)),
                         served_digest=served))
    return out


def _origin(raw: bytes) -> tuple[str, int] | None:
    """The (fingerprint, size) of an ``X-Mailtrek-Origin`` stamp, or None.

    mailtrek writes the stamp as the first line of a changed copy; only there is it
    trusted (a stamp deeper down came with the source message itself).
    """
    first = raw[:256].split(b"\n", 1)[0].rstrip(b"\r")
    name, colon, value = first.partition(b":")
    if not colon or name.strip().upper() != ORIGIN_FIELD.encode():
        return None
    return parse_origin(value)


def _origin_key(fp: str | None, size: int) -> str:
    """The match key of a stamped copy (never equal to a SHA-256 hex digest)."""
    return f"origin:{fp}:{size}"


def _compare(name: str, src: list[_Item], dst: list[_Item], exact: bool, kind: str
             ) -> dict[str, Any]:
    problems: list[dict[str, Any]] = []
    key = (lambda i: i.digest) if exact else (lambda i: i.fp)
    pool: dict[str | None, list[_Item]] = defaultdict(list)
    served: dict[str, list[_Item]] = defaultdict(list)  # Exchange copies, as served
    for d in dst:
        pool[key(d)].append(d)
        if d.served_digest:
            served[d.served_digest].append(d)
    taken: set[int] = set()

    def take(s: _Item) -> _Item | None:
        """The best unmatched destination twin of ``s``, marked taken; None if none."""
        ways = [pool.get(key(s))]
        if exact:  # a copy changed and stamped; a copy that needed no restoring after all
            ways += [pool.get(s.origin_key or ""), served.get(s.digest or "")]
        for cands in ways:
            live = [c for c in cands or () if id(c) not in taken]
            if live:
                # Prefer a twin with the same flags, so duplicates pair up sensibly.
                pick = next((c for c in live if c.flags == s.flags), live[0])
                taken.add(id(pick))
                return pick
        return None

    matched = 0
    unmatched: list[_Item] = []
    for s in sorted(src, key=lambda i: i.uid):
        pick = take(s)
        if pick is None:
            unmatched.append(s)
            continue
        matched += 1
        detail = _state_diff(s, pick, kind)
        if detail:
            problems.append(_problem("different", name, s, detail))
    rest_by_fp: dict[str | None, list[_Item]] = defaultdict(list)
    for d in dst:
        if id(d) not in taken:
            rest_by_fp[d.fp].append(d)
    missing = different = 0
    for s in unmatched:
        twins = rest_by_fp.get(s.fp)
        if exact and twins:
            twins.pop(0)
            different += 1
            problems.append(_problem("different", name, s, "content differs"))
        else:
            missing += 1
            problems.append(_problem("missing", name, s, None))
    extra = sum(len(v) for v in rest_by_fp.values())
    for items in rest_by_fp.values():
        for d in items:
            problems.append({"kind": "extra", "folder": name, "dest_uid": d.uid,
                             "subject": d.subject, "detail": None})
    different += sum(1 for p in problems if p["kind"] == "different" and p["detail"] !=
                     "content differs")
    return {"source": len(src), "destination": len(dst), "matched": matched, "missing": missing,
            "different": different, "extra": extra, "problems": problems}


def _state_diff(s: _Item, d: _Item, kind: str) -> str | None:
    sf, df = s.flags, d.flags
    if kind == "graph":
        sf = frozenset(f for f in sf if f not in _GRAPH_DROPS)
        df = frozenset(f for f in df if f not in _GRAPH_DROPS)
    elif kind == "exchange":  # mail-system keywords are not sent (they'd become categories)
        sf, df = exchange_flags(sf), exchange_flags(df)
    out = []
    if sf != df:
        out.append(f"flags {sorted(sf)} != {sorted(df)}")
    # importMime takes the received time from the MIME itself (Microsoft documents no way
    # to set it), so for Microsoft 365 the date is reported by copy, not judged here.
    if kind != "graph" and s.date and d.date and abs((s.date - d.date).total_seconds()) >= 1:
        out.append(f"date {s.date.isoformat()} != {d.date.isoformat()}")
    return "; ".join(out) or None


def _problem(kind: str, folder: str, s: _Item, detail: str | None) -> dict[str, Any]:
    return {"kind": kind, "folder": folder, "uid": s.uid, "subject": s.subject,
            "date": s.date.isoformat() if s.date else None, "size": s.size, "detail": detail}
