"""The one small protocol every store speaks, and the features it declares.

A store is a mailbox on some server (IMAP, Microsoft Graph, memory). The sync layer
talks only to these protocols; abilities are declared in ``StoreFeatures`` up front,
never discovered by catching errors.

Concurrency contract: every coroutine may be awaited concurrently from many tasks;
a store pipelines or pools as it sees fit (an IMAP store pipelines APPENDs on a few
connections, a Graph store keeps at most 4 requests in flight per mailbox).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from mailtrek.model import FolderInfo, Message, MessageMeta, SpecialUse


@dataclass(frozen=True, slots=True)
class StoreFeatures:
    """What a store can do; the planner and executor read these, never guess."""

    kind: str  # "imap", "graph", "memory": for reports and logs; sync never branches on it
    exact_mime: bool = True  # append keeps the bytes exactly
    keywords: bool = True  # arbitrary keywords survive an append
    uids: bool = True  # append reports the new item's id (APPENDUID / Graph id)
    condstore: bool = False  # listings can be asked "changed since modseq"
    max_message_size: int | None = None  # the store refuses anything larger
    max_items_per_mailbox: int | None = None
    case_insensitive_names: bool = False
    reserved_names: frozenset[str] = frozenset()  # folder names the store refuses
    delimiter: str = "/"
    # Personal folders live under "INBOX<delimiter>" (Cyrus's Debian default, Courier):
    # there INBOX/Sub and Sub are one mailbox, listed as Sub.
    inbox_prefix: bool = False
    special_folders: frozenset[SpecialUse] = frozenset()  # roles it has built in
    # Flags and keywords (lower case) the store cannot hold: comparisons leave them out of
    # both sides, and nobody tries to set them (Graph's and Exchange IMAP's system keywords).
    dropped_flags: frozenset[str] = frozenset()
    # A received date off by less than this many seconds is the same date (IMAP's
    # INTERNALDATE has whole seconds; Graph's route promises +-2 s).
    date_tolerance_s: float = 1.0
    # The store dates an item by the message's own headers (topmost Received, else Date)
    # where it cannot set the date (Graph's importMime): such a date is no difference.
    dates_from_headers: bool = False
    # ``list_messages(uids=...)`` reads only the messages named (IMAP UID FETCH); else
    # the whole folder is read, and asking for a few costs as much as asking for all.
    lists_named_uids: bool = False
    # A copy the store had to change carries ``X-Mailtrek-Origin`` (the source's
    # fingerprint and size) as its first line, and is matched by it (Exchange's IMAP).
    origin_stamps: bool = False
    # Keywords must be IMAP atoms: a Gmail label becomes one in modified UTF-7 (an IMAP
    # destination); else any text is a keyword (Graph's categories).
    atom_keywords: bool = False


class StoreDefaults:
    """What a store does unless it says otherwise (stores inherit these methods)."""

    def canonical_bytes(self, raw: bytes) -> bytes:
        """The bytes the source had, for a copy as this store serves it.

        A store that changes every copy in a way that can be undone exactly (Exchange's
        IMAP renames the read-receipt header, same length) undoes it here; verify
        compares what this returns.
        """
        return raw


@dataclass(slots=True)
class AppendResult:
    """The outcome of one append: a destination id, or why it was refused."""

    dest_id: str | None = None  # IMAP UID as text, or the Graph message id
    error: str | None = None  # reason the item was rejected (skip, report)
    in_doubt: bool = False  # the answer was lost: the item may or may not be there
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None and not self.in_doubt


@dataclass(slots=True)
class FlagChange:
    """Make the destination item ``dest_id`` carry exactly ``flags``."""

    dest_id: str
    flags: frozenset[str]
    previous: frozenset[str] | None = None  # what we last wrote, when known


@runtime_checkable
class Store(Protocol):
    """What sources and destinations share."""

    features: StoreFeatures

    async def connect(self) -> None:
        """Connect and authenticate. Raises AuthenticationError/ConnectionFailedError."""

    async def close(self) -> None:
        """Release every connection; idempotent."""

    async def list_folders(self) -> list[FolderInfo]:
        """Return every folder with its status (counts, UIDVALIDITY, UIDNEXT, modseq)."""
        ...

    async def list_messages(
        self,
        folder: FolderInfo,
        *,
        fingerprints: bool = False,
        changed_since: int | None = None,
        uids: Sequence[int] | None = None,
    ) -> list[MessageMeta]:
        """List messages (uid, size, flags, date; fingerprints when asked).

        ``changed_since`` limits the listing to messages whose modseq is higher
        (CONDSTORE); ``uids`` to those UIDs.
        """
        ...


@runtime_checkable
class SourceStore(Store, Protocol):
    """A mailbox we read from. Never modifies anything (EXAMINE, BODY.PEEK)."""

    def fetch(
        self, folder: FolderInfo, uids: Sequence[int], sizes: Mapping[int, int] | None = None,
        *, max_size: int | None = None,
    ) -> AsyncIterator[Message]:
        """Yield the messages with these UIDs, whole, in any order.

        A UID that no longer exists is silently left out. ``sizes`` (uid -> bytes, from
        a listing) lets the store bound how much it asks for at once. A message bigger
        than ``max_size`` (a listing's size may lie) is yielded without its bytes, with
        ``extra["too_large"]`` holding its size, so it is skipped, never held.
        """
        ...


@runtime_checkable
class DestinationStore(Store, Protocol):
    """A mailbox we write to."""

    async def ensure_folder(
        self, path: tuple[str, ...], special_use: SpecialUse | None = None
    ) -> FolderInfo:
        """Return the folder at ``path`` (creating it and its parents if missing).

        When ``special_use`` names a role the store has built in, the store's own
        folder for that role is returned instead. Idempotent. Raises FolderRejectedError.
        """
        ...

    async def append(self, folder: FolderInfo, message: Message) -> AppendResult:
        """Store ``message`` (bytes, flags, internaldate) in ``folder``.

        Never raises for a refused item: returns ``AppendResult(error=...)``. Raises
        TransientError/ThrottledError for failures a retry may cure, and
        QuotaExceededError when the mailbox is full.
        """
        ...

    async def set_flags(self, folder: FolderInfo, changes: Sequence[FlagChange]) -> None:
        """Make each item carry exactly the flags given (adds and removes)."""
        ...

    def canonical_bytes(self, raw: bytes) -> bytes:
        """The source's bytes for a copy as served (``StoreDefaults``: unchanged)."""
        ...
