"""``mailtrek copy`` and ``mailtrek verify``: one mailbox, from the command line."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from mailtrek.cli.common import fail_on_error, home_dir, read_secret
from mailtrek.errors import EXIT_INCOMPLETE, EXIT_OK, MailtrekError, UsageError
from mailtrek.sync.options import DEFAULT_MAX_ITEMS

# What a copy runs on (the state database, stores, the engine) is imported inside the
# commands: `mailtrek --help` and `mailtrek verify --help` load none of it.
if TYPE_CHECKING:
    from mailtrek.orchestrate.rates import RouteRate
    from mailtrek.state.db import MailboxState
    from mailtrek.stores.base import DestinationStore, SourceStore
    from mailtrek.stores.m365.config import TenantConfig
    from mailtrek.stores.spec import ImapSpec, MailSpec
    from mailtrek.stores.url import OpenOptions, StoreAddress
    from mailtrek.sync.options import CopyOptions, CopyReport

SourceArg = Annotated[str, typer.Argument(help="imaps://USER@HOST[:PORT], imap+starttls://..., imap://...")]
DestArg = Annotated[str, typer.Argument(help="imaps://..., imap+starttls://..., imap://..., "
                                             "m365://USER@DOMAIN or m365+imap://USER@DOMAIN")]
Include = Annotated[list[str] | None, typer.Option("--include", help="folder glob to copy (repeat)")]
Exclude = Annotated[list[str] | None, typer.Option("--exclude", help="folder glob to leave out (repeat)")]
Since = Annotated[str | None, typer.Option("--since", help="only messages received on/after DATE")]
Before = Annotated[str | None, typer.Option("--before", help="only messages received before DATE")]
MaxSize = Annotated[str, typer.Option("--max-size", help="skip (and report) larger messages")]
CaFile = Annotated[Path | None, typer.Option("--ca-file", help="trust this CA (PEM) for TLS on both sides")]
SrcCa = Annotated[Path | None, typer.Option("--source-ca-file", help="CA (PEM) for the source only")]
DstCa = Annotated[Path | None, typer.Option("--dest-ca-file", help="CA (PEM) for the destination only")]
JsonReport = Annotated[Path | None, typer.Option("--json-report", help="write the report as JSON")]
SrcPw = Annotated[Path | None, typer.Option("--source-password-file", help="file holding the source password")]
DstPw = Annotated[Path | None, typer.Option("--dest-password-file", help="file holding the destination password")]
SaKey = Annotated[Path | None, typer.Option(
    "--source-service-account-key",
    help="Google Workspace service-account JSON key (domain-wide delegation): XOAUTH2 for the source")]
SrcTok = Annotated[Path | None, typer.Option("--source-token-file", help="OAuth access token for the source")]
DstTok = Annotated[Path | None, typer.Option("--dest-token-file", help="OAuth access token for the destination")]
Conns = Annotated[int, typer.Option("--connections", min=1, max=16, help="connections per side")]
Authority = Annotated[str | None, typer.Option("--m365-authority", help="identity authority URL (https)")]
GraphUrl = Annotated[str | None, typer.Option("--graph-url", help="Microsoft Graph root URL")]
DestRoot = Annotated[str | None, typer.Option("--dest-root", help="put every non-special folder under this folder")]
ImapHost = Annotated[str | None, typer.Option("--m365-imap-host", help="HOST[:PORT] for m365+imap (default outlook.office365.com:993)")]
StoredEndpoint = Annotated[str | None, typer.Option(
    "--endpoint", help="stored source endpoint: SOURCE is then just the user name")]
StoredDest = Annotated[str | None, typer.Option(
    "--dest-endpoint", help="stored IMAP destination endpoint: DEST is then just the user name")]
StoredTenant = Annotated[str | None, typer.Option(
    "--tenant", help="stored Microsoft 365 tenant for DEST (m365://USER@DOMAIN or just USER@DOMAIN)")]
Home = Annotated[Path | None, typer.Option(
    "--home", envvar="MAILTREK_HOME", help="home holding the stored endpoints and tenants")]
Items = Annotated[str | None, typer.Option(
    "--items", help="dav+ sources: calendars,contacts (default both)")]
GmailLabels = Annotated[str, typer.Option(
    "--gmail-labels", help="Gmail sources: folders+categories, folders, all-mail or off "
                           "(auto: folders+categories when the source is Gmail)")]


def register(app: typer.Typer) -> None:
    """Add ``copy`` and ``verify`` to ``app``."""
    app.command("copy")(copy)
    app.command("verify")(verify)


def copy(
    source: SourceArg,
    dest: DestArg,
    state: Annotated[Path | None, typer.Option("--state", help="state database (SQLite path or URL)")] = None,
    include: Include = None,
    exclude: Exclude = None,
    since: Since = None,
    before: Before = None,
    max_size: MaxSize = "35MB",
    max_items: Annotated[int, typer.Option("--max-items", help="newest messages kept per mailbox")] = DEFAULT_MAX_ITEMS,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="read only; print the plan")] = False,
    no_flags: Annotated[bool, typer.Option("--no-flag-sync", help="do not re-sync flags of copied messages")] = False,
    ca_file: CaFile = None,
    source_ca_file: SrcCa = None,
    dest_ca_file: DstCa = None,
    json_report: JsonReport = None,
    source_password_file: SrcPw = None,
    dest_password_file: DstPw = None,
    source_token_file: SrcTok = None,
    dest_token_file: DstTok = None,
    source_service_account_key: SaKey = None,
    connections: Conns = 4,
    m365_authority: Authority = None,
    graph_url: GraphUrl = None,
    dest_root: DestRoot = None,
    m365_imap_host: ImapHost = None,
    gmail_labels: GmailLabels = "auto",
    keep_read_receipts: Annotated[bool, typer.Option(
        "--keep-read-receipts",
        help="into Microsoft 365: leave read-receipt requests armed (by default they are "
             "cleared, or Outlook sends receipts for old mail when it is opened)")] = False,
    endpoint: StoredEndpoint = None,
    dest_endpoint: StoredDest = None,
    tenant: StoredTenant = None,
    home: Home = None,
    items: Items = None,
) -> None:
    """Copy every message of one mailbox to another, exactly once.

    Re-run it at any time: what is already there is skipped, flag changes are synced.
    Exit 0 when every selected message is on the destination, 1 when some were skipped
    or failed (listed in the report), 2 usage, 3 authentication, 4 connection,
    5 protocol (the server broke IMAP or a limit), 6 store, 7 state, 8 internal error.
    dav+https:// addresses copy contacts and calendars instead (--items).
    """
    if _is_pim(source, dest, items):
        from mailtrek.cli.pim_cmd import copy_dav

        copy_dav(source, dest, items=items, state=state, json_report=json_report,
                 source_password_file=source_password_file,
                 dest_password_file=dest_password_file, ca_file=ca_file,
                 source_ca_file=source_ca_file, dest_ca_file=dest_ca_file,
                 connections=connections, m365=_pim_m365(tenant, home, m365_authority, graph_url))
    import asyncio

    from mailtrek.cli.stored_refs import resolve
    from mailtrek.orchestrate.rates import measured_rate, record_run, route_key
    from mailtrek.state.db import MailboxState, open_engine
    from mailtrek.stores.gmail.labels import check_mode as check_gmail_mode
    from mailtrek.stores.registry import open_destination, open_source
    from mailtrek.stores.spec import GraphSpec

    with fail_on_error():
        options = _options(include, exclude, since, before, max_size, connections, dest_root,
                           max_items=max_items, dry_run=dry_run, sync_flags=not no_flags)
        check_gmail_mode(gmail_labels)
        stored = resolve(source, dest, endpoint=endpoint, dest_endpoint=dest_endpoint, tenant=tenant, home=home)
        src_addr, dst_addr, src_spec, dst_spec = _specs(
            stored.source, stored.dest, options, ca_file, source_ca_file or stored.source_ca,
            dest_ca_file or stored.dest_ca, source_password_file,
            dest_password_file, source_token_file, dest_token_file, m365_authority, graph_url,
            m365_imap_host, dest_readonly=False, google_sa_key=source_service_account_key,
            keep_read_receipts=keep_read_receipts, tenant=stored.tenant)
        engine = open_engine(state or home_dir() / "copy-state.db")
        if isinstance(dst_spec, GraphSpec):  # Microsoft 365: the tenant's stored profile
            from mailtrek.state.m365 import ProfileMemory

            dst_spec = dst_spec.remembering(ProfileMemory(engine, _home_profiles(state)))
        src, dst = open_source(src_spec), open_destination(dst_spec)
        key = f"{src_addr.display()} -> {dst_addr.display()}"
        route = route_key(src_addr.host, "m365" if dst_addr.is_m365 else dst_addr.host)
        started = time.monotonic()
        report = asyncio.run(_run_copy(src, dst, MailboxState(engine, key), options,
                                       gmail_labels, measured_rate(engine, route)))
        if not options.dry_run:
            record_run(engine, route, report.total("copied"), report.total("bytes_copied"),
                       time.monotonic() - started)
        report.source, report.destination = src_addr.display(), dst_addr.display()
        _finish(report, json_report)
        raise typer.Exit(EXIT_OK if report.complete else EXIT_INCOMPLETE)


def _home_profiles(state: Any) -> Any:
    """Return a read-only engine on the home's SQLite database (where ``tenant probe``
    stores tenant profiles), None when there is none or it is the copy's own state.

    Opened without migrating: a home of another mailtrek version is read if it can be,
    never changed (ProfileMemory ignores a database it cannot read).
    """
    from sqlalchemy import create_engine

    home_db = home_dir() / "state.db"
    if not home_db.is_file() or (state is not None and Path(str(state)).resolve() == home_db.resolve()):
        return None
    return create_engine(f"sqlite:///file:{home_db}?mode=ro&uri=true")


async def _run_copy(src: SourceStore, dst: DestinationStore, state: MailboxState, options: CopyOptions,
                    gmail_labels: str = "auto", rate: RouteRate | None = None) -> CopyReport:
    import asyncio

    from mailtrek.cli.progress import ProgressView
    from mailtrek.stores.registry import note_deferral, source_view
    from mailtrek.sync.engine import copy_mailbox

    view = ProgressView(enabled=sys.stderr.isatty(), rate=rate)
    try:
        await asyncio.gather(src.connect(), dst.connect())
        source = await source_view(src, gmail_labels, done=state.messages_of,
                                   atom_keywords=dst.features.atom_keywords, quota_dir=home_dir() / "gmail-quota")
        with view:
            report = await copy_mailbox(source, dst, state, options, progress=view.event)
        report.warnings.extend(getattr(source, "warnings", None) or [])
        left = getattr(dst, "keywords_left", None)
        if left:  # Exchange over IMAP: said once, not per message
            report.warnings.append(
                "Exchange over IMAP keeps no mail-system keywords (they would become "
                "categories); not carried: "
                + ", ".join(f"{k} ({n} messages)" for k, n in sorted(left.items())))
        note_deferral(source, report)  # the day's Gmail quota is used: say when it goes on
        return report
    finally:
        await asyncio.gather(src.close(), dst.close(), return_exceptions=True)


def verify(
    source: SourceArg,
    dest: DestArg,
    include: Include = None,
    exclude: Exclude = None,
    since: Since = None,
    before: Before = None,
    max_size: MaxSize = "35MB",
    ca_file: CaFile = None,
    source_ca_file: SrcCa = None,
    dest_ca_file: DstCa = None,
    json_report: JsonReport = None,
    source_password_file: SrcPw = None,
    dest_password_file: DstPw = None,
    source_token_file: SrcTok = None,
    dest_token_file: DstTok = None,
    connections: Conns = 4,
    m365_authority: Authority = None,
    graph_url: GraphUrl = None,
    dest_root: DestRoot = None,
    m365_imap_host: ImapHost = None,
    state: Annotated[Path | None, typer.Option(
        "--state", help="the copy's state database: check what it recorded first "
                        "(default: the one copy uses, when it exists)")] = None,
    gmail_labels: GmailLabels = "auto",
    endpoint: StoredEndpoint = None,
    dest_endpoint: StoredDest = None,
    tenant: StoredTenant = None,
    home: Home = None,
    items: Items = None,
) -> None:
    """Compare both sides message by message; list what is missing, different or extra.

    What the copy's state recorded (source message -> destination item) is checked first;
    fingerprints pair the rest. Exit 0 only when nothing selected is missing or
    different and every selected folder exists on the destination.
    """
    if _is_pim(source, dest, items):
        from mailtrek.cli.pim_cmd import verify_dav

        verify_dav(source, dest, items=items, json_report=json_report,
                   source_password_file=source_password_file,
                   dest_password_file=dest_password_file, ca_file=ca_file,
                   source_ca_file=source_ca_file, dest_ca_file=dest_ca_file,
                   connections=connections,
                   m365=_pim_m365(tenant, home, m365_authority, graph_url))
    import asyncio

    from mailtrek.cli.stored_refs import resolve
    from mailtrek.state.db import MailboxState, open_engine
    from mailtrek.stores.gmail.labels import check_mode as check_gmail_mode
    from mailtrek.stores.registry import open_destination, open_source, source_view
    from mailtrek.sync.verify import verify_mailbox

    with fail_on_error():
        options = _options(include, exclude, since, before, max_size, connections, dest_root)
        check_gmail_mode(gmail_labels)
        stored = resolve(source, dest, endpoint=endpoint, dest_endpoint=dest_endpoint, tenant=tenant, home=home)
        src_addr, dst_addr, src_spec, dst_spec = _specs(
            stored.source, stored.dest, options, ca_file, source_ca_file or stored.source_ca,
            dest_ca_file or stored.dest_ca, source_password_file,
            dest_password_file, source_token_file, dest_token_file, m365_authority, graph_url,
            m365_imap_host, dest_readonly=True, tenant=stored.tenant)
        src, dst = open_source(src_spec), open_destination(dst_spec)
        key = f"{src_addr.display()} -> {dst_addr.display()}"
        notes: list[str] = []
        mailbox_state = (MailboxState(open_engine(state), key) if state is not None
                         else _default_state(key, notes))

        async def run() -> dict[str, Any]:
            try:
                await asyncio.gather(src.connect(), dst.connect())
                view = await source_view(
                    src, gmail_labels, atom_keywords=dst.features.atom_keywords,
                    done=mailbox_state.messages_of if mailbox_state else None)
                result = await verify_mailbox(view, dst, options, mailbox_state)
                warnings = notes + list(getattr(view, "warnings", []) or [])
                if warnings:
                    result["warnings"] = warnings
                return result
            finally:
                await asyncio.gather(src.close(), dst.close(), return_exceptions=True)

        result = asyncio.run(run())
        result["source"], result["destination"] = src_addr.display(), dst_addr.display()
        if json_report:
            json_report.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n",
                                   encoding="utf-8")
        t = result["totals"]
        typer.echo(
            f"verify: {t['source']} source, {t['matched']} matched, {t['missing']} missing, "
            f"{t['different']} different, {t['extra']} extra on the destination"
            + (f"; {t.get('matched_by_state', 0)} checked against the state"
               if result.get("used_state") else "; no state: paired by content")
            + (f"; {t['dates_from_headers']} dated from their headers (Microsoft 365 import)"
               if t.get("dates_from_headers") else "")
            + (f"; {t['dates_not_kept']} without a date to keep" if t.get("dates_not_kept")
               else "")
            + (f"; {t['changed_by_server']} matched as the server stores them (listed)"
               if t.get("changed_by_server") else "")
        )
        for f in result.get("missing_folders", []):
            typer.echo(f"  missing folder: {f['folder']} (expected at {f['destination']})")
        for w in result.get("warnings", []):
            typer.echo(f"  warning: {w}")
        for item in result["problems"][:50]:
            typer.echo(f"  {item['kind']}: {item['folder']} uid {item.get('uid', '-')}: "
                       f"{item.get('subject') or ''} {item.get('detail') or ''}".rstrip())
        raise typer.Exit(EXIT_OK if result["ok"] else EXIT_INCOMPLETE)


def _default_state(key: str, notes: list[str]) -> MailboxState | None:
    """The state ``copy`` keeps by default, when it exists and can be read; else None
    (verify then pairs by content alone, and says why in ``notes``)."""
    from mailtrek.state.db import MailboxState, open_engine

    path = home_dir() / "copy-state.db"
    if not path.exists():
        return None
    try:
        found = MailboxState(open_engine(path), key)
        found.folder_states()
    except MailtrekError as e:
        notes.append(f"the default state {path} was not used: {e}")
        return None
    return found


def _pim_m365(tenant: str | None, home: Path | None, authority: str | None,
              graph_url: str | None) -> Any:
    """The Microsoft 365 options of a contacts-and-calendars copy (as for mail)."""
    from mailtrek.cli.pim_cmd import M365Options

    return M365Options(tenant=tenant, home=home, authority=authority, graph_url=graph_url)


def _is_pim(source: str, dest: str, items: str | None) -> bool:
    """True for contacts and calendars: a dav+ address on either side, or --items."""
    from mailtrek.stores.dav.address import is_dav_address

    return is_dav_address(source) or is_dav_address(dest) or items is not None


def _options(include: list[str] | None, exclude: list[str] | None, since: str | None,
             before: str | None, max_size: str, connections: int, dest_root: str | None,
             **more: Any) -> CopyOptions:
    """The run's options from the command line (raises UsageError for bad values)."""
    from mailtrek.sync.filters import parse_date, parse_size
    from mailtrek.sync.options import CopyOptions

    return CopyOptions(
        include=include or [], exclude=exclude or [],
        since=parse_date(since) if since else None,
        before=parse_date(before) if before else None,
        max_size=parse_size(max_size), connections=connections,
        dest_root=tuple(p for p in (dest_root or "").split("/") if p), **more,
    )


def _specs(
    source: str, dest: str, options: CopyOptions, ca_file: Path | None,
    source_ca_file: Path | None, dest_ca_file: Path | None, source_password_file: Path | None,
    dest_password_file: Path | None, source_token_file: Path | None,
    dest_token_file: Path | None, m365_authority: str | None, graph_url: str | None,
    m365_imap_host: str | None, *, dest_readonly: bool, google_sa_key: Path | None = None,
    keep_read_receipts: bool = False, tenant: TenantConfig | None = None,
) -> tuple[StoreAddress, StoreAddress, ImapSpec, MailSpec]:
    """Parse both addresses and return both store specs with their secrets."""
    from mailtrek.stores.spec import ImapSpec
    from mailtrek.stores.url import parse_address, spec_for

    src_addr, dst_addr = parse_address(source), parse_address(dest)
    if not src_addr.is_imap:
        raise UsageError("the source must be an IMAP address")
    src_opts = _open_opts("source", src_addr, source_password_file, source_token_file,
                          source_ca_file or ca_file, options.connections, True)
    if google_sa_key is not None:
        src_opts.google_sa_key = str(google_sa_key)
    dst_opts = _open_opts("dest", dst_addr, dest_password_file, dest_token_file,
                          dest_ca_file or ca_file, options.connections, dest_readonly)
    dst_opts.tenant, dst_opts.m365_authority, dst_opts.graph_url = tenant, m365_authority, graph_url
    dst_opts.dest_root, dst_opts.max_size = options.dest_root, options.max_size
    dst_opts.m365_imap_host, dst_opts.disarm_read_receipts = m365_imap_host, not keep_read_receipts
    dst_spec = spec_for(dst_addr, dst_opts)
    src_spec = spec_for(src_addr, src_opts)
    assert isinstance(src_spec, ImapSpec)  # an IMAP address, checked above
    return src_addr, dst_addr, src_spec, dst_spec


def _open_opts(side: str, addr: StoreAddress, pw_file: Path | None, tok_file: Path | None,
               ca_file: Path | None, connections: int, readonly: bool) -> OpenOptions:
    """The secrets and settings the command line gives one side (read from files/env)."""
    from mailtrek.stores.url import OpenOptions

    env = "MAILTREK_SOURCE_PASSWORD" if side == "source" else "MAILTREK_DEST_PASSWORD"
    password = read_secret(pw_file, env) if addr.is_imap and addr.auth not in (
        "xoauth2", "oauthbearer") else None
    token = read_secret(tok_file, "MAILTREK_SOURCE_TOKEN" if side == "source"
                        else "MAILTREK_DEST_TOKEN", required=False)
    return OpenOptions(password=password, token=token, ca_file=str(ca_file) if ca_file else None,
                       connections=connections, readonly=readonly, label=side)


def _finish(report: CopyReport, json_report: Path | None) -> None:
    from mailtrek.secrets import redact
    from mailtrek.sync.report import plan_lines, problem_lines, report_dict, summary_line

    if json_report:
        json_report.write_text(json.dumps(report_dict(report), indent=2, ensure_ascii=False)
                               + "\n", encoding="utf-8")
    typer.echo(summary_line(report))
    if report.dry_run:
        for line in plan_lines(report):
            typer.echo(line)
    for line in problem_lines(report):
        typer.echo(line)
    for s in report.skipped[:50]:
        typer.echo(f"  skipped: {s.folder} uid {s.uid} ({s.size} bytes, {s.date or '-'}): "
                   f"{s.subject or '(no subject)'}: {s.reason}")
    if len(report.skipped) > 50:
        typer.echo(f"  ... and {len(report.skipped) - 50} more (see --json-report)")
    if not json_report:  # the summary says "see the report": show the changes here
        changed = [(f.source, n) for f in report.folders for n in f.notes]
        for folder, n in changed[:20]:
            typer.echo(f"  changed: {folder} uid {n.uid}: {n.subject or '(no subject)'}: "
                       f"{n.note}" + (" (not exact)" if n.lossy else ""))
        if len(changed) > 20:
            typer.echo(f"  ... and {len(changed) - 20} more (see --json-report)")
    for e in report.errors:
        typer.echo(redact(f"  error: {e}"))
    for w in report.warnings:
        typer.echo(f"  warning: {w}")
