"""Pair a folder's source messages with their copies, and judge each pair (pure).

The rules, in order:
1. What state recorded comes first: a source message recorded as copied to destination
   item X is paired with X when X still exists and still holds that message (same bytes
   where the route keeps bytes; else the same fingerprint or Message-ID). A recorded item
   that is gone, or holds something else, leaves the message to rule 2.
2. The rest is paired by content (SHA-256 of the bytes where the route keeps them, else
   the fingerprint). Among identical candidates (twins: byte-identical messages, or ones
   sharing every identifying header) a candidate with the same flags and date is taken
   first, over the whole folder before any other pairing, so that flags and dates match
   whenever some assignment makes them match.
3. Twins paired by state whose flags or dates disagree are swapped with each other when
   the swap makes both agree (an earlier run may have adopted them the other way round).
4. A paired message whose flags differ, or whose received date is off by more than the
   destination's tolerance (``StoreFeatures.date_tolerance_s``), is "different". A
   destination that dates items by their own headers (``dates_from_headers``: Microsoft
   Graph's ``importMime`` takes topmost Received, else Date): a copy dated that way
   counts as ``dates_from_headers``; a message with no date in its headers cannot keep
   one there (``dates_not_kept``). Neither is a difference.
5. Where the route keeps bytes, a source message still unpaired is paired with a copy
   holding exactly a form a server stores it in (``stored_forms``: Cyrus replaces 8-bit
   header bytes with ``X``, Courier makes line ends CRLF and ends a message with CRLF),
   by state or by content after every exact pair is made; the pair is reported as
   "changed" by the server, with what it changed, which is no difference.
6. Unpaired source messages are "missing" (or "different: content differs" where a
   leftover copy has the same fingerprint, or the source's loose fingerprint, but other
   bytes); unpaired copies are "extra".
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mailtrek.state.db import MessageState
from mailtrek.stores.base import StoreFeatures
from mailtrek.sync.flagsets import comparable_flags


@dataclass(slots=True)
class Item:
    """One message of either side, as verify sees it."""

    uid: int
    digest: str | None
    fp: str | None
    flags: frozenset[str]
    date: datetime | None
    size: int
    subject: str | None = None
    # Source side: the key a destination copy stamped with this message's origin has.
    origin_key: str | None = None
    # Exchange side: the digest of the bytes as served, when restoring them changed them.
    served_digest: str | None = None
    dest_key: str | None = None  # destination side: the id state records (UID or Graph id)
    message_id: str | None = None
    header_date: datetime | None = None  # source side: the date the headers carry
    # Source side: (digest, what changed) of each form a server may store it in
    # (``stored_forms``), and the fingerprint of its 8-bit-replaced form.
    rewrites: tuple[tuple[str, str], ...] = ()
    loose_fp: str | None = None


@dataclass(slots=True)
class _Pair:
    src: Item
    dst: Item
    by_state: bool
    rewritten: str | None = None  # what the server changed in the copy it holds (rule 5)


def match_folder(name: str, src: list[Item], dst: list[Item], *, exact: bool,
                 features: StoreFeatures, recorded: dict[int, MessageState] | None = None,
                 empty_fp: str | None = None) -> dict[str, Any]:
    """Pair and judge one folder; return its counts and problems (rules above).

    ``features``: the destination's (which flags it keeps, how exact its dates are).
    ``recorded``: state's rows of this source folder (only ones with a destination id
    are used). ``empty_fp``: the fingerprint of a message with none of the identifying
    headers (a service that could not read the headers lists that).
    """
    by_key = {d.dest_key: d for d in dst if d.dest_key}
    taken: set[int] = set()
    pairs: list[_Pair] = []
    rest: list[Item] = []
    for s in sorted(src, key=lambda i: i.uid):
        rec = (recorded or {}).get(s.uid)
        d = (by_key.get(rec.dest_id) if rec is not None and rec.status == "done"
             and rec.dest_id else None)
        if d is not None and id(d) not in taken and _same_content(s, d, exact, empty_fp):
            taken.add(id(d))
            pairs.append(_Pair(s, d, True, _rewritten(s, d, exact)))
        else:
            rest.append(s)
    pairs += _pair_by_content(rest, [d for d in dst if id(d) not in taken], exact, features,
                              taken)
    _swap_twins(pairs, exact, features)
    if exact:  # rule 5: only what no exact copy was found for
        paired_now = {id(p.src) for p in pairs}
        pairs += _pair_by_content([s for s in rest if id(s) not in paired_now],
                                  [d for d in dst if id(d) not in taken], exact, features,
                                  taken, rewritten=True)
    paired = {id(p.src) for p in pairs}

    problems: list[dict[str, Any]] = []
    different = from_headers = not_kept = changed = 0
    for p in pairs:
        detail, date_note = judge(p.src, p.dst, features)
        from_headers += date_note == "from_headers"
        not_kept += date_note == "not_kept"
        if detail:
            different += 1
            problems.append(problem("different", name, p.src, detail))
        if p.rewritten:
            changed += 1
            problems.append(problem("changed", name, p.src, changed_detail(p.rewritten)))
    leftovers: dict[str | None, list[Item]] = defaultdict(list)
    for d in dst:
        if id(d) not in taken:
            leftovers[d.fp].append(d)
    missing = 0
    for s in src:
        if id(s) in paired:
            continue
        twins = leftovers.get(s.fp) or (leftovers.get(s.loose_fp) if s.loose_fp else None)
        if exact and twins:
            twins.pop(0)
            different += 1
            problems.append(problem("different", name, s, "content differs"))
        else:
            missing += 1
            problems.append(problem("missing", name, s, None))
    extra = 0
    for items in leftovers.values():
        for d in items:
            extra += 1
            problems.append({"kind": "extra", "folder": name, "dest_uid": d.uid,
                             "subject": d.subject, "detail": None})
    return {"source": len(src), "destination": len(dst), "matched": len(pairs),
            "matched_by_state": sum(p.by_state for p in pairs), "missing": missing,
            "different": different, "extra": extra, "dates_from_headers": from_headers,
            "dates_not_kept": not_kept, "changed_by_server": changed, "problems": problems}


def changed_detail(what: str) -> str:
    """The problem detail of a copy the server changed (rule 5)."""
    return f"changed by the server ({what})"


def _rewritten(s: Item, d: Item, exact: bool) -> str | None:
    """What the server changed when the copy ``d`` holds ``s`` in one of its stored forms
    (not its exact bytes); None otherwise."""
    if not exact or d.digest is None or d.digest == s.digest:
        return None
    return next((what for key, what in s.rewrites if key == d.digest), None)


def _same_content(s: Item, d: Item, exact: bool, empty_fp: str | None) -> bool:
    """True when the recorded copy ``d`` still holds message ``s``."""
    if exact:
        return (d.digest is not None and d.digest in (s.digest, s.origin_key)) or (
            d.served_digest is not None and d.served_digest == s.digest) or (
            _rewritten(s, d, exact) is not None)
    if s.fp is not None and s.fp == d.fp:
        return True
    if s.message_id and d.message_id and s.message_id.strip() == d.message_id.strip():
        return True
    # The service read none of the identifying headers (e.g. a byte-order mark before
    # them): the recorded id is all there is to go by.
    return empty_fp is not None and d.fp == empty_fp


def _keys(s: Item, exact: bool, rewritten: bool = False) -> list[str | None]:
    """The content keys under which a copy of ``s`` may be listed, best first
    (``rewritten``: the key of the copy a server rewrote, rule 5)."""
    if rewritten:
        return [key for key, _ in s.rewrites]
    if not exact:
        return [s.fp]
    return [s.digest, s.origin_key]


def _dest_keys(d: Item, exact: bool) -> list[str | None]:
    if not exact:
        return [d.fp]
    return [d.digest, d.served_digest]


def _pair_by_content(src: list[Item], dst: list[Item], exact: bool, features: StoreFeatures,
                     taken: set[int], *, rewritten: bool = False) -> list[_Pair]:
    """Rule 2 (``rewritten``: rule 5): pair by content, agreeing twins first over the
    whole folder."""
    pool: dict[str, list[Item]] = defaultdict(list)
    for d in dst:
        for k in _dest_keys(d, exact):
            if k:
                pool[k].append(d)
    out: list[_Pair] = []
    for agreeing_only in (True, False):
        for s in sorted(src, key=lambda i: i.uid):
            if any(p.src is s for p in out):
                continue
            for k in _keys(s, exact, rewritten):
                live = [c for c in pool.get(k or "", ()) if id(c) not in taken]
                pick = next((c for c in live if judge(s, c, features)[0] is None), None)
                if pick is None and not agreeing_only and live:
                    pick = live[0]
                if pick is not None:
                    taken.add(id(pick))
                    out.append(_Pair(s, pick, False,
                                     _rewritten(s, pick, exact) if rewritten else None))
                    break
    return out


def _swap_twins(pairs: list[_Pair], exact: bool, features: StoreFeatures) -> None:
    """Rule 3: swap the copies of two twins when that makes both agree."""
    groups: dict[str | None, list[_Pair]] = defaultdict(list)
    for p in pairs:
        groups[_keys(p.src, exact)[0]].append(p)
    for group in groups.values():
        if len(group) < 2:
            continue
        for a in group:
            if judge(a.src, a.dst, features)[0] is None:
                continue
            for b in group:
                if b is a or judge(a.src, b.dst, features)[0] or judge(b.src, a.dst, features)[0]:
                    continue
                a.dst, b.dst = b.dst, a.dst
                break


def judge(s: Item, d: Item, features: StoreFeatures) -> tuple[str | None, str | None]:
    """Return (what differs or None, date note) for a pair (rule 4)."""
    out = []
    sf, df = comparable_flags(s.flags, features), comparable_flags(d.flags, features)
    if sf != df:
        out.append(f"flags {sorted(sf)} != {sorted(df)}")
    note = None
    if s.date and d.date:
        tolerance = features.date_tolerance_s
        if abs((s.date - d.date).total_seconds()) >= tolerance:
            if features.dates_from_headers and s.header_date is not None and abs(
                    (s.header_date - d.date).total_seconds()) < tolerance:
                note = "from_headers"
            elif features.dates_from_headers and s.header_date is None:
                note = "not_kept"
            else:
                out.append(f"date {s.date.isoformat()} != {d.date.isoformat()}")
    return "; ".join(out) or None, note


def problem(kind: str, folder: str, s: Item, detail: str | None) -> dict[str, Any]:
    """One entry of the report's problem list."""
    return {"kind": kind, "folder": folder, "uid": s.uid, "subject": s.subject,
            "date": s.date.isoformat() if s.date else None, "size": s.size, "detail": detail}
