"""Decide what to do for one folder. Pure: listings and state in, a plan out.

The rules, in order, for every source message the filters select:
1. recorded in state as done: nothing to copy; if its flags changed, a flag update;
2. otherwise, matched by fingerprint to a destination message that state does not
   know (an earlier run whose answer was lost, a lost state file, another tool): adopt
   it, never copy it again. Matching counts copies, so two identical source messages
   need two destination messages; among identical ones, the one with the same flags
   (and date) is adopted first. A message the destination server rewrote (8-bit header
   bytes replaced, line ends made CRLF) is paired by its loose fingerprint when its
   stored size is plausible for such a rewrite (no smaller, at most twice the size);
3. too large for the destination: skip, with the reason;
4. otherwise: copy.
Applying a plan and planning again yields an empty plan (tested with Hypothesis).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from mailtrek.fingerprint import fingerprint_fields
from mailtrek.model import MessageMeta, portable_flags
from mailtrek.state.db import MessageState
from mailtrek.stores.base import FlagChange
from mailtrek.sync.filters import message_date_selected
from mailtrek.sync.options import CopyOptions

_NO_FIELDS = fingerprint_fields({})  # the fingerprint of a message without those fields


@dataclass(slots=True)
class FolderPlan:
    """What to do for one folder."""

    copy: list[MessageMeta] = field(default_factory=list)
    adopt: list[tuple[MessageMeta, MessageMeta]] = field(default_factory=list)  # (src, dest)
    flags: list[tuple[int, FlagChange]] = field(default_factory=list)  # (src uid, change)
    skip: list[tuple[MessageMeta, str]] = field(default_factory=list)
    already: int = 0  # selected messages known to be on the destination
    selected: int = 0

    @property
    def empty(self) -> bool:
        return not (self.copy or self.adopt or self.flags)

    @property
    def copy_bytes(self) -> int:
        return sum(m.size for m in self.copy)


def plan_folder(
    source: list[MessageMeta],
    recorded: dict[int, MessageState],
    dest_unknown: list[MessageMeta],
    options: CopyOptions,
    *,
    max_size: int | None,
    exact_mime: bool,
    sync_flags: bool = True,
) -> FolderPlan:
    """Plan one folder.

    ``source`` lists the source folder (fingerprints needed only on messages not in
    ``recorded`` and only when ``dest_unknown`` is not empty). ``dest_unknown`` lists the
    destination messages that state does not know, with fingerprints.
    """
    plan = FolderPlan()
    pool: dict[tuple[str | None, int | None], list[MessageMeta]] = defaultdict(list)
    loose: dict[str, list[MessageMeta]] = defaultdict(list)
    taken: set[int] = set()
    for d in dest_unknown:
        if d.fingerprint is not None:
            pool[_key(d, exact_mime)].append(d)
        if d.loose_fingerprint is not None:
            loose[d.loose_fingerprint].append(d)
    rest: list[MessageMeta] = []
    for m in sorted(source, key=lambda x: x.uid):
        if not message_date_selected(m, options.since, options.before):
            continue
        plan.selected += 1
        rec = recorded.get(m.uid)
        if rec is not None and rec.status == "done":
            plan.already += 1
            want = portable_flags(m.flags)
            if sync_flags and rec.dest_id is not None and want != rec.flags:
                plan.flags.append((m.uid, FlagChange(rec.dest_id, want, rec.flags)))
            continue
        if pool and m.fingerprint is not None:
            found = _take(pool.get(_key(m, exact_mime)), taken, lambda d: True, twin_of=m)
            if found is not None:
                plan.adopt.append((m, found))
                continue
        rest.append(m)
    # Loose pairs only after every exact pair is made, so a rewritten copy never takes
    # the place of an exact one; a message with none of the fingerprint fields pairs only
    # with the size it had or that size plus the CRLF Courier adds (many look alike).
    for m in rest:
        if loose and m.loose_fingerprint is not None:
            found = _take(loose.get(m.loose_fingerprint), taken,
                          _rewrite_fits(m.size, bare=m.loose_fingerprint == _NO_FIELDS),
                          twin_of=m)
            if found is not None:
                plan.adopt.append((m, found))
                continue
        if max_size is not None and m.size > max_size:
            plan.skip.append((m, f"larger than the {_mb(max_size)} limit ({_mb(m.size)})"))
            continue
        plan.copy.append(m)
    return plan


def limit_items(plans: list[FolderPlan], max_items: int | None, recorded_total: int) -> None:
    """Keep a mailbox under ``max_items``: skip the oldest planned copies beyond it."""
    if max_items is None:
        return
    room = max_items - recorded_total - sum(len(p.adopt) for p in plans)
    planned = [(m, p) for p in plans for m in p.copy]
    if len(planned) <= max(room, 0):
        return
    planned.sort(key=lambda mp: (mp[0].internaldate is not None, mp[0].internaldate), reverse=True)
    drop = {id(m) for m, _ in planned[max(room, 0):]}
    for p in plans:
        keep = []
        for m in p.copy:
            if id(m) in drop:
                p.skip.append((m, f"over the {max_items:,} items per mailbox limit (newest kept)"))
            else:
                keep.append(m)
        p.copy = keep


def _rewrite_fits(size: int, *, bare: bool) -> Callable[[MessageMeta], bool]:
    """Whether a destination message's size fits a server rewrite of ``size`` bytes."""
    if bare:
        return lambda d: d.size in (size, size + 2)
    return lambda d: size <= d.size <= 2 * size + 2


def _take(candidates: list[MessageMeta] | None, taken: set[int],
          fits: Callable[[MessageMeta], bool], *, twin_of: MessageMeta) -> MessageMeta | None:
    """The candidate not paired yet that ``fits`` and looks most like ``twin_of``.

    Among identical messages (twins) one with the same flags and date is taken first, else
    one with the same flags, else the first; the one taken is marked paired.
    """
    free = [d for d in candidates or () if id(d) not in taken and fits(d)]
    if not free:
        return None
    want = portable_flags(twin_of.flags)
    best = next((d for d in free if portable_flags(d.flags) == want
                 and d.internaldate == twin_of.internaldate),
                next((d for d in free if portable_flags(d.flags) == want), free[0]))
    taken.add(id(best))
    return best


def _key(m: MessageMeta, exact_mime: bool) -> tuple[str | None, int | None]:
    return (m.fingerprint, m.size if exact_mime else None)


def _mb(n: int) -> str:
    return f"{n / 1024 / 1024:.1f} MB"
