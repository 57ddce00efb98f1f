"""What a contacts-and-calendars copy did, per collection and in total, as JSON.

Invariant per collection and in total: ``selected == copied + skipped + failed``;
``copied`` counts objects written this run (new and updated), ``skipped`` those already
there (unchanged, or adopted after a lost state), ``failed`` those reported with a reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

COUNTS = ("selected", "copied", "updated", "adopted", "skipped", "failed")


@dataclass(slots=True)
class ItemProblem:
    """One object that was not copied, and why."""

    href: str
    reason: str
    uid: str | None = None
    title: str | None = None


@dataclass(slots=True)
class ItemNote:
    """One copied object that the destination holds differently, and how."""

    href: str
    uid: str
    title: str
    notes: list[str]


@dataclass(slots=True)
class CollectionReport:
    """One source collection and what became of its objects."""

    kind: str
    name: str
    source: str
    destination: str | None = None
    selected: int = 0
    copied: int = 0
    updated: int = 0  # part of copied: a changed object written over its earlier copy
    adopted: int = 0  # part of skipped: found on the destination by UID (lost state)
    skipped: int = 0
    failed: int = 0
    unchanged: bool = False  # the sync token said nothing changed: not even listed
    incremental: bool = False  # listed from the changes since the last token (RFC 6578)
    problems: list[ItemProblem] = field(default_factory=list)
    changed: list[ItemNote] = field(default_factory=list)  # copied, but not as it was

    def note(self, href: str, uid: str, title: str, notes: tuple[str, ...] | list[str]) -> None:
        if notes:
            self.changed.append(ItemNote(href, uid, title, list(notes)))

    def fail(self, href: str, reason: str, uid: str | None = None,
             title: str | None = None) -> None:
        self.failed += 1
        self.problems.append(ItemProblem(href, reason, uid, title))


@dataclass(slots=True)
class PimReport:
    """The whole run: every collection, errors that stopped a collection, and timing."""

    source: str = ""
    destination: str = ""
    collections: list[CollectionReport] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    elapsed: float = 0.0

    def totals(self) -> dict[str, int]:
        return {k: sum(getattr(c, k) for c in self.collections) for k in COUNTS}

    @property
    def complete(self) -> bool:
        """True when everything selected is on the destination and nothing stopped early."""
        return not self.errors and self.totals()["failed"] == 0

    def items_per_second(self) -> float:
        return round(self.totals()["copied"] / self.elapsed, 1) if self.elapsed > 0 else 0.0


def report_dict(report: PimReport) -> dict[str, Any]:
    """The JSON report (``--json-report``): totals first, then one entry per collection."""
    return {
        "source": report.source,
        "destination": report.destination,
        "kind": "pim",
        "complete": report.complete,
        "totals": report.totals(),
        "elapsed_seconds": round(report.elapsed, 3),
        "items_per_second": report.items_per_second(),
        "collections": [{
            "kind": c.kind, "name": c.name, "source": c.source, "destination": c.destination,
            **{k: getattr(c, k) for k in COUNTS}, "unchanged": c.unchanged,
            "incremental": c.incremental,
            "problems": [{"href": p.href, "uid": p.uid, "title": p.title, "reason": p.reason}
                         for p in c.problems],
            "changed": [{"href": n.href, "uid": n.uid, "title": n.title, "notes": n.notes}
                        for n in c.changed],
        } for c in report.collections],
        "errors": list(report.errors),
    }


def summary_line(report: PimReport) -> str:
    t = report.totals()
    return (f"contacts and calendars: {t['selected']} selected, {t['copied']} copied "
            f"({t['updated']} updated), {t['skipped']} already there ({t['adopted']} adopted), "
            f"{t['failed']} failed in {len(report.collections)} collections, "
            f"{report.elapsed:.1f} s ({report.items_per_second()} items/s)")
