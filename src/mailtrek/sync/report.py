"""Copy reports as data (JSON) and as one human line."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict
from typing import Any

from mailtrek.sync.options import ChangedItem, CopyReport

# Words in a store's note, and the kind of change they stand for in the summary.
_CHANGE_KINDS = (
    ("read receipt", "read receipts disarmed"),
    ("re-encoded", "long lines re-encoded"),
    ("re-wrapped", "long lines re-encoded"),
    ("folded", "long lines re-encoded"),
    ("wrapped", "long lines re-encoded"),
    ("sent as json", "sent as JSON (MIME not kept exactly)"),
    ("stored as text", "unparsable MIME stored as text"),
    ("8-bit header bytes replaced", "8-bit header bytes replaced by the server"),
    ("line endings", "line endings made CRLF"),
    ("crlf added at the end", "CRLF added at the end"),
    ("changed by the server: stored", "stored with another size by the server"),
    ("received date not kept", "received date not kept"),
)


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
        } | {"changed": sum(len(f.notes) for f in r.folders),
             "folders_created": sum(f.created for f in r.folders)},
        # Each folder also lists its changed messages under "notes" (uid, subject, note,
        # lossy); "changed" in totals counts them. Both were added later: keys only grow.
        "folders": [asdict(f) for f in r.folders],
        "skipped": [asdict(s) for s in r.skipped],
        "errors": list(r.errors),
        "warnings": list(r.warnings),
        # Messages whose received date the destination did not keep, with both dates.
        "dates_not_kept": [
            {"folder": f.source, "uid": n.uid, "subject": n.subject,
             "source_date": n.date_source, "destination_date": n.date_dest}
            for f in r.folders for n in f.notes if n.date_source is not None],
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
        f"{r.total('flags_updated')} flag updates, "
        + (f"{r.total('failed')} failed, " if r.total("failed") else "")
        + f"{len(r.skipped)} skipped, "
        f"{len(r.errors) + sum(1 for f in r.folders if f.error)} errors; "
        f"{len(r.folders)} folders"
        + (f" ({created} created)" if (created := sum(f.created for f in r.folders)) else "")
        + (f" ({renamed} renamed)" if (renamed := sum(1 for f in r.folders if f.renamed))
           else "")
        + (f"; {changed}" if (changed := changes_summary(r)) else "")
    )


def changes_summary(r: CopyReport) -> str | None:
    """Say in a few words how many messages were changed on the way, and how; None if none.

    E.g. "3 messages changed for Exchange (long lines re-encoded, read receipts disarmed);
    see the report". The report's folder notes name each message.
    """
    notes = [n for f in r.folders for n in f.notes]
    if not notes:
        return None
    kinds: Counter[str] = Counter()
    for n in notes:
        kinds.update(change_kinds(n))
    what = ", ".join(k for k, _ in kinds.most_common())
    lossy = sum(n.lossy for n in notes)
    if lossy:
        what += f"; {lossy} with a value that could not be kept exactly"
    noun = "message" if len(notes) == 1 else "messages"
    # Notes of an IMAP server that rewrote what it stored (Cyrus, Courier) say so.
    by_server = any(n.note.startswith(("changed by the server", "line endings")) for n in notes)
    how = "changed on the way" if by_server else "changed for Exchange"
    return f"{len(notes)} {noun} {how} ({what}); see the report"


def problem_lines(r: CopyReport) -> list[str]:
    """Every folder that failed or holds failed messages, and every renamed folder."""
    out = []
    for f in r.folders:
        if f.error or f.failed:
            what = f"{f.failed} messages not copied" if f.failed else "folder failed"
            out.append(f"  failed: {f.source}: {what}: {f.error or 'see the log'}")
        if f.renamed:
            out.append(f"  renamed: {f.source} -> {f.destination}: {f.renamed}")
    return out


def change_kinds(item: ChangedItem) -> set[str]:
    """The kinds of change one store note names ("other changes" when none is known)."""
    text = item.note.lower()
    found = {kind for word, kind in _CHANGE_KINDS if word in text}
    return found or {"other changes"}


def plan_lines(r: CopyReport) -> list[str]:
    """Per-folder lines of a dry run: what would be copied where."""
    out = []
    for f in r.folders:
        out.append(f"  {f.source} -> {f.destination}: {f.planned} to copy "
                   f"({f.planned_bytes / 1e6:.1f} MB), {f.already} already there, "
                   f"{f.skipped} to skip")
    return out
