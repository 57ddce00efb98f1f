"""What one copy run is asked to do, and what it reports back."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

DEFAULT_MAX_SIZE = 35 * 1024 * 1024  # Exchange Online's default per-item limit
DEFAULT_MAX_ITEMS = 500_000  # Exchange Online's per-mailbox item limit for IMAP migration


@dataclass(slots=True)
class CopyOptions:
    """Filters and knobs for one mailbox copy. Defaults are what a user expects."""

    include: list[str] = field(default_factory=list)  # folder globs; empty = all
    exclude: list[str] = field(default_factory=list)
    since: datetime | None = None  # INTERNALDATE >= since
    before: datetime | None = None  # INTERNALDATE < before
    max_size: int | None = DEFAULT_MAX_SIZE
    max_items: int | None = DEFAULT_MAX_ITEMS  # newest first when over
    dry_run: bool = False
    sync_flags: bool = True
    dest_root: tuple[str, ...] = ()  # put every non-special folder under this path
    connections: int = 4  # per side, where the store pools connections


@dataclass(slots=True)
class SkippedItem:
    """One message that was not copied, and why."""

    folder: str
    uid: int
    subject: str | None
    date: str | None  # ISO-8601 INTERNALDATE
    size: int
    reason: str


@dataclass(slots=True)
class ChangedItem:
    """One message the destination received in a changed form, and how (store's note)."""

    uid: int  # the source message's UID
    subject: str | None
    note: str
    lossy: bool = False  # some value could not be kept exactly
    date_source: str | None = None  # received date not kept: the source INTERNALDATE ...
    date_dest: str | None = None  # ... and the destination's received date (ISO-8601)


@dataclass(slots=True)
class FolderReport:
    """Per-folder outcome."""

    source: str
    destination: str | None
    selected: int = 0  # messages the filters selected
    copied: int = 0
    adopted: int = 0  # found already on the destination by fingerprint
    already: int = 0  # known from state
    skipped: int = 0
    failed: int = 0
    flags_updated: int = 0
    bytes_copied: int = 0
    planned: int = 0  # messages the last plan meant to copy (what --dry-run shows)
    planned_bytes: int = 0
    renamed: str | None = None  # why the destination name differs from the source's
    created: bool = False  # this run created the destination folder
    error: str | None = None
    notes: list[ChangedItem] = field(default_factory=list)  # messages changed on the way


@dataclass(slots=True)
class CopyReport:
    """What a copy run did. ``complete`` is True when every selected message is there."""

    source: str
    destination: str
    started: datetime
    finished: datetime | None = None
    dry_run: bool = False
    folders: list[FolderReport] = field(default_factory=list)
    skipped: list[SkippedItem] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # worth reading; not failures
    resume_at: datetime | None = None  # a quota held work back: when it may go on

    def total(self, attr: str) -> int:
        return sum(getattr(f, attr) for f in self.folders)

    @property
    def complete(self) -> bool:
        return (not self.skipped and not self.errors and self.total("failed") == 0
                and not any(f.error for f in self.folders))
