"""``mailtrek copy`` and ``mailtrek verify`` for contacts and calendars (``dav+`` addresses).

``copy_cmd`` hands over here as soon as either address is a ``dav+http(s)://`` one, so
the mail paths stay as they were. The destination is another ``dav+`` account or
Microsoft 365 (``m365://USER@DOMAIN``), whose tenant comes as for mail: ``--tenant``
(stored in ``--home``), else ``MAILTREK_M365_*`` with ``--m365-authority``/``--graph-url``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer

from mailtrek.cli.common import ca_path, fail_on_error, home_dir, read_secret
from mailtrek.errors import EXIT_INCOMPLETE, EXIT_OK, UsageError
from mailtrek.pim.model import KINDS, Kind
from mailtrek.pim.report import report_dict, summary_line
from mailtrek.secrets import redact
from mailtrek.stores.dav import DavStore, is_dav_address, parse_dav_address
from mailtrek.stores.registry import open_pim_store, open_store
from mailtrek.stores.spec import DavSpec

if TYPE_CHECKING:
    from mailtrek.pim.model import PimDestination

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
    return open_store(DavSpec(address=address, password=password, ca_file=ca_path(ca_file),
                              connections=connections, label=side))


@dataclass(frozen=True, slots=True)
class M365Options:
    """How ``m365://`` finds its tenant: as ``mailtrek copy`` does for mail."""

    tenant: str | None = None  # a stored tenant's name (--tenant)
    home: Path | None = None
    authority: str | None = None  # --m365-authority
    graph_url: str | None = None  # --graph-url


def open_m365(dest: str, m365: M365Options, ca_file: Path | None) -> PimDestination:
    """The Graph contacts-and-calendars store for ``m365://USER@DOMAIN`` (unconnected).

    The tenant is a stored one or ``MAILTREK_M365_*``, as for mail (``stores.url.pim_spec``).
    """
    from mailtrek.cli.stored_refs import resolve
    from mailtrek.stores.url import OpenOptions, pim_spec

    stored = resolve("", dest, endpoint=None, dest_endpoint=None, tenant=m365.tenant,
                     home=m365.home)
    return open_pim_store(pim_spec(stored.dest, OpenOptions(
        tenant=stored.tenant, m365_authority=m365.authority, graph_url=m365.graph_url,
        ca_file=str(ca_file) if ca_file else None, label="dest")))


def _is_m365(dest: str) -> bool:
    return dest.lower().startswith("m365")


def open_pair(source: str, dest: str, *, source_password_file: Path | None,
              dest_password_file: Path | None, source_ca_file: Path | None,
              dest_ca_file: Path | None, connections: int,
              m365: M365Options | None = None) -> tuple[DavStore, Any]:
    """Both stores (unconnected); UsageError for pairs that are not supported (yet)."""
    if not is_dav_address(source):
        raise UsageError("contacts and calendars come from a dav+https:// (or dav+http://) "
                         "source; mail comes from imaps:// and friends")
    if m365 is not None and m365.tenant and not is_dav_address(dest):
        dest = dest if _is_m365(dest) else f"m365://{dest}"
    if not is_dav_address(dest) and not _is_m365(dest):
        raise UsageError("contacts and calendars go to a dav+https:// (or dav+http://) "
                         "account or to Microsoft 365 (m365://USER@DOMAIN)")
    src = _store("source", source, source_password_file, source_ca_file, connections)
    if _is_m365(dest):
        return src, open_m365(dest, m365 or M365Options(), dest_ca_file)
    return src, _store("dest", dest, dest_password_file, dest_ca_file, connections)


def _display(store: Any) -> str:
    address = getattr(store, "address", "")
    return address.display() if hasattr(address, "display") else f"m365://{address}"


def copy_dav(source: str, dest: str, *, items: str | None, state: Path | None,
             json_report: Path | None, source_password_file: Path | None,
             dest_password_file: Path | None, ca_file: Path | None,
             source_ca_file: Path | None, dest_ca_file: Path | None,
             connections: int, m365: M365Options | None = None) -> None:
    """Copy every calendar and address book of one DAV account to another DAV account or
    to Microsoft 365, exactly once."""
    from mailtrek.pim.sync import copy_pim
    from mailtrek.state.db import open_engine
    from mailtrek.state.pim import PimState

    with fail_on_error():
        kinds = parse_items(items)
        src, dst = open_pair(source, dest, source_password_file=source_password_file,
                             dest_password_file=dest_password_file,
                             source_ca_file=source_ca_file or ca_file,
                             dest_ca_file=dest_ca_file or ca_file, connections=connections,
                             m365=m365)
        engine = open_engine(state or home_dir() / "copy-state.db")
        key = f"{src.address.display()} -> {_display(dst)}"
        report = asyncio.run(_connected(src, dst, lambda: copy_pim(
            src, dst, PimState(engine, key), kinds, concurrency=connections)))
        report.source, report.destination = src.address.display(), _display(dst)
        if json_report:
            _write_json(json_report, report_dict(report))
        typer.echo(summary_line(report))
        problems = [(c, p) for c in report.collections for p in c.problems]
        for c, p in problems[:50]:
            typer.echo(f"  failed: {c.kind} {c.name!r} {p.href}: {p.reason}")
        if len(problems) > 50:
            typer.echo(f"  ... and {len(problems) - 50} more (see --json-report)")
        changed = [(c, n) for c in report.collections for n in c.changed]
        for c, n in changed[:20]:
            typer.echo(f"  changed: {c.kind} {c.name!r} {n.href}: {'; '.join(n.notes)}")
        if len(changed) > 20:
            typer.echo(f"  ... and {len(changed) - 20} more changed (see --json-report)")
        for e in report.errors:
            typer.echo(redact(f"  error: {e}"))
        raise typer.Exit(EXIT_OK if report.complete else EXIT_INCOMPLETE)


def verify_dav(source: str, dest: str, *, items: str | None, json_report: Path | None,
               source_password_file: Path | None, dest_password_file: Path | None,
               ca_file: Path | None, source_ca_file: Path | None, dest_ca_file: Path | None,
               connections: int, m365: M365Options | None = None) -> None:
    """Compare both accounts' calendars and address books object by object."""
    from mailtrek.pim.verify import verify_pim

    with fail_on_error():
        kinds = parse_items(items)
        src, dst = open_pair(source, dest, source_password_file=source_password_file,
                             dest_password_file=dest_password_file,
                             source_ca_file=source_ca_file or ca_file,
                             dest_ca_file=dest_ca_file or ca_file, connections=connections,
                             m365=m365)
        result = asyncio.run(_connected(src, dst, lambda: verify_pim(src, dst, kinds)))
        result["source"], result["destination"] = src.address.display(), _display(dst)
        if json_report:
            _write_json(json_report, result)
        t = result["totals"]
        typer.echo(f"verify: {t['source']} source objects, {t['matched']} matched, "
                   f"{t['missing']} missing, {t['different']} different, {t['extra']} extra "
                   f"on the destination, {t['broken']} unreadable in the source, "
                   f"{t['unsupported']} the destination cannot hold")
        for p in result["problems"][:50]:
            what = p.get("uid") or p.get("href")
            detail = ", ".join(p.get("fields", [])) or p.get("reason") or p.get("title") or ""
            typer.echo(f"  {p['problem']}: {p['kind']} {p['collection']!r} {what}: {detail}")
        raise typer.Exit(EXIT_OK if result["ok"] else EXIT_INCOMPLETE)


async def _connected(src: DavStore, dst: Any, work: Callable[[], Awaitable[T]]) -> T:
    """Connect both stores, run ``work``, and close both whatever happens."""
    try:
        await asyncio.gather(src.connect(), dst.connect())
        return await work()
    finally:
        await asyncio.gather(src.close(), dst.close(), return_exceptions=True)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
