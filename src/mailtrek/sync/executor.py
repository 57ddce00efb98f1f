"""Carry out one folder's plan: stream bodies from the source into the destination.

Several source connections each FETCH a slice of the folder; every message is handed
to the destination as soon as it has arrived, without waiting for earlier APPENDs to
be answered (the destination store pipelines them). A byte window bounds memory.
Copy first, record second: a message is recorded only once the destination confirmed
it. A lost answer leaves the message "in doubt"; the engine then plans the folder
again, which finds it on the destination by fingerprint instead of copying it twice.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from mailtrek.errors import QuotaExceededError, ThrottledError, TransientError
from mailtrek.fingerprint import fingerprint, parse_header_fields
from mailtrek.model import FolderInfo, Message, MessageMeta, portable_flags
from mailtrek.state.db import MailboxState, MessageState
from mailtrek.stores.base import DestinationStore, FlagChange, SourceStore
from mailtrek.sync.flagsets import comparable_flags
from mailtrek.sync.options import ChangedItem
from mailtrek.sync.planner import FolderPlan

log = logging.getLogger("mailtrek.sync")

# Bytes fetched but not yet confirmed by the destination, over all folders of one mailbox
# (one window per copy, not per folder: four folders at once used to hold 4 x 32 MB).
WINDOW_BYTES = 16 << 20  # ~0.4 s of a fast link: plenty above bandwidth x RTT


@dataclass(slots=True)
class FolderOutcome:
    """What happened while executing one folder's plan."""

    copied: int = 0
    bytes: int = 0
    adopted: int = 0
    flags_updated: int = 0
    rejected: list[tuple[Message, str]] = field(default_factory=list)
    in_doubt: int = 0  # appends whose answer was lost
    # The first retryable failure, if any; a throttling answer wins over others, since
    # its back-off (retry_after) is what the engine must wait before the next pass.
    transient: Exception | None = None
    transient_at: float | None = None  # event-loop time it happened (a back-off starts then)
    notes: list[ChangedItem] = field(default_factory=list)  # copied, but changed on the way

    def note_transient(self, e: Exception) -> None:
        """Remember a retryable failure: the first one, or the first throttling one."""
        if self.transient is None or (isinstance(e, ThrottledError)
                                      and not isinstance(self.transient, ThrottledError)):
            self.transient = e
            self.transient_at = asyncio.get_running_loop().time()


class ByteWindow:
    """An async byte budget: acquire before fetching on, release when confirmed."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._cond = asyncio.Condition()

    async def acquire(self, n: int) -> None:
        async with self._cond:
            # A message bigger than the window still goes, alone.
            await self._cond.wait_for(lambda: self.used == 0 or self.used + n <= self.limit)
            self.used += n

    async def release(self, n: int) -> None:
        async with self._cond:
            self.used -= n
            self._cond.notify_all()


async def execute_folder(
    source: SourceStore,
    dest: DestinationStore,
    src_folder: FolderInfo,
    dest_folder: FolderInfo,
    plan: FolderPlan,
    state: MailboxState,
    *,
    slices: int = 4,
    on_message: Callable[[int], None] | None = None,
    max_size: int | None = None,
    window: ByteWindow | None = None,
) -> FolderOutcome:
    """Run ``plan`` for one folder. Never raises for per-item or retryable problems.

    ``window`` bounds the bytes in flight; the engine shares one over all folders.

    A message that arrives bigger than ``max_size`` (whatever the listing said) is
    skipped and reported like one the plan skipped. Raises QuotaExceededError (mailbox
    full) and non-retryable store errors.
    """
    out = FolderOutcome()
    uidv = src_folder.uidvalidity
    if plan.adopt:
        rows = []
        # Adopted items carry the destination's flags; bring them in line with the source,
        # except for flags this destination cannot hold (updating those would change
        # nothing, on every run).
        for s, d in plan.adopt:
            want, have = portable_flags(s.flags), portable_flags(d.flags)
            same = comparable_flags(want, dest.features) == comparable_flags(have, dest.features)
            rows.append(MessageState(s.uid, d.store_id or str(d.uid), s.fingerprint, s.size,
                                     want if same else have))
            if not same:
                plan.flags.append((s.uid, FlagChange(d.store_id or str(d.uid), want)))
        state.record(src_folder.path, uidv, rows)
        out.adopted = len(plan.adopt)
    if plan.copy:
        await _copy(source, dest, src_folder, dest_folder, plan.copy, state, out, slices,
                    on_message, max_size, window or ByteWindow(WINDOW_BYTES))
    if plan.flags and out.transient is None:
        try:
            await dest.set_flags(dest_folder, [c for _, c in plan.flags])
        except TransientError as e:
            out.note_transient(e)
        else:
            await state.call(state.update_flags, src_folder.path, uidv,
                             [(uid, c.flags) for uid, c in plan.flags])
            out.flags_updated = len(plan.flags)
    await state.aflush()
    return out


async def _copy(
    source: SourceStore,
    dest: DestinationStore,
    src_folder: FolderInfo,
    dest_folder: FolderInfo,
    todo: list[MessageMeta],
    state: MailboxState,
    out: FolderOutcome,
    slices: int,
    on_message: Callable[[int], None] | None,
    max_size: int | None = None,
    window: ByteWindow | None = None,
) -> None:
    window = window or ByteWindow(WINDOW_BYTES)
    pending: set[asyncio.Task[None]] = set()
    stop = asyncio.Event()
    uidv = src_folder.uidvalidity
    # Write the intent first: should this process die with APPENDs in flight, the next
    # run knows the destination may still be taking them in, and waits for it to settle
    # before it looks (see engine._settle).
    state.record(src_folder.path, uidv, [
        MessageState(m.uid, None, None, m.size, frozenset(), status="in_doubt") for m in todo])
    await state.aflush()

    async def append_one(msg: Message) -> None:
        try:
            res = await dest.append(dest_folder, msg)
        except QuotaExceededError:
            stop.set()
            raise
        except TransientError as e:
            out.in_doubt += 1
            out.note_transient(e)
            stop.set()
            return
        finally:
            await window.release(msg.size)
        if res.ok:
            fp = fingerprint(msg.raw)
            stored = res.extra.get("flags_stored")
            flags = stored if isinstance(stored, frozenset) else portable_flags(msg.flags)
            state.record(src_folder.path, uidv, [
                MessageState(msg.uid, res.dest_id, fp, msg.size, flags)])
            if isinstance(stored, frozenset):  # a flag is still to be set: another pass
                out.note_transient(TransientError(
                    f"flags of message {msg.uid} are set on the next pass"))
            out.copied += 1
            out.bytes += msg.size
            note = res.extra.get("note")
            if note:
                out.notes.append(ChangedItem(
                    msg.uid, _subject(msg.raw), str(note), bool(res.extra.get("lossy")),
                    _opt(res.extra.get("date_source")), _opt(res.extra.get("date_dest"))))
            if on_message:
                on_message(msg.size)
        elif res.in_doubt:
            out.in_doubt += 1
        else:
            out.rejected.append((_light(msg), res.error or "refused"))

    sizes = {m.uid: m.size for m in todo}

    async def run_slice(uids: list[int]) -> None:
        try:
            async for msg in source.fetch(src_folder, uids, sizes, max_size=max_size):
                if stop.is_set():
                    return
                if "too_large" in msg.extra:  # the listing understated it: never held
                    out.rejected.append((_light(msg), _too_large(msg, sizes.get(msg.uid))))
                    continue
                await window.acquire(msg.size)
                t = asyncio.create_task(append_one(msg))
                pending.add(t)
                t.add_done_callback(pending.discard)
        except TransientError as e:
            out.note_transient(e)
            stop.set()

    groups = _slices(todo, max(1, slices))
    results = await asyncio.gather(*(run_slice(g) for g in groups), return_exceptions=True)
    while pending:
        done = await asyncio.gather(*list(pending), return_exceptions=True)
        results.extend(done)
    await state.call(state.forget_messages, src_folder.path, uidv,
                     [m.uid for m, _ in out.rejected])
    for r in results:
        if isinstance(r, BaseException):
            if isinstance(r, TransientError):
                out.note_transient(r)
            else:
                await state.aflush()
                raise r


def _slices(todo: list[MessageMeta], n: int) -> list[list[int]]:
    """Cut the work into ``n`` interleaved slices of about equal bytes."""
    if len(todo) <= 1 or n == 1:
        return [[m.uid for m in todo]] if todo else []
    # Deal messages round-robin in UID order in groups, so each slice streams steadily.
    buckets: list[list[int]] = [[] for _ in range(n)]
    sizes = [0] * n
    for m in sorted(todo, key=lambda x: x.uid):
        i = min(range(n), key=sizes.__getitem__)
        buckets[i].append(m.uid)
        sizes[i] += m.size
    return [b for b in buckets if b]


def _too_large(msg: Message, listed: int | None) -> str:
    sent = int(msg.extra["too_large"])  # type: ignore[call-overload]
    return (f"larger than the limit: the source sent {sent:,} bytes"
            + (f" for a message it listed as {listed:,}" if listed is not None else ""))


def _subject(raw: bytes) -> str | None:
    """The raw Subject field of a message, for reports (not decoded: as the source has it)."""
    head = raw[:16384]
    fields = parse_header_fields(head.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0])
    subj = fields.get("SUBJECT")
    return subj.decode("utf-8", "replace") if subj else None


def _light(msg: Message) -> Message:
    """Keep what a report needs of a refused message, not its body."""
    m = Message(uid=msg.uid, raw=b"", flags=msg.flags, internaldate=msg.internaldate)
    m.extra["size"] = msg.extra.get("too_large", msg.size)
    m.extra["subject"] = _subject(msg.raw)
    return m


def _opt(value: object) -> str | None:
    return None if value is None else str(value)
