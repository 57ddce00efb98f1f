"""A Gmail mailbox as a source store: a virtual view over a connected IMAP source.

``GmailSource`` wraps an ``ImapStore`` and presents, for one label strategy (see
``labels``), the folders and messages the copy engine should copy: each presented
folder keeps its real folder's path, UIDs and UIDVALIDITY, so ``fetch`` simply reads
the real folder, and the same mailbox always gives the same view (re-runs add nothing).

Identity across folders: X-GM-MSGID where the server offers X-GM-EXT-1 (labels then
come from X-GM-LABELS as well, which shows labels hidden from IMAP); otherwise the
fingerprint + size, so a server that only looks like Gmail is handled too.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Hashable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from imapclient import imap_utf7

from mailtrek.model import FolderInfo, Message, MessageMeta
from mailtrek.stores.gmail.labels import (
    FolderView,
    Member,
    Role,
    Strategy,
    View,
    plan_view,
    role_of,
)
from mailtrek.stores.gmail.pacing import Deferral, DownloadBudget, cut_to_budget
from mailtrek.stores.imap import verbs
from mailtrek.stores.imap.store import ImapStore

log = logging.getLogger("mailtrek.gmail")

GM_EXT = "X-GM-EXT-1"
LIST_CONCURRENCY = 4  # folder listings in flight at once


def has_gmail_extensions(store: ImapStore) -> bool:
    """True when the connected server advertises X-GM-EXT-1."""
    return any(c.has(GM_EXT) for c in store._conns[:1])


class GmailSource:
    """The source store the engine sees for a Gmail (or Gmail-like) mailbox.

    ``done`` (optional) tells which UIDs of a folder are already copied, so the
    download budget is spent only on new mail (pass ``MailboxState.messages_of``).
    """

    def __init__(
        self,
        inner: ImapStore,
        strategy: Strategy = Strategy.FOLDERS_CATEGORIES,
        *,
        budget: DownloadBudget | None = None,
        done: Any = None,
        imap_safe_keywords: bool = False,
    ) -> None:
        self.inner = inner
        self.strategy = Strategy(strategy)
        self.budget = budget
        self.done = done
        self.imap_safe_keywords = imap_safe_keywords
        self._deferred: tuple[int, int, int] | None = None  # messages, bytes, next size
        self.identity = "fingerprint"  # or "x-gm-msgid", once listed
        self._view: View | None = None
        self._signature: tuple[object, ...] | None = None
        self._lock = asyncio.Lock()
        self.warnings: list[str] = []  # what the view could not read as Gmail means it

    @property
    def features(self) -> Any:
        return self.inner.features

    @property
    def label(self) -> str:
        return self.inner.label

    async def connect(self) -> None:
        """Connect the wrapped store (if it is not connected yet)."""
        if not self.inner.connections:
            await self.inner.connect()

    async def close(self) -> None:
        """Close the wrapped store; idempotent."""
        await self.inner.close()

    # -- the view ----------------------------------------------------------------------
    async def list_folders(self) -> list[FolderInfo]:
        """Return the presented folders (recomputed only when the real ones changed)."""
        async with self._lock:
            real = await self.inner.list_folders()
            sig = tuple((f.path, f.uidvalidity, f.uidnext, f.messages, f.highestmodseq)
                        for f in real)
            if self._view is None or sig != self._signature:
                self._view = await self._build(real)
                self._signature = sig
            view = self._view
        mods = [f.highestmodseq for f in real if f.selectable]
        # Any label change anywhere may change this folder's keywords: let every folder's
        # status move when any real folder's does (the engine skips unchanged folders).
        modseq = sum(m for m in mods if m is not None) if mods and None not in mods else None
        return [replace(v.info, messages=len(v.uids), highestmodseq=modseq)
                for _, v in sorted(view.folders.items())]

    async def _build(self, real: list[FolderInfo]) -> View:
        folders = [f for f in real if f.selectable]
        gm = has_gmail_extensions(self.inner)
        self.identity = "x-gm-msgid" if gm else "fingerprint"
        sem = asyncio.Semaphore(LIST_CONCURRENCY)
        wanted = [f for f in folders if self._worth_listing(role_of(f))]
        metas: dict[tuple[str, ...], list[MessageMeta]] = {}
        gm_info: dict[tuple[str, ...], dict[int, tuple[str, frozenset[str]]]] = {}

        async def one(f: FolderInfo) -> None:
            async with sem:
                if f.messages == 0:
                    metas[f.path] = []
                    return
                metas[f.path] = await self.inner.list_messages(f, fingerprints=not gm)
                if gm:
                    gm_info[f.path] = await fetch_gmail_ids(self.inner, f, self.warnings)

        await asyncio.gather(*(one(f) for f in wanted))
        members: dict[tuple[str, ...], list[Member]] = {}
        gm_labels: dict[Hashable, frozenset[str]] = {}
        for path, listing in metas.items():
            if gm:
                info = gm_info.get(path, {})
                members[path] = [Member(m.uid, info[m.uid][0]) for m in listing if m.uid in info]
                for msgid, labels in info.values():
                    gm_labels[msgid] = gm_labels.get(msgid, frozenset()) | labels
            else:
                members[path] = _fingerprint_members(listing)
        view = plan_view(folders, members, self.strategy, gm_labels=gm_labels or None,
                         imap_safe=self.imap_safe_keywords)
        self._add_empty(view, folders)
        if self.budget is not None:
            self._apply_budget(view, metas)
        log.info("%s: Gmail view (%s, identity %s): %d message(s) in %d folder(s)",
                 self.label, self.strategy.value, self.identity, view.messages(),
                 len(view.folders))
        return view

    def _worth_listing(self, role: Role) -> bool:
        # Every strategy needs the label folders (keywords) and Trash/Spam (kept as is).
        return True

    def _add_empty(self, view: View, folders: list[FolderInfo]) -> None:
        """Present folders whose messages all live elsewhere, empty (kept as is).

        all-mail presents only Trash and Spam this way (labels are keywords there).
        """
        roles = ((Role.TRASH, Role.SPAM) if self.strategy == Strategy.ALL_MAIL else
                 (Role.INBOX, Role.SENT, Role.DRAFTS, Role.LABEL, Role.TRASH, Role.SPAM))
        for f in folders:
            if f.path not in view.folders and role_of(f) in roles:
                view.folders[f.path] = FolderView(real=f, info=f)

    def _apply_budget(self, view: View, metas: Mapping[tuple[str, ...], list[MessageMeta]]
                      ) -> None:
        """Hold back pending messages beyond today's download budget, oldest first."""
        assert self.budget is not None
        pending = []
        for path, fv in view.folders.items():
            done = self._done_uids(fv.real)
            sizes = {m.uid: m for m in metas.get(path, ())}
            for uid in fv.uids - done:
                m = sizes.get(uid)
                if m is not None:
                    pending.append(((path, uid), m.size, m.internaldate))
        _kept, deferred = cut_to_budget(pending, self.budget.remaining())
        self._deferred = None
        if not deferred:
            return
        for (path, uid), _size, _date in deferred:  # type: ignore[misc]
            view.folders[path].uids.discard(uid)
        self._deferred = (len(deferred), sum(s for _, s, _ in deferred), deferred[0][1])
        log.info("%s: %d message(s) held back for the Gmail download quota", self.label,
                 len(deferred))

    @property
    def deferral(self) -> Deferral | None:
        """Messages held back for the download quota, and when the run may go on.

        Ask after the run: ``resume_at`` then counts what this run fetched.
        """
        if self._deferred is None or self.budget is None:
            return None
        n, total, first = self._deferred
        return Deferral(n, total, self.budget.available_at(first))

    def _done_uids(self, folder: FolderInfo) -> set[int]:
        if self.done is None:
            return set()
        recs = self.done(folder.path, folder.uidvalidity)
        return {uid for uid, r in recs.items() if getattr(r, "status", "done") == "done"}

    def _folder(self, folder: FolderInfo) -> FolderView:
        if self._view is None or folder.path not in self._view.folders:
            raise KeyError(f"{folder.display} is not part of the Gmail view")
        return self._view.folders[folder.path]

    # -- messages ----------------------------------------------------------------------
    async def list_messages(
        self,
        folder: FolderInfo,
        *,
        fingerprints: bool = False,
        changed_since: int | None = None,
        uids: Sequence[int] | None = None,
    ) -> list[MessageMeta]:
        """List the presented messages of ``folder``, labels added as keywords."""
        fv = self._folder(folder)
        wanted = sorted(fv.uids if uids is None else set(uids) & fv.uids)
        if not wanted:
            return []
        # changed_since is not passed on: the view's modseq is a sum over folders.
        listing = await self.inner.list_messages(fv.real, fingerprints=fingerprints,
                                                 uids=wanted)
        out = []
        for m in listing:
            if m.uid in fv.uids:
                m.flags = m.flags | fv.extra.get(m.uid, frozenset())
                out.append(m)
        return out

    async def fetch(
        self, folder: FolderInfo, uids: Sequence[int], sizes: Mapping[int, int] | None = None,
        *, max_size: int | None = None,
    ) -> AsyncIterator[Message]:
        """Yield the presented messages from the real folder, labels added as keywords."""
        fv = self._folder(folder)
        wanted = [u for u in uids if u in fv.uids]
        async for msg in self.inner.fetch(fv.real, wanted, sizes, max_size=max_size):
            msg.flags = msg.flags | fv.extra.get(msg.uid, frozenset())
            if self.budget is not None:
                self.budget.record(msg.size)
            yield msg


def _fingerprint_members(listing: Sequence[MessageMeta]) -> list[Member]:
    """Identity by fingerprint + size + INTERNALDATE; the n-th duplicate pairs with the n-th.

    One Gmail message keeps its INTERNALDATE in every label folder, so messages that
    share Message-ID, Date, From, Subject and size but arrived at other times stay apart.
    """
    seen: dict[tuple[str | None, int, object], int] = {}
    out = []
    for m in sorted(listing, key=lambda x: x.uid):
        when = m.internaldate.timestamp() if m.internaldate else None
        base = (m.fingerprint, m.size, when)
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.append(Member(m.uid, (*base, n)))
    return out


async def fetch_gmail_ids(store: ImapStore, folder: FolderInfo,
                          warnings: list[str] | None = None
                          ) -> dict[int, tuple[str, frozenset[str]]]:
    """Return uid -> (X-GM-MSGID, X-GM-LABELS) for every message of ``folder``.

    A label that cannot be decoded is kept as sent and noted in ``warnings``.
    """
    conn = await store._pick(folder.path)
    cmd = verbs.uid_fetch(None, [b"UID", b"X-GM-MSGID", b"X-GM-LABELS"])
    [fut] = await store._in_folder(conn, folder.path, [cmd], readonly=True)
    res = verbs.check(await fut, "UID FETCH X-GM-MSGID")
    out: dict[int, tuple[str, frozenset[str]]] = {}
    for it in verbs.fetch_responses(res):
        uid, msgid = it.get(b"UID"), it.get(b"X-GM-MSGID")
        if not isinstance(uid, bytes) or not isinstance(msgid, bytes):
            continue
        raw = it.get(b"X-GM-LABELS")
        labels = frozenset(_label_text(x, conn.utf8, warnings)
                           for x in raw if isinstance(x, (bytes, bytearray))
                           ) if isinstance(raw, list) else frozenset()
        out[int(uid)] = (msgid.decode(), labels)
    return out


def _label_text(raw: bytes | bytearray, utf8: bool, warnings: list[str] | None = None) -> str:
    """Decode one X-GM-LABELS entry; never raises (what cannot be decoded is kept as
    UTF-8 with replacement characters, and said in ``warnings``)."""
    data = bytes(raw)
    if data.startswith(b"\\"):
        return data.decode("ascii", "replace")
    if utf8 or any(b > 0x7F for b in data):  # raw UTF-8 where modified UTF-7 was due
        return data.decode("utf-8", "replace")
    try:
        return imap_utf7.decode(data)
    except Exception:  # imapclient raises assorted errors on malformed base64 runs
        text = data.decode("ascii", "replace")
        if warnings is not None:
            warnings.append(f"the Gmail label {text!r} is not valid modified UTF-7; kept as sent")
        return text
