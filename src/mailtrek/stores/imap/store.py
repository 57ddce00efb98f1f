"""An IMAP mailbox as a mailtrek store: source (read only) and destination.

Speed comes from pipelining, not from waiting: one LIST with STATUS for every folder,
UID FETCH in batches with several in flight, APPEND with LITERAL+ on a few connections
at once. The source is only ever read: EXAMINE and BODY.PEEK.

Exchange Online's IMAP (the m365+imap route) is a store of its own built on this one:
``exchange_store.ExchangeImapStore``; ``opener.imap_store`` picks the class.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Mapping, Sequence
from dataclasses import dataclass, replace

from mailtrek.errors import (
    ConnectionFailedError,
    FolderRejectedError,
    LoginUnavailableError,
    ProtocolError,
    QuotaExceededError,
    TransientError,
)
from mailtrek.model import (
    FolderInfo,
    Message,
    MessageMeta,
    SpecialUse,
    portable_flags,
)
from mailtrek.stores.base import AppendResult, FlagChange, StoreDefaults, StoreFeatures
from mailtrek.stores.imap import verbs
from mailtrek.stores.imap.answers import answers, understood
from mailtrek.stores.imap.appender import FolderAppender, _appenduids
from mailtrek.stores.imap.connection import (
    BIG_WRITE,
    ConnectParams,
    Credentials,
    ImapConnection,
    Result,
)
from mailtrek.stores.imap.fetching import (
    BODY_ITEMS,
    DEST_HEADER_ITEM,
    HEADER_ITEM,
    LISTING_ITEMS,
    SPECIAL,
    USE_ATTR,
    batches,
    message_of,
    meta_of,
)
from mailtrek.stores.imap.limits import MAX_LITERAL
from mailtrek.stores.imap.names import decode_name, encode_name
from mailtrek.stores.imap.rewrites import (
    crlf,
    has_bare_lf,
    may_be_rewritten,
    stored_change,
)
from mailtrek.stores.imap.wire import (
    format_internaldate,
    quote,
)

log = logging.getLogger("mailtrek.imap")
FETCH_AHEAD = 2  # FETCH commands in flight per reader: ~4 MB, above a WAN's bandwidth x RTT
FETCH_AHEAD_BYTES = 4 << 20  # and the bytes they ask for (one command always goes)
# Bytes fetched and not yet handed on, over all readers of one store: four readers each
# pulling a 10 MB attachment at once is what set a copy's peak (tracemalloc).
FETCHED_BYTES = 8 << 20
LISTING_REUSE = 2.0  # seconds a read-only store's folder listing answers the next call


class _Budget:
    """Bytes held by the readers of one store; a command bigger than it goes alone."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._freed = asyncio.Event()

    def try_take(self, n: int) -> bool:
        if self.used and self.used + n > self.limit:
            return False
        self.used += n
        return True

    async def take(self, n: int) -> None:
        while not self.try_take(n):
            self._freed.clear()
            await self._freed.wait()

    def give(self, n: int) -> None:
        if n:
            self.used -= n
            self._freed.set()
# UIDs per listing command when they are named (fingerprint headers: ~8 MB of answers),
# well inside a command's response budget and any server's command-line limit.
LIST_CHUNK = 20_000
MAX_BACKOFF = 600.0  # seconds; like the engine, never wait longer than this at once


LOGIN_RETRY_WAITS = (1.0, 3.0)  # seconds before asking again after a login refused for now
# Response codes of a refusal that may pass if asked again (RFC 5530).
_TRY_AGAIN = (b"UNAVAILABLE", b"SERVERBUG", b"INUSE")


@dataclass(frozen=True, slots=True)
class RewriteNote:
    """A message that had to be changed for the destination, and how."""

    folder: str
    uid: int  # the source message's UID
    note: str
    lossy: bool


@dataclass(frozen=True, slots=True)
class ImapSettings:
    """How to reach and log in to one IMAP mailbox."""

    params: ConnectParams
    credentials: Credentials
    connections: int = 4
    readonly: bool = True  # a source: never write
    # Exchange Online's IMAP (m365+imap): ``opener.imap_store`` opens ``ExchangeImapStore``.
    exchange: bool = False
    # Exchange only: rename Disposition-Notification-To so Outlook sends no read receipts.
    disarm_read_receipts: bool = False


class ImapStore(StoreDefaults):
    """One mailbox on an IMAP server, reached over a small pool of connections."""

    for_exchange = False  # ``ImapSettings.exchange`` needs the class that sets this

    def __init__(self, settings: ImapSettings, *, label: str = "imap") -> None:
        if settings.exchange != self.for_exchange:
            raise ValueError("Exchange settings need ExchangeImapStore: open with opener.imap_store()")
        self.settings = settings
        self.label = label
        self.features = StoreFeatures(kind="imap")
        self._conns: list[ImapConnection] = []
        self._reopen: list[asyncio.Lock] = []
        self._affinity: dict[tuple[str, ...], int] = {}  # folder -> its usual connection
        self._path_locks: dict[tuple[str, ...], asyncio.Lock] = {}
        self._appenders: dict[tuple[str, ...], FolderAppender] = {}
        self._fetched = _Budget(FETCHED_BYTES)
        self._prefix = b""
        self._delim = "/"
        self._folders: dict[tuple[str, ...], FolderInfo] = {}
        self._names: dict[tuple[str, ...], bytes] = {}  # path -> encoded, quoted-ready name
        self._lock = asyncio.Lock()
        self._resume_at = 0.0  # loop time before which the server asked us not to come
        self.rewrites: list[RewriteNote] = []  # messages changed for the destination
        self._leave_before_append = False  # set once the server refused APPEND (Courier)
        self._listing: tuple[float, list[FolderInfo]] | None = None  # (loop time, folders)

    # -- lifecycle -------------------------------------------------------------------
    async def connect(self) -> None:
        """Open and log in the first connection, the others dialled meanwhile.

        The others log in only once the first has: a wrong password is tried once, not
        once per connection. A login the server refuses only for now ([UNAVAILABLE],
        e.g. Dovecot's busy auth process) is asked again after 1, then 3 seconds before
        the error stands.
        """
        n = max(1, self.settings.connections)
        dialled = [asyncio.ensure_future(self._dial(i)) for i in range(1, n)]
        try:
            for wait in (*LOGIN_RETRY_WAITS, None):
                try:
                    first = await self._open_one(0)
                    break
                except LoginUnavailableError as e:
                    if wait is None:
                        raise
                    log.info("%s: %s; trying again in %.0f s", self.label, e, wait)
                    await asyncio.sleep(wait)
        except BaseException:
            await _discard(dialled)
            raise
        self._add(first)
        self.features = self._features(first.capabilities)
        rest = await asyncio.gather(*(self._log_in(d) for d in dialled), return_exceptions=True)
        for c in rest:
            if isinstance(c, ImapConnection):
                self._add(c)
            else:  # the server may cap connections per user: go on with fewer
                log.info("%s: extra connection refused (%s); using %d", self.label, c,
                         len(self._conns))

    def _features(self, caps: set[str]) -> StoreFeatures:
        """What this server can do, from its capabilities."""
        return StoreFeatures(
            kind="imap",
            exact_mime=True,
            keywords=True,
            uids="UIDPLUS" in caps,
            condstore="CONDSTORE" in caps or "QRESYNC" in caps,
            max_message_size=_append_limit(caps),
            delimiter=self._delim,
            lists_named_uids=True,
            atom_keywords=True,
        )

    def _folder_lock(self, path: tuple[str, ...]) -> asyncio.Lock:
        return self._path_locks.setdefault(path, asyncio.Lock())

    def _add(self, conn: ImapConnection) -> None:
        self._conns.append(conn)
        self._reopen.append(asyncio.Lock())

    async def _open_one(self, i: int) -> ImapConnection:
        return await self._log_in(self._dial(i))

    async def _dial(self, i: int) -> ImapConnection:
        """Connection ``i`` opened (TCP, TLS, greeting), not logged in."""
        await self._wait_throttle()  # Exchange refuses logins until the back-off is over
        conn = ImapConnection(self.settings.params, label=f"{self.label}#{i}")
        conn.on_throttle = self._throttled
        await conn.open()
        return conn

    async def _log_in(self, dialling: Awaitable[ImapConnection]) -> ImapConnection:
        conn = await dialling
        try:
            await conn.login(self.settings.credentials)
        except BaseException:
            await conn.close()
            raise
        return conn

    def _throttled(self, seconds: float) -> None:
        """Remember that the server asked for ``seconds`` of quiet (any connection)."""
        until = asyncio.get_running_loop().time() + min(seconds, MAX_BACKOFF)
        if until > self._resume_at:
            log.warning("%s: %s asks us to back off for %.1f s", self.label,
                        self.settings.params.host, seconds)
            self._resume_at = until

    async def _wait_throttle(self) -> None:
        delay = self._resume_at - asyncio.get_running_loop().time()
        if delay > 0:
            await asyncio.sleep(delay)

    async def close(self) -> None:
        """Log out every connection; idempotent."""
        conns, self._conns = self._conns, []
        await asyncio.gather(*(c.close() for c in conns), return_exceptions=True)

    async def __aenter__(self) -> ImapStore:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def connections(self) -> int:
        return len(self._conns)

    # -- connection pool -----------------------------------------------------------------
    # Connections are shared, never checked out: commands that depend on the selected
    # mailbox are sent together with their SELECT/EXAMINE in one uninterrupted write
    # (``_in_folder``), so pipelines of several tasks interleave safely.
    async def _revive(self, i: int) -> ImapConnection:
        """Return connection ``i``, reopened in place when it died."""
        async with self._reopen[i]:
            old = self._conns[i]
            if not old.alive or self._worn(old):
                # Open the new one first: while it logs in, others still see ``old``
                # (and wait on this lock), so nothing is sent to a connection being closed.
                self._conns[i] = await self._open_one(i)
                await old.close()
            return self._conns[i]

    def _worn(self, conn: ImapConnection) -> bool:
        """True for a connection to renew once idle (``ExchangeImapStore``: errors)."""
        return False

    async def _live_conns(self) -> list[ImapConnection]:
        """Every usable connection; dead (and worn) ones are reopened first."""
        await self._wait_throttle()
        for i in range(len(self._conns)):
            if not self._conns[i].alive or self._worn(self._conns[i]):
                with contextlib.suppress(TransientError, ConnectionFailedError):
                    await self._revive(i)
        live = [c for c in self._conns if c.alive]
        if not live:
            raise TransientError(f"{self.label}: no connection to {self.settings.params.host}")
        return live

    async def _pick(self, path: tuple[str, ...] | None = None) -> ImapConnection:
        """The connection for work on ``path``: its usual one, else the least busy."""
        live = await self._live_conns()
        if path is not None:
            i = self._affinity.get(path)
            if i is None:
                i = self._affinity[path] = len(self._affinity) % len(self._conns)
            if i < len(self._conns) and self._conns[i].alive:
                return self._conns[i]
        return min(live, key=lambda c: (c.in_flight_bytes, c.in_flight))

    async def _in_folder(
        self, conn: ImapConnection, path: tuple[str, ...], commands: list[verbs.Command],
        *, readonly: bool, max_literal: int | None = None,
    ) -> list[asyncio.Future[Result]]:
        """Send ``commands`` to run inside ``path`` (selecting it first when needed).

        ``max_literal``: literals in the answers above this are read past (see
        ``ImapConnection.send_many``).
        """
        name = self._encode(path)
        batch: list[verbs.Command] = []
        select = not (conn.selected == name and (readonly or not conn.selected_readonly))
        if select:
            batch.append(verbs.select(name, readonly=readonly))
            conn.selected, conn.selected_readonly = name, readonly
        batch += commands
        futs = await conn.send_many([c.pair for c in batch], max_literal=max_literal)
        if not select:
            return futs
        sel = futs[0]

        def check(f: asyncio.Future[Result]) -> None:
            failed = f.cancelled() or f.exception() is not None or not f.result().ok
            if failed and conn.selected == name:
                conn.selected = None  # a failed SELECT leaves nothing selected

        sel.add_done_callback(check)
        rest = futs[1:]
        opened = asyncio.ensure_future(self._opened(sel, path))
        return [asyncio.ensure_future(_after(opened, f)) for f in rest]

    async def _opened(self, sel: asyncio.Future[Result], path: tuple[str, ...]) -> None:
        res = await sel
        _throttle_check(res, "SELECT")
        if not res.ok and (res.code or b"").upper().startswith(_TRY_AGAIN):
            # RFC 5530: the folder is there but the server cannot open it just now
            # (Dovecot says SERVERBUG when an index lock races under load): retry the pass.
            raise TransientError(
                f"{self.label}: cannot open folder {'/'.join(path)!r} for now: {res.describe()}")
        if not res.ok:
            raise FolderRejectedError(
                f"{self.label}: cannot open folder {'/'.join(path)!r}: {res.describe()}")

    # -- names ---------------------------------------------------------------------------
    def mailbox_name(self, path: tuple[str, ...]) -> bytes:
        """The wire name of folder ``path`` on this server (as listed, else encoded)."""
        return self._encode(path)

    def _encode(self, path: tuple[str, ...]) -> bytes:
        if path in self._names:
            return self._names[path]
        return encode_name(path, delim=self._delim, prefix=self._prefix, utf8=self._utf8())

    def _decode(self, name: bytes, delim: str | None) -> tuple[str, ...]:
        return decode_name(name, delim=delim, prefix=self._prefix, utf8=self._utf8())

    def _utf8(self) -> bool:
        """True when names go as UTF-8 (the connections enabled UTF8=ACCEPT)."""
        return bool(self._conns) and self._conns[0].utf8

    # -- listing -------------------------------------------------------------------------
    @answers("LIST")
    async def list_folders(self) -> list[FolderInfo]:
        """One LIST (with STATUS where LIST-STATUS exists) plus NAMESPACE, pipelined.

        A name with CR, LF or NUL is listed (the mapping refuses and reports it) but never
        sent back: it gets no STATUS. A read-only store answers the next call within
        LISTING_REUSE seconds from this listing, once (the Gmail check lists the folders
        just before the copy plans them: one round trip less).
        """
        loop = asyncio.get_running_loop()
        kept, self._listing = self._listing, None
        if kept is not None and loop.time() - kept[0] <= LISTING_REUSE:
            return list(kept[1])
        folders = await self._list_folders(await self._pick())
        if self.settings.readonly:
            self._listing = (loop.time(), list(folders))
        return folders

    async def _list_folders(self, conn: ImapConnection) -> list[FolderInfo]:
        items = [*verbs.STATUS_ITEMS, *([b"HIGHESTMODSEQ"] if conn.has("CONDSTORE") else [])]
        ns, found = await asyncio.gather(
            verbs.get_namespace(conn),
            verbs.list_with_status(conn, status_items=items, special_use=True))
        if ns is not None:
            self._prefix = ns.prefix
            self._delim = ns.delimiter or self._delim
        for m in found.mailboxes:
            if m.delimiter:
                self._delim = m.delimiter
        folders = []
        self._folders.clear()
        for m in found.mailboxes:
            path = self._decode(m.name, m.delimiter)
            use = next((SPECIAL[a] for a in m.attributes if a in SPECIAL), None)
            if path == ("INBOX",):
                use = SpecialUse.INBOX
            st = found.statuses.get(m.name, {})
            info = FolderInfo(
                path=path,
                special_use=use,
                selectable=m.selectable,
                uidvalidity=st.get(b"UIDVALIDITY"),
                uidnext=st.get(b"UIDNEXT"),
                highestmodseq=st.get(b"HIGHESTMODSEQ"),
                messages=st.get(b"MESSAGES"),
            )
            self._names[path] = m.name
            self._folders[path] = info
            folders.append(info)
        self.features = replace(self.features, delimiter=self._delim, inbox_prefix=bool(
            self._prefix) and self._prefix.upper() == b"INBOX" + self._delim.encode())
        return folders

    @answers("UID FETCH")
    async def list_messages(
        self,
        folder: FolderInfo,
        *,
        fingerprints: bool = False,
        changed_since: int | None = None,
        uids: Sequence[int] | None = None,
    ) -> list[MessageMeta]:
        """UID FETCH sizes, flags, dates (and fingerprint headers), pipelined.

        Fingerprint headers are asked for by UID, LIST_CHUNK at a time (the UIDs of a
        whole folder come from a plain listing first), so a big folder's answers stay
        within each command's response budget.
        """
        if uids is not None and not uids:
            return []
        if fingerprints and uids is None:
            uids = [m.uid for m in await self.list_messages(folder, changed_since=changed_since)]
            if not uids:
                return []
        if uids is not None and len(uids) > LIST_CHUNK:
            ordered = sorted(uids)
            parts = await asyncio.gather(*(
                self.list_messages(folder, fingerprints=fingerprints, changed_since=changed_since,
                                   uids=ordered[i:i + LIST_CHUNK])
                for i in range(0, len(ordered), LIST_CHUNK)))
            return [m for part in parts for m in part]
        conn = await self._pick(folder.path)
        items = list(LISTING_ITEMS)
        cs = changed_since is not None and conn.has("CONDSTORE")
        if cs:
            items.append(b"MODSEQ")
        if fingerprints:
            items.append(HEADER_ITEM if self.settings.readonly else DEST_HEADER_ITEM)
        cmd = verbs.uid_fetch(uids, items, changed_since=changed_since if cs else None)
        [fut] = await self._in_folder(conn, folder.path, [cmd], readonly=True)
        res = _check(await fut, "UID FETCH")
        metas = (meta_of(it, fingerprints=fingerprints, destination=not self.settings.readonly)
                 for it in verbs.fetch_responses(res))
        return [m for m in metas if m is not None]

    # -- reading bodies ------------------------------------------------------------------
    async def fetch(
        self, folder: FolderInfo, uids: Sequence[int], sizes: Mapping[int, int] | None = None,
        *, max_size: int | None = None,
    ) -> AsyncIterator[Message]:
        """Yield whole messages, FETCH_AHEAD commands in flight on one connection.

        With ``sizes`` (uid -> bytes), each command asks for at most FETCH_BATCH_BYTES
        so memory stays bounded whatever the messages weigh. A message whose bytes
        exceed ``max_size`` (whatever its listed size) is read past as it streams and
        yielded without them, ``extra["too_large"]`` holding the bytes the server sent.
        """
        if not uids:
            return
        conn = await self._pick()
        plan = batches(uids, sizes)
        weights = [sum(sizes.get(u, 0) for u in b) if sizes else 0 for b in plan]
        queue: list[asyncio.Future[Result]] = []
        ahead: list[int] = []  # the listed bytes each queued command asks for
        holding = 0  # the listed bytes of the answer being handed on
        nxt = 0
        limit = min(max_size, MAX_LITERAL) if max_size is not None else MAX_LITERAL

        async def launch() -> None:
            # Ahead by bytes, not only by count: two 10 MB attachments are not fetched
            # ahead of a reader that is still handing on a third (the bytes being handed
            # on count too: the caller may wait for room before it takes them).
            nonlocal nxt
            while nxt < len(plan) and len(queue) < FETCH_AHEAD:
                if not queue and not holding:
                    await self._fetched.take(weights[nxt])  # this reader holds nothing
                elif (holding + sum(ahead) + weights[nxt] > FETCH_AHEAD_BYTES
                      or not self._fetched.try_take(weights[nxt])):
                    break
                cmd = verbs.uid_fetch(plan[nxt], BODY_ITEMS)
                try:
                    futs = await self._in_folder(conn, folder.path, [cmd], readonly=True,
                                                 max_literal=limit)
                except BaseException:
                    self._fetched.give(weights[nxt])
                    raise
                queue.extend(futs)
                ahead.extend([weights[nxt]] + [0] * (len(futs) - 1))
                nxt += 1

        await launch()
        try:
            while queue:
                res = _check(await queue.pop(0), "UID FETCH")
                holding = ahead.pop(0)  # still taken from self._fetched
                await launch()
                messages = []
                with understood(self.settings.params.host, "UID FETCH"):
                    for u in res.untagged:
                        msg = message_of(u)
                        if msg is not None:
                            messages.append(msg)
                res.untagged.clear()
                del res
                while messages:
                    yield messages.pop(0)  # handed on: this reader keeps no reference
                self._fetched.give(holding)
                holding = 0
                await launch()
        finally:
            for f in queue:
                f.cancel()
            self._fetched.give(holding + sum(ahead))

    # -- writing ---------------------------------------------------------------------------
    @answers("CREATE")
    async def ensure_folder(
        self, path: tuple[str, ...], special_use: SpecialUse | None = None
    ) -> FolderInfo:
        """Return (creating when missing) the folder for ``path`` / ``special_use``."""
        async with self._folder_lock(path):
            if not self._folders:
                async with self._lock:
                    if not self._folders:
                        await self.list_folders()
            if special_use is not None:
                for f in self._folders.values():
                    if f.special_use == special_use and f.selectable:
                        return f
            existing = self._folders.get(path) or self._listed_as(path)
            if existing is not None and existing.selectable:
                return existing
            conn = await self._pick()
            name = self._encode(path)
            use = USE_ATTR.get(special_use) if special_use is not None else None
            res, status = await verbs.create_with_status(conn, name, use=use)
            _throttle_check(res, f"{self.label}: CREATE")
            if not res.ok and not (res.code and res.code.upper().startswith(b"ALREADYEXISTS")):
                raise FolderRejectedError(
                    f"{self.label}: cannot create folder {'/'.join(path)!r}: {res.describe()}")
            info = FolderInfo(
                path=path, special_use=special_use, selectable=True,
                uidvalidity=status.get(b"UIDVALIDITY"), uidnext=status.get(b"UIDNEXT"),
                messages=status.get(b"MESSAGES"),
            )
            self._names[path] = name
            self._folders[path] = info
            return info

    def _listed_as(self, path: tuple[str, ...]) -> FolderInfo | None:
        """The listed folder whose mailbox name ``path`` encodes to (INBOX.Sub is Sub)."""
        name = self._encode(path)
        for p, listed in self._names.items():
            if listed == name and p in self._folders:
                return replace(self._folders[p], path=path)
        return None

    @answers("APPEND")
    async def append(self, folder: FolderInfo, message: Message) -> AppendResult:
        """APPEND pipelined on the least busy connection; refusals become results."""
        if self.settings.readonly:
            raise ProtocolError(f"{self.label} is a read-only source")
        name = quote(self._encode(folder.path))
        flags = [f.encode() for f in sorted(portable_flags(message.flags)) if _valid_flag(f)]
        date = format_internaldate(message.internaldate) if message.internaldate else None
        conn = await self._pick(folder.path)
        batchable = (conn.has("MULTIAPPEND") and conn.has("LITERAL+")
                     and not any(a.broken for a in self._appenders.values())
                     and len(message.raw) <= BIG_WRITE
                     and (b"\0" not in message.raw or conn.has("BINARY")))
        try:
            if batchable:
                appender = self._appenders.get(folder.path)
                if appender is None:
                    appender = self._appenders[folder.path] = FolderAppender(
                        name, lambda: self._pick(folder.path))
                res, dest_id = await appender.add(flags, date, message.raw)
            else:
                res = await self._append_plain(conn, folder, name, flags, date, message.raw)
                dest_id = _appenduids(res, 1)[0]
            note, sent = "", message.raw
            if not res.ok and has_bare_lf(message.raw):
                # Cyrus: "NO Message contains bare newlines". Send it with CRLF line ends.
                fixed = crlf(message.raw)
                again = await self._append_plain(await self._pick(folder.path), folder, name,
                                                 flags, date, fixed)
                if again.ok:
                    note = (f"line endings changed to CRLF: the destination refused bare LF "
                            f"({res.describe()})")
                    res, dest_id, sent = again, _appenduids(again, 1)[0], fixed
        except ProtocolError as e:
            return AppendResult(error=str(e))
        if res.ok:
            if dest_id is not None and (note or may_be_rewritten(message.raw)):
                changed = await self._stored_change(folder, int(dest_id), sent)
                note = "; ".join(x for x in (note, changed) if x)
            if note:
                lossy = "replaced" in note
                self.rewrites.append(RewriteNote(folder.display, message.uid, note, lossy))
                log.info("%s: message %d in %s: %s", self.label, message.uid, folder.display,
                         note)
                return AppendResult(dest_id=dest_id, extra={"note": note, "lossy": lossy})
            return AppendResult(dest_id=dest_id)
        code = (res.code or b"").upper()
        if code.startswith(b"OVERQUOTA"):
            raise QuotaExceededError(f"{self.label}: destination mailbox is full: {res.describe()}")
        if code.startswith((b"LIMIT", b"TOOBIG")):
            return AppendResult(error=f"too large for the destination: {res.describe()}")
        if code.startswith(b"UNAVAILABLE") or code.startswith(b"SERVERBUG"):
            raise TransientError(f"{self.label}: APPEND failed for now: {res.describe()}")
        return AppendResult(error=f"destination refused the message: {res.describe()}")

    async def _append_plain(self, conn: ImapConnection, folder: FolderInfo, name: bytes,
                            flags: list[bytes], date: bytes | None, raw: bytes) -> Result:
        """One APPEND; a connection holding the folder read-only lets go of it first.

        Courier refuses APPEND to the mailbox the same connection has EXAMINEd (``NO
        Current box is selected READ-ONLY.``). After the first such refusal the store
        leaves a read-only selection of the target before every APPEND.
        """
        enc = self._encode(folder.path)
        if self._leave_before_append and conn.selected == enc and conn.selected_readonly:
            await self._leave_selection(conn)
        res = await conn.append(name, flags, date, raw)
        for _ in range(3):  # another task may EXAMINE it again in between: try again
            if res.ok or not (b"READ-ONLY" in (res.text or b"").upper()
                              or (conn.selected == enc and conn.selected_readonly)):
                break
            if not self._leave_before_append:
                self._leave_before_append = True
                log.info("%s: APPEND refused while the folder was open read-only (%s); "
                         "leaving the selection before appending from now on", self.label,
                         res.describe())
            await self._leave_selection(conn)
            res = await conn.append(name, flags, date, raw)
        return res

    @staticmethod
    async def _leave_selection(conn: ImapConnection) -> None:
        """UNSELECT (or CLOSE, which expunges nothing after EXAMINE), pipelined."""
        conn.selected = None
        [fut] = await conn.send_many([verbs.unselect(conn).pair])
        fut.add_done_callback(lambda f: f.cancelled() or f.exception())

    async def _stored_change(self, folder: FolderInfo, uid: int, sent: bytes) -> str:
        """What the destination changed in a message it stored ("" when nothing seen).

        Compares size and fingerprint header fields of the stored copy with what was sent.
        """
        conn = await self._pick(folder.path)
        cmd = verbs.uid_fetch([uid], [b"RFC822.SIZE", b"BODY.PEEK[HEADER]"])
        # NOOP first: a connection that selected the folder earlier sees the new UID only
        # after its next sync (Cyrus), and UID FETCH of an unseen UID answers nothing.
        futs = await self._in_folder(conn, folder.path, [verbs.noop(), cmd], readonly=False)
        res = (await asyncio.gather(*futs))[-1]
        if not res.ok:
            return ""
        for it in verbs.fetch_responses(res):
            if b"RFC822.SIZE" not in it:
                continue
            return stored_change(verbs.fetched_number(it, b"RFC822.SIZE"),
                                 verbs.fetched_header(it), sent)
        return ""

    @answers("UID STORE")
    async def set_flags(self, folder: FolderInfo, changes: Sequence[FlagChange]) -> None:
        """UID STORE FLAGS, grouped by flag set, pipelined on one selected connection."""
        if not changes:
            return
        groups: dict[frozenset[str], list[int]] = {}
        for ch in changes:
            flags = self._storable(portable_flags(ch.flags))
            groups.setdefault(flags, []).append(int(ch.dest_id))
        conn = await self._pick(folder.path)
        # NOOP first: a connection that selected the folder earlier may not see messages
        # appended since on another connection, and UID STORE skips those silently.
        cmds = [verbs.noop()]
        for flags, ids in groups.items():
            cmds.append(verbs.uid_store(ids, [f for f in sorted(flags) if _valid_flag(f)]))
        futs = await self._in_folder(conn, folder.path, cmds, readonly=False)
        for r in await asyncio.gather(*futs):
            _check(r, "UID STORE")

    def _storable(self, flags: frozenset[str]) -> frozenset[str]:
        """The part of ``flags`` to STORE (``ExchangeImapStore`` leaves some out)."""
        return flags


async def _after(gate: asyncio.Future[None], fut: asyncio.Future[Result]) -> Result:
    """``fut``'s answer, but the gate's error first (a SELECT that failed)."""
    try:
        await gate
    except BaseException:
        fut.cancel()
        raise
    return await fut


_throttle_check = verbs.throttle_check
_check = verbs.check


def _valid_flag(flag: str) -> bool:
    if flag.startswith("\\"):
        return flag in ("\\Seen", "\\Answered", "\\Flagged", "\\Draft")
    return bool(flag) and all(33 <= ord(c) < 127 and c not in '(){%*"\\]' for c in flag)


def _append_limit(caps: set[str]) -> int | None:
    for c in caps:
        if c.startswith("APPENDLIMIT="):
            try:
                return int(c.split("=", 1)[1])
            except ValueError:
                return None
    return None


async def _discard(dialled: Sequence[asyncio.Future[ImapConnection]]) -> None:
    """Cancel connections still dialling; close those already open."""
    for d in dialled:
        d.cancel()
    for r in await asyncio.gather(*dialled, return_exceptions=True):
        if isinstance(r, ImapConnection):
            await r.close()
