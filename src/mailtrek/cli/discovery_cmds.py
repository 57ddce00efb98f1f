"""`endpoint discover` and `batch preflight`: find a source server, check a batch before it runs.

Thin, like :mod:`mailtrek.cli.orchestrate_cmds`: they join its ``endpoint`` and ``batch``
groups (:mod:`mailtrek.cli.groups`).
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Annotated, Any

import typer

from mailtrek.cli.common import HomeOpt, ca_path, env_password, handled, print_json, print_table
from mailtrek.cli.common import open_home_at as _home
from mailtrek.errors import EXIT_INCOMPLETE, UsageError
from mailtrek.secrets import redact

EXIT_NOT_FOUND = 4  # as `endpoint test` exits for DNS/TCP/TLS trouble


def register(endpoint_app: typer.Typer, batch_app: typer.Typer) -> None:
    """Add this module's commands to the ``endpoint`` and ``batch`` groups."""
    endpoint_app.command("discover")(endpoint_discover)
    batch_app.command("preflight")(batch_preflight)


@handled
def endpoint_discover(
    address: str,
    save: Annotated[str | None, typer.Option(help="store the best server as this endpoint")] = None,
    nameserver: Annotated[str | None, typer.Option(envvar="MAILTREK_NAMESERVER", help="DNS server IP[:PORT]")] = None,
    probe: Annotated[bool, typer.Option("--probe/--no-probe", help="connect to each candidate (TCP, TLS, CAPABILITY)")] = True,
    ca_file: Annotated[Path | None, typer.Option(help="CA bundle for the servers' certificates (HTTPS and IMAP)")] = None,
    ispdb_url: Annotated[str | None, typer.Option(help="Thunderbird ISP database base URL")] = None,
    https_port: Annotated[int | None, typer.Option(hidden=True, help="port of the domain's autoconfig URLs (tests)")] = None,
    user: Annotated[str | None, typer.Option(help="also log in as this user (password from MAILTREK_SOURCE_PASSWORD)")] = None,
    password_file: Annotated[Path | None, typer.Option(help="file with the password for --user")] = None,
    timeout: Annotated[float, typer.Option(help="seconds per DNS query, HTTP request or connection")] = 5.0,
    allow_plain: Annotated[bool, typer.Option(help="a server without TLS may be chosen (passwords in clear)")] = False,
    json_out: Annotated[bool, typer.Option("--json")] = False,
    home: HomeOpt = None,
) -> None:
    """Find the IMAP server of ADDRESS (SRV, autoconfig, ISP database, MX, guesses) and probe it."""
    from mailtrek.orchestrate.discovery import (
        DEFAULT_ISPDB_URL,
        DiscoveryConfig,
        discover,
        endpoint_add_command,
    )

    ca = ca_path(ca_file)
    config = DiscoveryConfig(nameserver=nameserver, ca_file=ca, ispdb_url=ispdb_url or DEFAULT_ISPDB_URL,
                             https_port=https_port, timeout=timeout, probe=probe, allow_plain=allow_plain)
    password = env_password("MAILTREK_SOURCE_PASSWORD", password_file) if user else None
    d = discover(address, config, user=user, password=password)
    best = d.best if probe else next((c for c in d.candidates if d.usable(c)), None)
    name = save or re.sub(r"[^A-Za-z0-9_-]+", "-", d.domain).strip("-")[:64] or "source"
    saved = None
    if save and best is not None:
        from mailtrek.orchestrate.endpoints import add_endpoint, make_endpoint

        ep = make_endpoint(save, host=best.host, port=best.port, security=best.security, ca_file=ca,
                           preset=best.preset)
        add_endpoint(_home(home), ep)
        saved = save
    if json_out:
        print_json(d.as_dict() | {"saved": saved,
                                   "command": endpoint_add_command(best, name, ca) if best else None})
    else:
        _show(d)
        if best is not None:
            typer.echo("")
            typer.echo(("saved as endpoint " + saved) if saved else "to store it:")
            if not saved:
                typer.echo("  " + endpoint_add_command(best, name, ca))
            if best.username:
                typer.echo(f"login names look like: {best.username}")
    if best is None:
        typer.echo(f"error: no working IMAP server found for {d.domain}" if d.candidates
                   else f"error: no candidate IMAP server found for {d.domain}", err=True)
        typer.echo("hint: pass the host to `mailtrek endpoint add` yourself, or check --nameserver", err=True)
        raise typer.Exit(EXIT_NOT_FOUND)
    if save and saved is None:
        raise typer.Exit(EXIT_NOT_FOUND)


def _show(d: Any) -> None:
    typer.echo(f"discovery for {d.address} (domain {d.domain})")
    for n in d.notes:
        typer.echo(redact(f"  {n}"))
    typer.echo("candidates, best first:")
    for c in d.candidates:
        status = ("NO TLS, NOT USED (--allow-plain)" if c.ok and not d.usable(c) else "ok" if c.ok
                  else "CERTIFICATE REJECTED" if c.certificate_rejected
                  else "not probed" if not c.probed else "FAILED")
        typer.echo(redact(f"  [{status}] {c.host}:{c.port} ({c.security}) from {'; '.join(c.sources)}"))
        failed = next((s for s in c.steps if not s.ok), None)
        if failed is not None:
            typer.echo(redact(f"      {failed.name}: {failed.detail}"))
        elif c.notes:  # it answered, but not on every address: worth knowing before a migration
            for n in c.notes:
                typer.echo(redact(f"      note: {n}"))


def batch_preflight(
    name: str,
    fmt: Annotated[str, typer.Option("--format", help="table | csv | json")] = "table",
    output: Annotated[Path | None, typer.Option(help="also write the findings CSV / JSON here")] = None,
    home: HomeOpt = None,
) -> None:
    """Check a batch before it runs: logins, sizes, skipped items, destinations, ETA (exit 1 if a user cannot start)."""
    handled(_preflight)(name, fmt, output, home)


def _preflight(name: str, fmt: str, output: Path | None, home: Path | None) -> None:
    from mailtrek.orchestrate.preflight import preflight_batch

    report = asyncio.run(preflight_batch(_home(home), name))
    print_preflight(report, fmt, output)


def print_preflight(report: Any, fmt: str, output: Path | None) -> None:
    """Print ``report`` as ``fmt``; exit EXIT_INCOMPLETE when a user cannot start."""
    from mailtrek.orchestrate.preflight import (
        blocker_rows,
        duration,
        finding_groups,
        render_csv,
        render_json,
        summary_rows,
    )

    if fmt not in ("table", "csv", "json"):
        raise UsageError(f"unknown --format {fmt!r}", hint="use table, csv or json")
    if fmt == "json":
        typer.echo(render_json(report), nl=False)
    elif fmt == "csv":
        typer.echo(render_csv(report), nl=False)
    else:
        pim = ["contacts/calendars"] if any(u.pim or u.pim_objects is not None for u in report.users) else []
        print_table(summary_rows(report), ["line", "email", "start", "login", "destination", "messages", "MB",
                                      "skipped", "warnings", "eta", *pim])
        blockers = blocker_rows(report)
        if blockers:
            typer.echo(f"\nBLOCKERS ({len(blockers)}): these users cannot start")
            print_table(blockers, ["line", "email", "kind", "reason"])
        groups = finding_groups(report)
        if groups:
            typer.echo("\nother findings by kind (each item: --output FILE.csv, or --format csv|json)")
            print_table(groups, ["kind", "items", "users", "example"])
        typer.echo(f"\nbatch ETA: {duration(report.eta_seconds)}"
                   + (f" ({report.eta_basis})" if report.eta_basis else ""))
    if output is not None:
        output.write_text(render_json(report) if output.suffix == ".json" else render_csv(report), encoding="utf-8")
        if fmt == "table":
            typer.echo(f"findings written to {output}")
    blocked = [u for u in report.users if not u.can_start]
    if blocked:
        typer.echo(f"{len(blocked)} user(s) cannot start: lines "
                   + ", ".join(str(u.line) for u in blocked), err=True)
        raise typer.Exit(EXIT_INCOMPLETE)
