"""Exchange Online's IMAP (the m365+imap route) as a store of its own.

Built on ``ImapStore``; what differs is here: messages are made acceptable first
(``exchange``: long lines, read receipts), sent one APPEND each within an error budget
(Exchange hangs up after 10 errors), \\Flagged is STOREd afterwards, mail-system
keywords stay behind, refusals are per item, a reserved name (``Files``) is renamed, and
names compare without case. A throttling answer's suggested back-off is honoured by
every connection (``ImapStore``). What verify must know is declared: copies changed
here are stamped (``StoreFeatures.origin_stamps``), and ``canonical_bytes`` undoes the
same-length read-receipt rename.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections import Counter
from dataclasses import replace

from mailtrek.errors import ProtocolError, TransientError
from mailtrek.model import FolderInfo, Message, SpecialUse, portable_flags
from mailtrek.stores.base import AppendResult, StoreFeatures
from mailtrek.stores.imap import exchange, verbs
from mailtrek.stores.imap.answers import answers
from mailtrek.stores.imap.appender import _appenduids
from mailtrek.stores.imap.connection import ImapConnection, Result
from mailtrek.stores.imap.store import (
    ImapSettings,
    ImapStore,
    RewriteNote,
    _throttle_check,
    _valid_flag,
)
from mailtrek.stores.imap.wire import format_internaldate, quote

log = logging.getLogger("mailtrek.imap")
# Exchange Online closes a connection after 10 errors (imapsync FAQ.Office365). Keep
# errors so far + APPENDs in flight on a connection under this, so that even if every
# APPEND in flight fails the connection is never hung up on; renew a connection that has
# used most of its budget once it is idle.
EXCHANGE_ERROR_BUDGET = 8
EXCHANGE_RENEW_AT = 5


class ExchangeImapStore(ImapStore):
    """One Exchange Online mailbox over IMAP (see module doc)."""

    for_exchange = True

    def __init__(self, settings: ImapSettings, *, label: str = "imap") -> None:
        super().__init__(settings, label=label)
        self._appending: dict[int, int] = {}  # id(connection) -> APPENDs in flight
        self._slot_freed = asyncio.Condition()
        self._refused: dict[bytes, str] = {}  # digest of a message the server refused: why
        self._size_ceiling: int | None = None  # smallest size the server refused as too big
        # Keywords not sent (they would become categories), and on how many messages.
        self.keywords_left: Counter[str] = Counter()

    def _features(self, caps: set[str]) -> StoreFeatures:
        """IMAP's, and: Exchange folds case and reserves ``Files`` (the mapping renames it
        the Graph route's way and reports it); mail-system keywords are not kept; copies
        it had to change are stamped."""
        return replace(super()._features(caps), reserved_names=exchange.reserved_names(),
                       case_insensitive_names=True, dropped_flags=exchange.dropped_flags(),
                       origin_stamps=True)

    def canonical_bytes(self, raw: bytes) -> bytes:
        """The source's bytes: the read-receipt rename undone (it keeps the size)."""
        return exchange.restore_disarmed(raw)

    def _worn(self, conn: ImapConnection) -> bool:
        """True for an idle connection that used most of its error budget."""
        return conn.errors >= EXCHANGE_RENEW_AT and conn.in_flight == 0

    def _storable(self, flags: frozenset[str]) -> frozenset[str]:
        return exchange.exchange_flags(flags)

    async def ensure_folder(
        self, path: tuple[str, ...], special_use: SpecialUse | None = None
    ) -> FolderInfo:
        """A reserved name (``Files``) becomes the Graph route's ``Files (migrated)``; the
        folder mapping normally renamed it (and reported it) already."""
        return await super().ensure_folder(tuple(exchange.safe_name(p) for p in path),
                                           special_use)

    @answers("APPEND")
    async def append(self, folder: FolderInfo, message: Message) -> AppendResult:
        """APPEND to Exchange Online: one message per command, its quirks handled.

        The message is made acceptable first (long lines, read receipts: see
        ``exchange``); \\Flagged is STOREd after the APPEND; a refusal is remembered so a
        retry costs no second error; throttling raises ThrottledError with Exchange's
        suggested back-off. A refusal never ends the session (error budget, above).
        """
        if self.settings.readonly:
            raise ProtocolError(f"{self.label} is a read-only source")
        prepared = exchange.prepare(message.raw,
                                    disarm_read_receipts=self.settings.disarm_read_receipts)
        data = prepared.raw
        flags_to_send, flag_after = exchange.append_flags(portable_flags(message.flags))
        self.keywords_left.update(portable_flags(message.flags) - flags_to_send - {"\\Flagged"})
        flags = [f.encode() for f in sorted(flags_to_send) if _valid_flag(f)]
        date = format_internaldate(message.internaldate) if message.internaldate else None
        digest = hashlib.sha256(data).digest()
        if digest in self._refused:
            return AppendResult(error=self._refused[digest])
        if self._size_ceiling is not None and len(data) >= self._size_ceiling:
            return AppendResult(error=f"too large for the destination: {len(data):,} bytes, "
                                      f"and it refused {self._size_ceiling:,}")
        name = quote(self._encode(folder.path))
        conn = await self._append_slot()
        try:
            res = await conn.append(name, flags, date, data)
        except ProtocolError as e:
            return AppendResult(error=str(e))
        finally:
            await self._free_slot(conn)
        _throttle_check(res, f"{self.label}: APPEND")
        if not res.ok:
            refused = self._refusal(res, digest, len(data))
            if prepared.notes and refused.error:
                refused.error += f" (after it was changed for Exchange: {'; '.join(prepared.notes)})"
                self._refused[digest] = refused.error
            return refused
        dest_id = _appenduids(res, 1)[0]
        extra: dict[str, object] = {}
        if flag_after and not await self._store_flagged(folder, dest_id):
            # In, under a known UID, without its flag yet: a copy, not an item in doubt.
            # The engine records the flags it has and sets \\Flagged on its next pass.
            extra["flags_stored"] = portable_flags(message.flags) - {"\\Flagged"}
        if prepared.notes:
            note = "; ".join(prepared.notes)
            extra |= {"note": f"changed for Exchange: {note}", "lossy": prepared.lossy}
            self.rewrites.append(RewriteNote(folder.display, message.uid, note, prepared.lossy))
            log.info("%s: message %d in %s changed for Exchange: %s", self.label, message.uid,
                     folder.display, note)
        return AppendResult(dest_id=dest_id, extra=extra)

    def _refusal(self, res: Result, digest: bytes, size: int) -> AppendResult:
        text = res.describe()
        if exchange.size_refusal(res.text):
            self._size_ceiling = min(self._size_ceiling or size, size)
            why = f"too large for the destination mailbox ({size:,} bytes): {text}"
        elif exchange.argument_error(res.text):
            why = (f"Exchange refused the message ({text}): too large, over quota, or a line "
                   "too long")
        else:
            why = f"destination refused the message: {text}"
        self._refused[digest] = why
        return AppendResult(error=why)

    async def _store_flagged(self, folder: FolderInfo, dest_id: str | None) -> bool:
        """Set \\Flagged on a just-appended message (Exchange forgets it on APPEND).

        Returns False when the message is not visible for STORE yet (the caller leaves
        the flag to the next pass); raises TransientError when it cannot be addressed.
        """
        if dest_id is None:
            # No APPENDUID: cannot address it. In doubt: the re-plan adopts it by
            # fingerprint and sets its flags with STORE.
            raise TransientError(f"{self.label}: no UID for a flagged message in "
                                 f"{folder.display}; its flag is set on the next pass")
        # A UID the session does not see yet is silently skipped by UID STORE (RFC 3501),
        # and a mailbox selected on another connection learns of the APPEND only at its
        # next sync: so STORE without .SILENT, check the answer names the UID, and if
        # not, sync with NOOP and try once more.
        store = verbs.uid_store([int(dest_id)], ["\\Flagged"], op="+", silent=False)
        for commands in ([store], [verbs.noop(), store]):
            conn = await self._pick(folder.path)
            futs = await self._in_folder(conn, folder.path, commands, readonly=False)
            results = [_throttle_check(await f, "UID STORE") for f in futs]
            res = results[-1]
            if not res.ok:  # the message is in without its flag: let the re-plan fix it
                raise TransientError(f"{self.label}: setting \\Flagged failed: {res.describe()}")
            if any(verbs.fetched_uid(it) == int(dest_id) for r in results
                   for it in verbs.fetch_responses(r)):
                return True
        log.info("%s: message %s in %s not visible for STORE yet; its flag is set on the "
                 "next pass", self.label, dest_id, folder.display)
        return False

    async def _append_slot(self) -> ImapConnection:
        """A connection with room in its error budget; wait for one when all are full."""
        while True:
            live = await self._live_conns()
            room = [c for c in live if c.errors < EXCHANGE_RENEW_AT
                    and c.errors + self._appending.get(id(c), 0) < EXCHANGE_ERROR_BUDGET]
            if room:
                conn = min(room, key=lambda c: (self._appending.get(id(c), 0), c.in_flight))
                self._appending[id(conn)] = self._appending.get(id(conn), 0) + 1
                return conn
            async with self._slot_freed:
                # Wake on a freed slot; poll too, since a worn connection is renewed by
                # _live_conns only once it is idle.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._slot_freed.wait(), 0.2)

    async def _free_slot(self, conn: ImapConnection) -> None:
        n = self._appending.get(id(conn), 1) - 1
        if n > 0:
            self._appending[id(conn)] = n
        else:
            self._appending.pop(id(conn), None)
        async with self._slot_freed:
            self._slot_freed.notify_all()
