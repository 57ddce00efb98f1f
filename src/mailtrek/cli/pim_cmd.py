"""``mailtrek copy`` and ``mailtrek verify`` for contacts and calendars (``dav+`` addresses).

``copy_cmd`` hands over here as soon as either address is a ``dav+http(s)://`` one, so
the mail paths stay as they were.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import typer

from mailtrek.cli.common import ca_path, fail_on_error, home_dir, read_secret
from mailtrek.errors import EXIT_INCOMPLETE, EXIT_OK, UsageError
from mailtrek.pim.model import KINDS, Kind
from mailtrek.pim.report import report_dict, summary_line
from mailtrek.stores.dav import DavStore, is_dav_address, parse_dav_address

T = TypeVar("T")

ITEM_NAMES: dict[str, Kind] = {"calendars": "calendar", "calendar": "calendar",
                               "contacts": "contacts", "contact": "contacts"}


def parse_items(text: str | None) -> tuple[Kind, ...]:
    """``calendars,contacts`` (the default: both) → the kinds to copy; UsageError if unknown."""
    if not text:
        return KINDS
    kinds: list[Kind] = []
    for word in (w.strip().lower() for w in text.split(",") if w.strip()):
        if word not in ITEM_NAMES:
            raise UsageError(f"--items takes calendars and/or contacts, not {word!r}")
        kinds.append(ITEM_NAMES[word])
    return tuple(dict.fromkeys(kinds)) or KINDS


def _store(side: str, text: str, pw_file: Path | None, ca_file: Path | None,
           connections: int) -> DavStore:
    address = parse_dav_address(text)
    env = "MAILTREK_SOURCE_PASSWORD" if side == "source" else "MAILTREK_DEST_PASSWORD"
    password = read_secret(pw_file, env)
    if password is None:
        flag = "--source-password-file" if side == "source" else "--dest-password-file"
        raise UsageError(f"no {side} password: set {env} or pass {flag}")
    return DavStore(address, password, ca_file=ca_path(ca_file), connections=connections)


def open_pair(source: str, dest: str, *, source_password_file: Path | None,
              dest_password_file: Path | None, source_ca_file: Path | None,
              dest_ca_file: Path | None, connections: int) -> tuple[DavStore, DavStore]:
    """Both DAV stores (unconnected); UsageError for pairs that are not supported (yet)."""
    if not is_dav_address(source):
        raise UsageError("contacts and calendars come from a dav+https:// (or dav+http://) "
                         "source; mail comes from imaps:// and friends")
    if dest.lower().startswith("m365"):
        raise UsageError("contacts and calendars into Microsoft 365 (m365://) are not done "
                         "yet: copy into another dav+https:// account for now")
    if not is_dav_address(dest):
        raise UsageError("contacts and calendars go to a dav+https:// (or dav+http://) "
                         "destination")
    return (_store("source", source, source_password_file, source_ca_file, connections),
            _store("dest", dest, dest_password_file, dest_ca_file, connections))


def copy_dav(source: str, dest: str, *, items: str | None, state: Path | None,
             json_report: Path | None, source_password_file: Path | None,
             dest_password_file: Path | None, ca_file: Path | None,
             source_ca_file: Path | None, dest_ca_file: Path | None,
             connections: int) -> None:
    """Copy every calendar and address book of one DAV account to another, exactly once."""
    from mailtrek.pim.sync import copy_pim
    from mailtrek.state.db import open_engine
    from mailtrek.state.pim import PimState

    with fail_on_error():
        kinds = parse_items(items)
        src, dst = open_pair(source, dest, source_password_file=source_password_file,
                             dest_password_file=dest_password_file,
                             source_ca_file=source_ca_file or ca_file,
                             dest_ca_file=dest_ca_file or ca_file, connections=connections)
        engine = open_engine(state or home_dir() / "copy-state.db")
        key = f"{src.address.display()} -> {dst.address.display()}"
        report = asyncio.run(_connected(src, dst, lambda: copy_pim(
            src, dst, PimState(engine, key), kinds, concurrency=connections)))
        report.source, report.destination = src.address.display(), dst.address.display()
        if json_report:
            _write_json(json_report, report_dict(report))
        typer.echo(summary_line(report))
        problems = [(c, p) for c in report.collections for p in c.problems]
        for c, p in problems[:50]:
            typer.echo(f"  failed: {c.kind} {c.name!r} {p.href}: {p.reason}")
        if len(problems) > 50:
            typer.echo(f"  ... and {len(problems) - 50} more (see --json-report)")
        for e in report.errors:
            typer.echo(f"  error: {e}")
        raise typer.Exit(EXIT_OK if report.complete else EXIT_INCOMPLETE)


def verify_dav(source: str, dest: str, *, items: str | None, json_report: Path | None,
               source_password_file: Path | None, dest_password_file: Path | None,
               ca_file: Path | None, source_ca_file: Path | None, dest_ca_file: Path | None,
               connections: int) -> None:
    """Compare both accounts' calendars and address books object by object."""
    from mailtrek.pim.verify import verify_pim

    with fail_on_error():
        kinds = parse_items(items)
        src, dst = open_pair(source, dest, source_password_file=source_password_file,
                             dest_password_file=dest_password_file,
                             source_ca_file=source_ca_file or ca_file,
                             dest_ca_file=dest_ca_file or ca_file, connections=connections)
        result = asyncio.run(_connected(src, dst, lambda: verify_pim(src, dst, kinds)))
        result["source"], result["destination"] = src.address.display(), dst.address.display()
        if json_report:
            _write_json(json_report, result)
        t = result["totals"]
        typer.echo(f"verify: {t['source']} source objects, {t['matched']} matched, "
                   f"{t['missing']} missing, {t['different']} different, {t['extra']} extra "
                   f"on the destination, {t['broken']} unreadable in the source")
        for p in result["problems"][:50]:
            what = p.get("uid") or p.get("href")
            detail = ", ".join(p.get("fields", [])) or p.get("reason") or p.get("title") or ""
            typer.echo(f"  {p['problem']}: {p['kind']} {p['collection']!r} {what}: {detail}")
        raise typer.Exit(EXIT_OK if result["ok"] else EXIT_INCOMPLETE)


async def _connected(src: DavStore, dst: DavStore, work: Callable[[], Awaitable[T]]) -> T:
    """Connect both stores, run ``work``, and close both whatever happens."""
    try:
        await asyncio.gather(src.connect(), dst.connect())
        return await work()
    finally:
        await asyncio.gather(src.close(), dst.close(), return_exceptions=True)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
