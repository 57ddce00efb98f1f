"""Gmail's IMAP download quota: at most 2,500 MB per user in any 24 hours.

``DownloadBudget`` keeps a rolling ledger of the bytes fetched for one user and says
how much may still be fetched now and when more becomes available. ``cut_to_budget``
picks which pending messages fit, newest first. The clock is injected, so tests run a
simulated day in microseconds. A ledger file keeps the day's usage across runs (a
mailbox paused today resumes tomorrow from another process).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

GMAIL_DAILY_BYTES = 2500 * 1024 * 1024  # support.google.com/a/answer/1071518
GMAIL_CONNECTIONS = 15  # simultaneous IMAP connections per user
WINDOW = 24 * 3600.0


@dataclass(slots=True)
class DownloadBudget:
    """A rolling 24-hour byte budget for one user's downloads.

    ``clock`` returns seconds since the epoch (``time.time`` by default). Not thread
    safe; one budget per mailbox run (asyncio tasks may share it).
    """

    limit: int = GMAIL_DAILY_BYTES
    clock: Callable[[], float] = time.time
    ledger: Path | None = None  # JSON file of [[time, bytes], ...]; None: in memory only
    window: float = WINDOW
    _events: list[tuple[float, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.ledger is not None and self.ledger.exists():
            try:
                raw = json.loads(self.ledger.read_text(encoding="utf-8"))
                self._events = [(float(t), int(n)) for t, n in raw]
            except (ValueError, TypeError):
                self._events = []  # a damaged ledger costs at most one day's pacing

    def _expire(self) -> None:
        start = self.clock() - self.window
        self._events = [(t, n) for t, n in self._events if t > start]

    def used(self) -> int:
        """Bytes fetched in the last 24 hours."""
        self._expire()
        return sum(n for _, n in self._events)

    def remaining(self) -> int:
        """Bytes that may still be fetched now (never negative)."""
        return max(0, self.limit - self.used())

    def record(self, nbytes: int) -> None:
        """Count ``nbytes`` as fetched now (and write the ledger when there is one)."""
        if nbytes <= 0:
            return
        self._expire()
        self._events.append((self.clock(), nbytes))
        if self.ledger is not None:
            self.ledger.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.ledger.with_suffix(".tmp")
            tmp.write_text(json.dumps(self._events), encoding="utf-8")
            tmp.replace(self.ledger)

    def available_at(self, nbytes: int) -> datetime:
        """When at least ``nbytes`` (capped at the limit) may be fetched, as UTC time."""
        self._expire()
        need = min(nbytes, self.limit)
        now = self.clock()
        if self.limit - self.used() >= need:
            return datetime.fromtimestamp(now, UTC)
        free = self.limit - self.used()
        for t, n in sorted(self._events):
            free += n
            if free >= need:
                return datetime.fromtimestamp(t + self.window, UTC)
        return datetime.fromtimestamp(now + self.window, UTC)


@dataclass(slots=True)
class Deferral:
    """Messages held back for the quota: how many, how big, and when work may go on."""

    messages: int
    bytes: int
    resume_at: datetime

    def describe(self) -> str:
        """One line for reports and batch status."""
        return (f"Gmail download quota reached: {self.messages} message(s), "
                f"{self.bytes / 1024 / 1024:.1f} MB deferred; continues after "
                f"{self.resume_at.strftime('%Y-%m-%d %H:%M UTC')}")


def cut_to_budget(
    pending: Sequence[tuple[object, int, datetime | None]], budget: int
) -> tuple[set[object], list[tuple[object, int, datetime | None]]]:
    """Pick pending (id, size, date) items that fit ``budget`` bytes, newest first.

    Returns (ids kept, items deferred). Stops at the first item that does not fit,
    so the copy runs strictly newest to oldest across days. Pure.
    """
    order = sorted(pending, key=lambda x: (x[2] is not None, x[2] or datetime.min.replace(
        tzinfo=UTC), repr(x[0])), reverse=True)
    kept: set[object] = set()
    left = budget
    for i, (ident, size, _date) in enumerate(order):
        if size > left:
            return kept, list(order[i:])
        left -= size
        kept.add(ident)
    return kept, []
