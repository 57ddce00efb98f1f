"""Copy reports as data (JSON) and as one human line."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from mailtrek.sync.options import CopyReport


def report_dict(r: CopyReport) -> dict[str, Any]:
    """The documented JSON form of a copy report."""
    elapsed = (r.finished - r.started).total_seconds() if r.finished else None
    return {
        "source": r.source,
        "destination": r.destination,
        "started": r.started.isoformat(),
        "finished": r.finished.isoformat() if r.finished else None,
        "elapsed_seconds": elapsed,
        "dry_run": r.dry_run,
        "complete": r.complete,
        "totals": {
            k: r.total(k)
            for k in ("selected", "copied", "adopted", "already", "skipped", "failed",
                      "flags_updated", "bytes_copied", "planned", "planned_bytes")
        },
        "folders": [asdict(f) for f in r.folders],
        "skipped": [asdict(s) for s in r.skipped],
        "errors": list(r.errors),
    }


def summary_line(r: CopyReport) -> str:
    """One line a person reads first."""
    el = (r.finished - r.started).total_seconds() if r.finished else 0.0
    verb = "would copy" if r.dry_run else "copied"
    copied = r.total("planned") if r.dry_run else r.total("copied")
    mb = r.total("planned_bytes" if r.dry_run else "bytes_copied") / 1e6
    state = "complete" if r.complete else "INCOMPLETE"
    return (
        f"{state}: {verb} {copied} messages ({mb:.1f} MB) in {el:.1f} s; "
        f"{r.total('already')} already there, {r.total('adopted')} found on the destination, "
        f"{r.total('flags_updated')} flag updates, {len(r.skipped)} skipped, "
        f"{len(r.errors)} errors; {len(r.folders)} folders"
    )


def plan_lines(r: CopyReport) -> list[str]:
    """Per-folder lines of a dry run: what would be copied where."""
    out = []
    for f in r.folders:
        out.append(f"  {f.source} -> {f.destination}: {f.planned} to copy "
                   f"({f.planned_bytes / 1e6:.1f} MB), {f.already} already there, "
                   f"{f.skipped} to skip")
    return out
