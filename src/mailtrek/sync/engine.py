"""Copy one mailbox: list both sides, plan every folder, execute, record.

The run is idempotent: a folder whose source status (UIDVALIDITY, UIDNEXT, message
count, HIGHESTMODSEQ) is unchanged since a complete pass costs nothing but its line in
one LIST. Retryable failures (a dropped connection, a throttled service) re-plan the
affected folders, up to ``ATTEMPTS`` times with back-off; re-planning is what makes a
lost APPEND answer harmless (see ``planner``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from mailtrek.errors import (
    MailtrekError,
    QuotaExceededError,
    StoreError,
    ThrottledError,
    TransientError,
)
from mailtrek.model import FolderInfo, MessageMeta
from mailtrek.state.db import FolderState, MailboxState
from mailtrek.stores.base import DestinationStore, SourceStore
from mailtrek.sync.executor import WINDOW_BYTES, ByteWindow, execute_folder
from mailtrek.sync.filters import folder_selected
from mailtrek.sync.mapping import FolderMapping, map_folders, placeholder_mappings, visible
from mailtrek.sync.options import CopyOptions, CopyReport, FolderReport, SkippedItem
from mailtrek.sync.planner import FolderPlan, limit_items, plan_folder

log = logging.getLogger("mailtrek.sync")

# progress(event, **fields): "plan" (folders, messages, bytes), "folder" (name),
# "message" (size), "retry" (attempt, wait, reason, throttled: before another pass), "done"
ProgressCallback = Callable[..., None]

ATTEMPTS = 5
MAX_THROTTLE_WAIT = 600.0  # seconds; a longer Retry-After ends the run (re-run later)
SETTLE_STEP = 1.0  # seconds between two looks at a folder that may still be filling
SETTLE_MAX = 30.0
BACKOFF = (0.5, 1.0, 2.0, 4.0, 8.0)
LISTINGS_PER_CONNECTION = 8  # folders analysed at once, per connection
FOLDERS_PER_CONNECTION = 2  # folders copied at once, per connection


@dataclass(slots=True)
class _Throttle:
    """The latest end of a back-off a service asked for during one pass.

    Kept as a point in time, not a duration: a folder may finish well after it was
    throttled, and the wait counts from the answer, not from the end of the pass.
    """

    error: ThrottledError | None = None
    until: float = 0.0  # event-loop time

    def note(self, e: BaseException | None, at: float | None = None) -> None:
        """Remember ``e`` (answered at loop time ``at``, default now) if it is a throttling
        answer that asks for a longer quiet than noted so far."""
        if not isinstance(e, ThrottledError) or not e.retry_after:
            return
        start = asyncio.get_running_loop().time() if at is None else at
        until = start + min(e.retry_after, MAX_THROTTLE_WAIT)
        if self.error is None or until > self.until:
            self.error, self.until = e, until

    def remaining(self) -> float:
        """Seconds still to wait (0 when nothing asked for a back-off)."""
        if self.error is None:
            return 0.0
        return max(0.0, self.until - asyncio.get_running_loop().time())


@dataclass(slots=True)
class _Work:
    """One folder's analysis: everything the executor needs."""

    mapping: FolderMapping
    source: FolderInfo
    fstate: FolderState
    dest: FolderInfo | None
    plan: FolderPlan
    report: FolderReport


async def copy_mailbox(
    source: SourceStore,
    dest: DestinationStore,
    state: MailboxState,
    options: CopyOptions,
    *,
    progress: ProgressCallback | None = None,
) -> CopyReport:
    """Copy every selected message of ``source`` to ``dest`` exactly once.

    Both stores must be connected. Idempotent: a re-run copies only what is missing
    and re-syncs changed flags. Raises AuthenticationError/ConnectionFailedError (and
    QuotaExceededError) for problems that stop the whole mailbox; per-item problems
    end up in ``CopyReport.skipped``.
    """
    emit = progress or (lambda *a, **k: None)
    report = CopyReport(source="", destination="", started=datetime.now(UTC),
                        dry_run=options.dry_run)
    reports: dict[tuple[str, ...], FolderReport] = {}
    skipped: dict[tuple[tuple[str, ...], int], SkippedItem] = {}
    retry: set[tuple[str, ...]] | None = None  # None: every folder
    for attempt in range(ATTEMPTS):
        throttle = _Throttle()
        try:
            unfinished = await _pass(source, dest, state, options, reports, skipped, retry,
                                     emit, throttle, first=attempt == 0)
        except TransientError as e:
            unfinished = None
            throttle.note(e)
            last: MailtrekError = e
            log.warning("pass %d failed: %s; retrying", attempt + 1, e)
        else:
            if not unfinished:
                break
            # A folder that was throttled says so, with the back-off the service asked for.
            last = throttle.error or TransientError(
                f"{len(unfinished)} folder(s) hit a retryable failure")
            retry = unfinished
        if attempt + 1 < ATTEMPTS:
            wait = max(BACKOFF[attempt], throttle.remaining())  # the server's word counts
            log.info("pass %d unfinished (%s); next pass in %.1f s", attempt + 1, last, wait)
            emit("retry", attempt=attempt + 1, wait=wait, reason=str(last),
                 throttled=throttle.error is not None)
            await asyncio.sleep(wait)
    else:
        report.errors.append(f"gave up after {ATTEMPTS} attempts: {last}")
    await state.aflush()
    report.folders = list(reports.values())
    report.errors += [f"folder {f.source}: {f.error}" for f in report.folders if f.error]
    report.skipped = sorted(skipped.values(), key=lambda s: (s.folder, s.uid))
    report.finished = datetime.now(UTC)
    emit("done")
    return report


async def _pass(
    source: SourceStore,
    dest: DestinationStore,
    state: MailboxState,
    options: CopyOptions,
    reports: dict[tuple[str, ...], FolderReport],
    skipped: dict[tuple[tuple[str, ...], int], SkippedItem],
    only: set[tuple[str, ...]] | None,
    emit: ProgressCallback,
    throttle: _Throttle,
    *,
    first: bool,
) -> set[tuple[str, ...]]:
    """One planning + execution pass. Returns the folders that need another pass.

    A throttling answer a folder got is noted in ``throttle`` (its back-off is waited
    before the next pass); one that stops the whole pass is raised.
    """
    src_folders, dest_folders = await asyncio.gather(source.list_folders(), dest.list_folders())
    mappings = [
        m for m in map_folders(src_folders, dest.features, dest_root=options.dest_root)
        if folder_selected(m.source, options.include, options.exclude)
        and (only is None or m.source.path in only)
    ]
    for m in [m for m in mappings if m.refused_because]:
        mappings.remove(m)
        reports[m.source.path] = _refused(m)
    fstates = await state.call(state.folder_states)
    max_size = _min(options.max_size, dest.features.max_message_size)

    # Analyse folders concurrently: a store pipelines the listings of several folders on
    # one connection, so a few per connection cost one round trip, not one each.
    sem = asyncio.Semaphore(max(1, options.connections) * LISTINGS_PER_CONNECTION)

    async def analyse(m: FolderMapping) -> _Work:
        async with sem:
            return await _analyse(source, dest, state, m, fstates, dest_folders, options, max_size)

    works = list(await asyncio.gather(*(analyse(m) for m in mappings)))
    recorded_total = await state.call(state.count)
    limit_items([w.plan for w in works], options.max_items, recorded_total)
    for w in works:
        reports[w.source.path] = _merge(reports.get(w.source.path), w)
        for meta, reason in w.plan.skip:
            skipped[(w.source.path, meta.uid)] = _skipped(w.source, meta, reason)
    if first:
        emit("plan", folders=len(works), messages=sum(len(w.plan.copy) for w in works),
             bytes=sum(w.plan.copy_bytes for w in works))
    if options.dry_run:
        return set()

    unfinished: set[tuple[str, ...]] = set()

    async def ensure(w: _Work) -> None:
        try:
            w.dest = await dest.ensure_folder(w.mapping.dest_path, w.mapping.special_use)
            w.report.destination = w.dest.display
            w.report.created = True
            w.report.error = None
        except StoreError as e:
            w.report.error = str(e)
            w.report.failed += len(w.plan.copy)

    # Every missing destination folder at once (pipelined), empty ones too (the tree
    # arrives whole), then the folders' copies side by side: one folder's round trips
    # and fsyncs overlap another's.
    await asyncio.gather(*(ensure(w) for w in works if w.dest is None))
    await _ensure_placeholders(dest, options, src_folders, dest_folders, mappings, reports)
    todo = []
    for w in works:
        if w.plan.empty and w.dest is not None:
            await state.call(_mark_complete, state, w)
        elif not w.plan.empty:
            todo.append(w)
    todo = sorted((w for w in todo if w.dest is not None), key=lambda w: -w.plan.copy_bytes)
    total = sum(w.plan.copy_bytes for w in todo) or 1
    width = max(1, options.connections)
    # Twice as many folders as connections at once: a small folder's few round trips do
    # not wait for a big one to end (the byte window, not the gate, bounds memory).
    gate = asyncio.Semaphore(width * FOLDERS_PER_CONNECTION)
    window = ByteWindow(WINDOW_BYTES)  # one budget of bytes in flight for every folder

    async def run(w: _Work) -> None:
        async with gate:
            emit("folder", name=w.source.display, messages=len(w.plan.copy))
            share = round(width * w.plan.copy_bytes / total)  # about width readers in all
            assert w.dest is not None
            outcome = await execute_folder(
                source, dest, w.source, w.dest, w.plan, state,
                slices=max(1, min(width, share)),
                on_message=lambda size: emit("message", size=size),
                max_size=max_size, window=window,
            )
        r = w.report
        r.copied += outcome.copied
        r.adopted += outcome.adopted
        r.bytes_copied += outcome.bytes
        r.flags_updated += outcome.flags_updated
        r.notes.extend(outcome.notes)
        throttle.note(outcome.transient, outcome.transient_at)
        for msg, reason in outcome.rejected:
            subject = msg.extra.get("subject")
            skipped[(w.source.path, msg.uid)] = SkippedItem(
                folder=w.source.display, uid=msg.uid,
                subject=subject if isinstance(subject, str) else None,
                date=msg.internaldate.isoformat() if msg.internaldate else None,
                size=int(msg.extra.get("size", 0) or 0),  # type: ignore[call-overload]
                reason=reason,
            )
        if outcome.transient is not None or outcome.in_doubt:
            unfinished.add(w.source.path)
        elif not outcome.rejected:
            await state.call(_mark_complete, state, w)

    results = await asyncio.gather(*(run(w) for w in todo), return_exceptions=True)
    await state.aflush()
    for res in results:
        if isinstance(res, BaseException):
            raise res
    _recount(reports, skipped)
    return unfinished


async def _ensure_placeholders(
    dest: DestinationStore, options: CopyOptions, src_folders: list[FolderInfo],
    dest_folders: list[FolderInfo], mappings: list[FolderMapping],
    reports: dict[tuple[str, ...], FolderReport],
) -> None:
    """Create the source's ``\\Noselect`` folders that no copied folder brings along.

    A parent with copied children arrives with them (the destination makes it, or
    holds it implicitly); one left without children would vanish, so it is created as
    an ordinary, empty folder and reported as such.
    """
    for m in placeholder_mappings(src_folders, mappings, dest_folders, dest.features,
                                  dest_root=options.dest_root):
        if not folder_selected(m.source, options.include, options.exclude):
            continue
        if m.refused_because:
            reports[m.source.path] = _refused(m)
            continue
        r = reports.get(m.source.path) or FolderReport(
            source=m.source.display, destination="/".join(m.dest_path),
            renamed=m.renamed_because)
        reports[m.source.path] = r
        try:
            created = await dest.ensure_folder(m.dest_path, None)
            r.destination, r.created = created.display, True
        except StoreError as e:
            r.error = str(e)


def _refused(m: FolderMapping) -> FolderReport:
    """The report of a folder the mapping refused (its name shown with escapes)."""
    return FolderReport(source=visible(m.source.display), destination=None,
                        error=f"not copied: {m.refused_because}")


async def _analyse(
    source: SourceStore,
    dest: DestinationStore,
    state: MailboxState,
    m: FolderMapping,
    fstates: dict[tuple[str, ...], FolderState],
    dest_folders: list[FolderInfo],
    options: CopyOptions,
    max_size: int | None,
) -> _Work:
    src = m.source
    fs = fstates.get(src.path) or FolderState(src_path=src.path)
    dest_folder = _find_dest(dest, dest_folders, m)
    report = FolderReport(source=src.display,
                          destination=dest_folder.display if dest_folder else "/".join(m.dest_path),
                          renamed=m.renamed_because)
    if fs.src_uidvalidity is not None and fs.src_uidvalidity != src.uidvalidity:
        # The folder was recreated on the source: match again by fingerprint.
        await state.call(state.forget_folder, src.path, fs.src_uidvalidity)
        fs = FolderState(src_path=src.path)
    if dest_folder and fs.dest_uidvalidity is not None and (
            dest_folder.uidvalidity != fs.dest_uidvalidity):
        await state.call(state.forget_folder, src.path)  # destination ids are void
        fs = FolderState(src_path=src.path)
    if _unchanged(fs, src, dest_folder, options):
        plan = FolderPlan(already=src.messages or 0, selected=src.messages or 0)
        return _Work(m, src, fs, dest_folder, plan, report)

    recorded = await state.call(state.messages_of, src.path, src.uidvalidity)
    if dest_folder is not None and any(r.status == "in_doubt" for r in recorded.values()):
        dest_folder = await _settle(dest, dest_folder)
    listing = await source.list_messages(src) if src.messages != 0 else []
    pending = [x for x in listing if x.uid not in recorded or recorded[x.uid].status != "done"]
    dest_unknown: list[MessageMeta] = []
    if pending and dest_folder is not None and dest_folder.messages != 0:
        dest_listing = await dest.list_messages(dest_folder)
        known = await state.call(_known_dest_ids, state, fstates, m, src, recorded)
        unknown_ids = [d.uid for d in dest_listing if (d.store_id or str(d.uid)) not in known]
        if unknown_ids:
            if dest.features.lists_named_uids:
                dest_unknown = await dest.list_messages(dest_folder, fingerprints=True,
                                                        uids=unknown_ids)
            else:
                dest_unknown = await dest.list_messages(dest_folder, fingerprints=True)
                dest_unknown = [d for d in dest_unknown if (d.store_id or str(d.uid)) not in known]
            fps = await source.list_messages(src, fingerprints=True, uids=[x.uid for x in pending])
            by_uid = {x.uid: x for x in fps}
            for x in pending:
                f = by_uid.get(x.uid)
                if f is not None:
                    x.fingerprint, x.subject, x.message_id = f.fingerprint, f.subject, f.message_id
                    x.loose_fingerprint = f.loose_fingerprint
    plan = plan_folder(listing, recorded, dest_unknown, options, max_size=max_size,
                       exact_mime=dest.features.exact_mime, sync_flags=options.sync_flags)
    if plan.skip and any(s.subject is None for s, _ in plan.skip):
        subjects = await source.list_messages(src, fingerprints=True,
                                              uids=[s.uid for s, _ in plan.skip])
        subject_of = {x.uid: x.subject for x in subjects}
        for s, _ in plan.skip:
            s.subject = s.subject or subject_of.get(s.uid)
    fs.src_uidvalidity = src.uidvalidity
    return _Work(m, src, fs, dest_folder, plan, report)


async def _settle(dest: DestinationStore, folder: FolderInfo) -> FolderInfo:
    """Wait until a destination folder stops growing; return its fresh status.

    An earlier run died with appends in flight: the server may still be storing the
    commands it had already received. Looking before it is done would copy them again.
    """
    last: tuple[int | None, int | None] | None = None
    fresh = folder
    deadline = asyncio.get_running_loop().time() + SETTLE_MAX
    while True:
        found = [f for f in await dest.list_folders() if f.path == folder.path]
        fresh = found[0] if found else folder
        now = (fresh.uidnext, fresh.messages)
        if now == last or asyncio.get_running_loop().time() > deadline:
            return fresh
        last = now
        await asyncio.sleep(SETTLE_STEP)


def _unchanged(fs: FolderState, src: FolderInfo, dest: FolderInfo | None,
               options: CopyOptions) -> bool:
    """True when a complete earlier pass saw this very source status."""
    if not fs.complete or dest is None or src.uidvalidity is None:
        return False
    if fs.dest_uidvalidity != dest.uidvalidity:
        return False
    if src.highestmodseq is None and options.sync_flags:
        return False  # without CONDSTORE flag changes are invisible in STATUS
    return (fs.src_uidvalidity, fs.src_uidnext, fs.src_messages, fs.src_highestmodseq) == (
        src.uidvalidity, src.uidnext, src.messages, src.highestmodseq)


def _find_dest(dest: DestinationStore, folders: list[FolderInfo], m: FolderMapping
               ) -> FolderInfo | None:
    if m.special_use is not None:
        for f in folders:
            if f.special_use == m.special_use and f.selectable:
                return f
    ci = dest.features.case_insensitive_names
    want = tuple(p.lower() for p in m.dest_path) if ci else m.dest_path
    for f in folders:
        path = tuple(p.lower() for p in f.path) if ci else f.path
        if path == want and f.selectable:
            return f
    return None


def _known_dest_ids(state: MailboxState, fstates: dict[tuple[str, ...], FolderState],
                    m: FolderMapping, src: FolderInfo, recorded: dict) -> set[str]:  # type: ignore[type-arg]
    """Destination ids that state knows, for every source folder mapped to this one."""
    known = {r.dest_id for r in recorded.values() if r.dest_id}
    for path, fs in fstates.items():
        if path != src.path and fs.dest_path == m.dest_path:
            known |= {r.dest_id for r in state.messages_of(path, fs.src_uidvalidity).values()
                      if r.dest_id}
    return known


def _mark_complete(state: MailboxState, w: _Work) -> None:
    fs = w.fstate
    fs.src_uidvalidity = w.source.uidvalidity
    fs.src_uidnext = w.source.uidnext
    fs.src_messages = w.source.messages
    fs.src_highestmodseq = w.source.highestmodseq
    if w.dest is not None:
        fs.dest_path = w.mapping.dest_path
        fs.dest_uidvalidity = w.dest.uidvalidity
        fs.dest_store_id = w.dest.store_id
    fs.complete = not w.plan.skip and w.dest is not None
    state.save_folder(fs)


def _merge(prev: FolderReport | None, w: _Work) -> FolderReport:
    r = w.report
    r.selected = w.plan.selected
    r.already = w.plan.already
    r.planned = len(w.plan.copy)
    r.planned_bytes = w.plan.copy_bytes
    if prev is not None:  # a retry pass: keep what earlier passes did
        r.copied, r.adopted = prev.copied, prev.adopted
        r.created = r.created or prev.created
        r.bytes_copied, r.flags_updated = prev.bytes_copied, prev.flags_updated
        r.notes = prev.notes
        r.already = max(0, r.already - prev.copied - prev.adopted)
    return r


def _recount(reports: dict[tuple[str, ...], FolderReport],
             skipped: dict[tuple[tuple[str, ...], int], SkippedItem]) -> None:
    for path, r in reports.items():
        r.skipped = sum(1 for (p, _u) in skipped if p == path)


def _skipped(folder: FolderInfo, meta: MessageMeta, reason: str) -> SkippedItem:
    return SkippedItem(
        folder=folder.display, uid=meta.uid, subject=meta.subject,
        date=meta.internaldate.isoformat() if meta.internaldate else None,
        size=meta.size, reason=reason,
    )


def _min(a: int | None, b: int | None) -> int | None:
    vals = [x for x in (a, b) if x is not None]
    return min(vals) if vals else None


__all__ = ["ProgressCallback", "QuotaExceededError", "copy_mailbox"]
