"""Prove a copy: compare source and destination message by message.

Where the destination keeps bytes exactly (IMAP), every message of both sides is
fetched and compared by SHA-256; elsewhere (Microsoft Graph items) by fingerprint, and the
source is read whole for the dates its headers carry. When the copy's state is given,
what it recorded (source folder, UIDVALIDITY, UID -> destination item) is checked first;
fingerprints pair only what state does not know. The pairing and judging rules are in
``verify_match``. Nothing is written anywhere.

What differs by destination is read from it, never from its kind: a destination that
stamps the copies it had to change (``StoreFeatures.origin_stamps``: Exchange Online's
IMAP) has those matched by the source fingerprint and size the stamp names, not by
bytes; every other copy is hashed as the store's ``canonical_bytes`` gives it back
(Exchange undoes its same-length read-receipt rename there); flags it cannot hold
(``dropped_flags``) and its date tolerance come from its features too.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import defaultdict
from datetime import UTC, datetime
from email.parser import BytesParser
from email.policy import compat32
from email.utils import parsedate_to_datetime
from typing import Any

from mailtrek.fingerprint import (
    ORIGIN_FIELD,
    fingerprint,
    fingerprint_fields,
    loose_fingerprint,
    parse_origin,
)
from mailtrek.model import FolderInfo, portable_flags
from mailtrek.state.db import FolderState, MailboxState, MessageState
from mailtrek.stored_forms import stored_forms
from mailtrek.stores.base import DestinationStore, SourceStore
from mailtrek.sync.engine import _find_dest
from mailtrek.sync.filters import folder_selected, message_date_selected
from mailtrek.sync.mapping import map_folders, visible
from mailtrek.sync.options import CopyOptions
from mailtrek.sync.verify_match import Item, match_folder


async def verify_mailbox(
    source: SourceStore, dest: DestinationStore, options: CopyOptions,
    state: MailboxState | None = None,
) -> dict[str, Any]:
    """Compare every selected folder; return the documented JSON-able result.

    ``state``: the copy's state (read only); without it every pairing is by content.
    """
    src_folders, dest_folders = await asyncio.gather(source.list_folders(), dest.list_folders())
    mappings = [m for m in map_folders(src_folders, dest.features, dest_root=options.dest_root)
                if folder_selected(m.source, options.include, options.exclude)]
    exact = dest.features.exact_mime and hasattr(dest, "fetch")
    features = dest.features
    fstates = state.folder_states() if state is not None else {}
    problems: list[dict[str, Any]] = []
    folders = []
    missing_folders: list[dict[str, str]] = []
    totals: defaultdict[str, int] = defaultdict(int)
    for m in mappings:
        if m.refused_because:  # never copied (a name no command can carry): say so
            problems.append({"kind": "refused", "folder": visible(m.source.display),
                             "detail": m.refused_because})
            totals["refused"] += 1
            continue
        d = _find_dest(dest, dest_folders, m)
        dest_name = d.display if d else "/".join(m.dest_path)
        if d is None:
            missing_folders.append({"folder": m.source.display, "destination": dest_name})
        src_items = [i for i in await _items(source, m.source,
                                             exact or features.dates_from_headers)
                     if message_date_selected_item(i, options)
                     and (options.max_size is None or i.size <= options.max_size)]
        dst_items = await _items(dest, d, exact, served_by=dest) if d is not None else []
        recorded = _recorded(state, fstates.get(m.source.path), m.source, d)
        res = match_folder(m.source.display, src_items, dst_items, exact=exact,
                           features=features, recorded=recorded, empty_fp=EMPTY_FP)
        problems.extend(res["problems"])
        # "source" and "destination" are counts (from match_folder); "folder" names it.
        folders.append({"folder": m.source.display, "destination_folder": dest_name,
                        "exists": d is not None,
                        **{k: v for k, v in res.items() if k != "problems"}})
        for k in ("source", "matched", "missing", "different", "extra", "matched_by_state",
                  "dates_from_headers", "dates_not_kept", "changed_by_server"):
            totals[k] += res[k]
    totals["missing_folders"] = len(missing_folders)
    ok = (totals["missing"] == 0 and totals["different"] == 0 and not missing_folders
          and totals["refused"] == 0)
    return {"ok": ok, "exact_bytes": exact, "used_state": state is not None,
            "totals": dict(totals), "folders": folders, "missing_folders": missing_folders,
            "problems": problems}


# The fingerprint of a message none of whose identifying headers could be read.
EMPTY_FP = fingerprint_fields({})


def _recorded(state: MailboxState | None, fs: FolderState | None, src: FolderInfo,
              dest: FolderInfo | None) -> dict[int, MessageState] | None:
    """State's rows for this folder, or None when its destination ids no longer hold.

    A folder whose copy did not end (a message refused, a run cut short) has message rows
    but no folder row: they are used too, each still proven by its content (rule 1).
    """
    if state is None or dest is None:
        return None
    if fs is None:
        return state.messages_of(src.path, src.uidvalidity)
    if fs.dest_uidvalidity is not None and dest.uidvalidity is not None and (
            fs.dest_uidvalidity != dest.uidvalidity):
        return None  # the destination folder was recreated: its UIDs are void
    if fs.dest_store_id and dest.store_id and fs.dest_store_id != dest.store_id:
        return None
    return state.messages_of(src.path, src.uidvalidity)


def message_date_selected_item(i: Item, options: CopyOptions) -> bool:
    from mailtrek.model import MessageMeta

    return message_date_selected(MessageMeta(uid=i.uid, size=i.size, internaldate=i.date),
                                 options.since, options.before)


async def _items(store: Any, folder: FolderInfo | None, exact: bool, *,
                 served_by: DestinationStore | None = None) -> list[Item]:
    """Every message of ``folder``; ``exact``: read the bytes too (digest, header date);
    ``served_by``: read them as copies this destination holds (its stamps, its bytes)."""
    if folder is None or not folder.selectable:
        return []
    metas = await store.list_messages(folder, fingerprints=True)
    by_uid = {x.uid: x for x in metas}
    if not exact:
        return [Item(x.uid, None, x.fingerprint, portable_flags(x.flags), x.internaldate,
                     x.size, x.subject, dest_key=x.store_id or str(x.uid),
                     message_id=x.message_id) for x in metas]
    out = []
    async for msg in store.fetch(folder, [x.uid for x in metas]):
        meta = by_uid.get(msg.uid)
        raw = msg.raw
        fp, size = fingerprint(raw), msg.size
        stamps = served_by is not None and served_by.features.origin_stamps
        origin = _origin(raw) if stamps else None
        served: str | None = None
        if origin is not None:  # changed for Exchange: it stands for the stamped source
            fp, size = origin
            digest = _origin_key(fp, size)
        else:
            restored = served_by.canonical_bytes(raw) if served_by is not None else raw
            digest = hashlib.sha256(restored).hexdigest()
            if restored != raw:
                served = hashlib.sha256(raw).hexdigest()
        rewrites: tuple[tuple[str, str], ...] = ()
        loose = None
        if served_by is None:  # a source message: the forms a server may keep it in
            rewrites = tuple((hashlib.sha256(form).hexdigest(), what)
                             for form, what in stored_forms(raw))
            loose = loose_fingerprint(raw) if rewrites else None
        out.append(Item(msg.uid, digest, fp, portable_flags(msg.flags), msg.internaldate,
                        size, meta.subject if meta else None,
                        origin_key=None if stamps else _origin_key(fp, len(raw)),
                        served_digest=served, dest_key=str(msg.uid),
                        message_id=meta.message_id if meta else None,
                        header_date=header_instant(raw), rewrites=rewrites,
                        loose_fp=loose))
    return out


def header_instant(raw: bytes) -> datetime | None:
    """The received date a message's own headers give: topmost Received, else Date.

    What Microsoft 365's ``importMime`` dates an item by (no way to set it is documented).
    """
    head = _HEAD_PARSER.parsebytes(raw[:262144], headersonly=True)
    for value in (head.get_all("Received") or [])[:1]:
        moment = _date(str(value).rpartition(";")[2].strip())
        if moment is not None:
            return moment
    return _date(str(head.get("Date") or ""))


_HEAD_PARSER = BytesParser(policy=compat32)


def _date(value: str) -> datetime | None:
    if not value:
        return None
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


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
