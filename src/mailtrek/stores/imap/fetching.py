"""What the IMAP store's reads ask for, and what their FETCH answers become.

Pure: the items a listing or a body fetch asks for, how UIDs are cut into commands,
and the ``MessageMeta`` / ``Message`` each ``* n FETCH`` response carries.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from mailtrek.fingerprint import (
    FINGERPRINT_FIELDS,
    ORIGIN_FIELD,
    fingerprint_fields,
    parse_header_fields,
    parse_origin,
)
from mailtrek.model import Message, MessageMeta, SpecialUse
from mailtrek.stores.imap import verbs
from mailtrek.stores.imap.rewrites import loosen
from mailtrek.stores.imap.wire import OversizedLiteral, Response, number

LISTING_ITEMS = (b"UID", b"RFC822.SIZE", b"FLAGS", b"INTERNALDATE")
BODY_ITEMS = (b"UID", b"FLAGS", b"INTERNALDATE", b"BODY.PEEK[]")
HEADER_ITEM = b"BODY.PEEK[HEADER.FIELDS (" + " ".join(FINGERPRINT_FIELDS).encode() + b")]"
# A destination is also asked for the origin stamp of copies we had to change.
DEST_HEADER_ITEM = (b"BODY.PEEK[HEADER.FIELDS ("
                    + " ".join((*FINGERPRINT_FIELDS, ORIGIN_FIELD)).encode() + b")]")
FETCH_BATCH = 64  # UIDs per FETCH command
FETCH_BATCH_BYTES = 2 << 20  # and at most this many bytes per command

# LIST attributes (RFC 6154) <-> special uses.
SPECIAL = {
    b"\\SENT": SpecialUse.SENT,
    b"\\DRAFTS": SpecialUse.DRAFTS,
    b"\\TRASH": SpecialUse.TRASH,
    b"\\JUNK": SpecialUse.JUNK,
    b"\\ARCHIVE": SpecialUse.ARCHIVE,
    b"\\ALL": SpecialUse.ALL,
    b"\\FLAGGED": SpecialUse.FLAGGED,
    b"\\IMPORTANT": SpecialUse.IMPORTANT,
}
USE_ATTR = {
    SpecialUse.SENT: "\\Sent",
    SpecialUse.DRAFTS: "\\Drafts",
    SpecialUse.TRASH: "\\Trash",
    SpecialUse.JUNK: "\\Junk",
    SpecialUse.ARCHIVE: "\\Archive",
}


def batches(uids: Sequence[int], sizes: Mapping[int, int] | None) -> list[list[int]]:
    """Cut UIDs into FETCH commands of at most FETCH_BATCH UIDs and FETCH_BATCH_BYTES."""
    out: list[list[int]] = []
    cur: list[int] = []
    weight = 0
    for uid in uids:
        size = sizes.get(uid, 0) if sizes else 0
        if cur and (len(cur) >= FETCH_BATCH or weight + size > FETCH_BATCH_BYTES):
            out.append(cur)
            cur, weight = [], 0
        cur.append(uid)
        weight += size
    if cur:
        out.append(cur)
    return out


def meta_of(items: dict[bytes, Any], *, fingerprints: bool, destination: bool) -> MessageMeta | None:
    """The listing entry a FETCH response carries; None for an unsolicited flag update.

    With ``fingerprints`` its header fields give the fingerprints, Message-ID and
    subject; on a ``destination`` a copy we had to change matches as its source.
    """
    if b"UID" not in items or b"RFC822.SIZE" not in items:
        return None
    meta = MessageMeta(
        uid=verbs.fetched_number(items, b"UID"),
        size=verbs.fetched_number(items, b"RFC822.SIZE"),
        flags=verbs.fetched_flags(items),
        internaldate=verbs.fetched_date(items),
    )
    if b"MODSEQ" in items:
        ms = items[b"MODSEQ"]
        meta.modseq = number(ms[0], "MODSEQ") if isinstance(ms, list) and ms else None
    if fingerprints:
        fields = parse_header_fields(verbs.fetched_header(items))
        meta.fingerprint = fingerprint_fields(fields)
        meta.loose_fingerprint = fingerprint_fields({k: loosen(v) for k, v in fields.items()})
        origin = parse_origin(fields.get(ORIGIN_FIELD)) if destination else None
        if origin is not None:  # a copy we had to change: match it as its source
            meta.fingerprint, meta.size = origin
        mid = fields.get("MESSAGE-ID")
        meta.message_id = mid.decode("utf-8", "replace") if mid else None
        subj = fields.get("SUBJECT")
        meta.subject = subj.decode("utf-8", "replace") if subj else None
    return meta


def message_of(resp: Response) -> Message | None:
    """The message a ``* n FETCH (UID .. BODY[] ..)`` response carries; None for others.

    A body read past (over the size limit) leaves ``raw`` empty and its size in
    ``extra["too_large"]``.
    """
    items = verbs.fetch_of(resp)
    body = items.get(b"BODY[]")
    if b"UID" not in items or not isinstance(body, (bytes, bytearray, OversizedLiteral)):
        return None  # an unsolicited flag update, not our answer
    msg = Message(
        uid=verbs.fetched_number(items, b"UID"),
        raw=b"" if isinstance(body, OversizedLiteral) else body,  # type: ignore[arg-type]
        flags=verbs.fetched_flags(items),
        internaldate=verbs.fetched_date(items),
    )
    if isinstance(body, OversizedLiteral):
        msg.extra["too_large"] = body.size
    return msg
