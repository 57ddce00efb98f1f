"""Folder names and roles on Exchange Online.

Rules (applied by the Graph store, documented for users):
- Roles map to Exchange's well-known folders (locale independent): Inbox -> ``inbox``,
  Sent -> ``sentitems``, Drafts -> ``drafts``, Trash -> ``deleteditems``, Junk ->
  ``junkemail``, Archive -> ``archive``. A source folder named INBOX (any case) is the Inbox.
- Names compare case-insensitively (Exchange folds case: ``trash`` and ``Trash`` are one).
- Names Exchange refuses are renamed predictably: the reserved ``Files`` (any case) becomes
  ``Files (migrated)``; a ``/`` inside one name becomes ``_`` (``/`` is the hierarchy
  separator of the IMAP view of the same mailbox); surrounding spaces are dropped and an
  empty name becomes ``(unnamed)``; names are cut to 255 characters.
"""

from __future__ import annotations

from mailtrek.model import SpecialUse

WELL_KNOWN: dict[SpecialUse, str] = {
    SpecialUse.INBOX: "inbox",
    SpecialUse.SENT: "sentitems",
    SpecialUse.DRAFTS: "drafts",
    SpecialUse.TRASH: "deleteditems",
    SpecialUse.JUNK: "junkemail",
    SpecialUse.ARCHIVE: "archive",
}
RESERVED_NAMES = frozenset({"files"})
RENAMED_SUFFIX = " (migrated)"
MAX_NAME = 255


def exchange_name(name: str) -> str:
    """Return the display name Exchange will accept for the source folder name ``name``."""
    clean = name.replace("/", "_").strip() or "(unnamed)"
    if clean.lower() in RESERVED_NAMES:
        clean += RENAMED_SUFFIX
    return clean[:MAX_NAME]


def name_key(name: str) -> str:
    """Return the key under which Exchange considers two names equal."""
    return name.casefold()
