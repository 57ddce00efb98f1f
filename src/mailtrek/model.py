"""Value objects shared by every layer: folders, messages, flags, filters.

Nothing here does I/O. Stores produce these, the planner consumes them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime


class SpecialUse(enum.StrEnum):
    """The role of a folder, independent of its name (RFC 6154 plus Inbox)."""

    INBOX = "inbox"
    SENT = "sent"
    DRAFTS = "drafts"
    TRASH = "trash"
    JUNK = "junk"
    ARCHIVE = "archive"
    ALL = "all"  # Gmail's All Mail: a view, not a home
    FLAGGED = "flagged"  # a virtual folder on some servers
    IMPORTANT = "important"


# IMAP system flags we carry; anything else without a backslash is a keyword.
SYSTEM_FLAGS = ("\\Seen", "\\Answered", "\\Flagged", "\\Draft", "\\Deleted")


@dataclass(frozen=True, slots=True)
class FolderInfo:
    """A folder as a store lists it.

    ``path`` is the folder's path as a tuple of decoded (Unicode) names, without the
    store's namespace prefix, e.g. ``("Projekte", "Übersicht")``; INBOX is ``("INBOX",)``.
    ``uidvalidity``/``uidnext``/``highestmodseq``/``messages`` come from STATUS (or the
    store's equivalent) and may be ``None`` when not known.
    """

    path: tuple[str, ...]
    special_use: SpecialUse | None = None
    selectable: bool = True
    uidvalidity: int | None = None
    uidnext: int | None = None
    highestmodseq: int | None = None
    messages: int | None = None
    store_id: str | None = None  # the store's own id (Graph folder id); None for IMAP

    @property
    def display(self) -> str:
        """The path joined with '/', for humans and reports."""
        return "/".join(self.path)


@dataclass(slots=True)
class MessageMeta:
    """What a listing tells about one message, without its body."""

    uid: int
    size: int
    flags: frozenset[str] = frozenset()
    internaldate: datetime | None = None
    modseq: int | None = None
    fingerprint: str | None = None  # filled only when the listing was asked for headers
    message_id: str | None = None
    subject: str | None = None
    store_id: str | None = None  # destination's own id (Graph message id), if not a UID
    # The fingerprint with 8-bit header bytes read as "X": pairs a message with the copy a
    # server rewrote (Cyrus munges 8-bit headers; Courier and Cyrus make line ends CRLF).
    loose_fingerprint: str | None = None


@dataclass(slots=True)
class Message:
    """One whole message: its exact bytes plus the state that travels with it."""

    uid: int
    raw: bytes
    flags: frozenset[str] = frozenset()
    internaldate: datetime | None = None
    fingerprint: str | None = None
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return len(self.raw)


def has_line_break(value: bytes | str) -> bool:
    """True when ``value`` holds CR, LF or NUL: no IMAP quoted string may carry them, and
    sent raw they end a command and start another."""
    if isinstance(value, str):
        return "\r" in value or "\n" in value or "\0" in value
    return b"\r" in value or b"\n" in value or b"\0" in value


def keywords_of(flags: frozenset[str]) -> frozenset[str]:
    """Return the keywords (flags without a backslash) among ``flags``."""
    return frozenset(f for f in flags if not f.startswith("\\"))


def portable_flags(flags: frozenset[str]) -> frozenset[str]:
    """Return the flags worth copying: system flags except \\Recent/\\Deleted, and keywords."""
    out = set()
    for f in flags:
        if f.startswith("\\"):
            canon = {"\\seen": "\\Seen", "\\answered": "\\Answered", "\\flagged": "\\Flagged",
                     "\\draft": "\\Draft"}.get(f.lower())
            if canon:
                out.add(canon)
        else:
            out.add(f)
    return frozenset(out)
