"""Batch reports: per-user statistics and skipped items as CSV, JSON and readable HTML.

Reports are built from the database only; passwords are never read here, and every
text passes through :func:`mailtrek.secrets.redact` on its way out.
"""

from __future__ import annotations

import html
import json
from collections import Counter
from datetime import datetime
from typing import Any

from mailtrek.orchestrate.batches import get_batch, user_rows
from mailtrek.orchestrate.csvsafe import render_rows
from mailtrek.orchestrate.hardening import hardening_section
from mailtrek.orchestrate.home import Home
from mailtrek.orchestrate.pim_phase import pim_summary
from mailtrek.secrets import redact
from mailtrek.units import human_bytes

USER_COLUMNS = ("email", "status", "items_synced", "items_skipped", "bytes", "last_sync", "error")
SKIPPED_COLUMNS = ("email", "folder", "date", "subject", "size", "reason")


def _iso(v: Any) -> Any:
    return v.isoformat() if isinstance(v, datetime) else v


def decode_subject(text: str | None) -> str | None:
    """Return a subject with RFC 2047 encoded words (``=?EUC-KR?Q?...?=``) decoded."""
    if not text or "=?" not in text:
        return text
    from email.header import decode_header, make_header

    try:
        return str(make_header(decode_header(text)))
    except (LookupError, ValueError, UnicodeError):  # an unknown charset or a broken word: keep it raw
        return text


def decoded(item: dict[str, Any]) -> dict[str, Any]:
    """Return a skipped item with its subject decoded."""
    return {**item, "subject": decode_subject(item.get("subject"))}


def batch_document(home: Home, name: str) -> dict[str, Any]:
    """Return the batch and its users as one JSON-ready dict (the `show --json` shape)."""
    b = get_batch(home, name)
    users = []
    for r in user_rows(home, name):
        failed = r["status"] == "Failed"
        users.append({
            "email": r["email"], "status": r["status"], "items_synced": r["items_synced"],
            "items_skipped": r["items_skipped"], "items_total": r["items_total"],
            "bytes": r["bytes"], "size": human_bytes(r["bytes"]), "last_sync": _iso(r["last_sync"]),
            # A failed user waits for a retry: it has no next sync, whatever an old row says.
            "next_sync": None if failed else _iso(r["next_sync"]), "error": r["error"], "csv_line": r["line"],
            "source_login": r["username"], "runs": r["runs"], "ever_synced": bool(r["ever_synced"]),
            "skipped": [decoded(s) for s in r["skipped"]],
            "items": r["items"] or b.options.items, "pim": r["pim"], "pim_summary": pim_summary(r["pim"]),
        })
    counts = Counter(u["status"] for u in users)
    return {
        "name": b.name, "status": b.status.value, "source_endpoint": b.source_endpoint,
        "tenant": b.tenant, "dest_endpoint": b.dest_endpoint,
        "options": {"exclude": b.options.exclude, "since": b.options.since, "before": b.options.before,
                    "max_size": b.options.max_size, "gmail_labels": b.options.gmail_labels,
                    "items": b.options.items},
        "notify": b.notify, "incremental_hours": b.incremental_hours,
        "created_at": _iso(b.created_at), "started_at": _iso(b.started_at),
        "completed_at": _iso(b.completed_at), "start_at": _iso(b.start_at),
        "complete_at": _iso(b.complete_at),
        "totals": {"users": len(users), "by_status": dict(sorted(counts.items())),
                   "items_synced": sum(u["items_synced"] for u in users),
                   "items_skipped": sum(u["items_skipped"] for u in users),
                   "bytes": sum(u["bytes"] for u in users),
                   # users whose move carries contacts or calendars (the dashboard's column)
                   "pim_users": sum(1 for u in users if set(u["items"]) - {"mail"})},
        "users": users,
        # Completed batches only: the post-migration checklist and PowerShell script.
        "hardening": hardening_section(home, name),
    }


def render_json(home: Home, name: str) -> str:
    return redact(json.dumps(batch_document(home, name), indent=2, ensure_ascii=False)) + "\n"


def render_csv(home: Home, name: str) -> str:
    """One row per user (the Exchange per-user view); no cell runs as a formula."""
    users = batch_document(home, name)["users"]
    return redact(render_rows(USER_COLUMNS, ([u[c] for c in USER_COLUMNS] for u in users)))


def render_skipped_csv(home: Home, name: str) -> str:
    """One row per skipped item of every user; no cell runs as a formula."""
    rows = ([u["email"], s.get("folder"), s.get("date"), s.get("subject"), s.get("size"),
             s.get("reason")] for u in batch_document(home, name)["users"] for s in u["skipped"])
    return redact(render_rows(SKIPPED_COLUMNS, rows))


def batch_summary_text(home: Home, name: str) -> str:
    """A plain-text summary for status e-mails and the terminal."""
    d = batch_document(home, name)
    t = d["totals"]
    lines = [f"Batch {d['name']}: {d['status']}",
             f"Users: {t['users']} ({', '.join(f'{k} {v}' for k, v in t['by_status'].items())})",
             f"Items synced: {t['items_synced']} ({human_bytes(t['bytes'])}), skipped: {t['items_skipped']}", ""]
    for u in d["users"]:
        line = f"  {u['email']}: {u['status']}, {u['items_synced']} synced, {u['items_skipped']} skipped"
        if u["error"]:
            line += f" - {u['error']}"
        lines.append(line)
    if d["hardening"]:
        lines += ["", "After the migration:"] + [f"  {i}. {s}" for i, s in enumerate(d["hardening"]["checklist"], 1)]
    return redact("\n".join(lines) + "\n")


_STYLE = """body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left}
th{background:#f3f3f3}.Failed,.CompletedWithErrors,.SyncedWithErrors{color:#b00020}
.Synced,.Completed{color:#0a7d28}.num{text-align:right}"""


def render_html(home: Home, name: str) -> str:
    """A self-contained HTML page: batch summary, users, skipped items."""
    d = batch_document(home, name)
    e = html.escape
    t = d["totals"]
    rows = "".join(
        f"<tr><td>{e(u['email'])}</td><td class=\"{e(u['status'])}\">{e(u['status'])}</td>"
        f"<td class=num>{u['items_synced']}</td><td class=num>{u['items_skipped']}</td>"
        f"<td class=num title=\"{u['bytes']} bytes\">{e(u['size'])}</td><td>{e(u['last_sync'] or '')}</td><td>{e(u['error'] or '')}</td></tr>"
        for u in d["users"])
    skipped = "".join(
        f"<tr><td>{e(u['email'])}</td><td>{e(str(s.get('folder') or ''))}</td><td>{e(str(s.get('date') or ''))}</td>"
        f"<td>{e(str(s.get('subject') or ''))}</td><td class=num>{e(human_bytes(s.get('size')))}</td>"
        f"<td>{e(str(s.get('reason') or ''))}</td></tr>"
        for u in d["users"] for s in u["skipped"])
    hard = d["hardening"]
    hardening = "" if not hard else (
        "<h2>After the migration</h2><ol>" + "".join(f"<li>{e(s)}</li>" for s in hard["checklist"]) + "</ol>"
        + (f"<h3>Exchange Online PowerShell</h3><pre>{e(hard['powershell'])}</pre>" if hard["powershell"] else ""))
    dest = f"tenant {d['tenant']}" if d["tenant"] else f"IMAP endpoint {d['dest_endpoint']}"
    page = f"""<!doctype html><html lang=en><head><meta charset=utf-8>
<title>mailtrek batch {e(d['name'])}</title><style>{_STYLE}</style></head><body>
<h1>Batch {e(d['name'])}: <span class="{e(d['status'])}">{e(d['status'])}</span></h1>
<p>From endpoint {e(d['source_endpoint'])} to {e(dest)}. Created {e(d['created_at'] or '')},
started {e(d['started_at'] or '-')}, completed {e(d['completed_at'] or '-')}.</p>
<p>{t['users']} users: {e(', '.join(f'{k} {v}' for k, v in t['by_status'].items()))}.
Items synced {t['items_synced']} ({e(human_bytes(t['bytes']))}), skipped {t['items_skipped']}.</p>
<h2>Users</h2><table><tr><th>Email</th><th>Status</th><th>Items synced</th><th>Items skipped</th>
<th>Size</th><th>Last successful sync</th><th>Error</th></tr>{rows}</table>
<h2>Skipped items</h2>{'<table><tr><th>User</th><th>Folder</th><th>Date</th><th>Subject</th><th>Size</th><th>Reason</th></tr>' + skipped + '</table>' if skipped else '<p>None.</p>'}
{hardening}
</body></html>
"""
    return redact(page)


def render_powershell(home: Home, name: str) -> str:
    """The hardening script of a completed batch; UsageError before completion."""
    hard = hardening_section(home, name)
    if not hard or not hard["powershell"]:
        from mailtrek.errors import UsageError

        raise UsageError(f"batch {name!r} has no hardening script",
                         hint="it is written once a batch into a Microsoft 365 tenant is completed")
    return redact(hard["powershell"])


def render(home: Home, name: str, fmt: str) -> str:
    """Return the report of batch ``name`` in ``fmt`` (csv, json, html, skipped-csv, powershell)."""
    renderers = {"csv": render_csv, "json": render_json, "html": render_html,
                 "skipped-csv": render_skipped_csv, "powershell": render_powershell}
    if fmt not in renderers:
        from mailtrek.errors import UsageError

        raise UsageError(f"unknown report format {fmt!r}", hint=f"use one of {', '.join(renderers)}")
    return renderers[fmt](home, name)
