"""The Exchange-style workflow commands: endpoint, tenant, batch, run, cutover.

Thin: parse options, call :mod:`mailtrek.orchestrate`, print. Every command takes
``--home DIR`` (or ``MAILTREK_HOME``); errors print their message and hint (secrets
redacted) and exit with the error's code.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from mailtrek.cli.common import (
    HomeOpt,
    ca_path,
    env_password,
    handled,
    log_service_to_stdout,
    print_json,
    print_table,
)
from mailtrek.cli.common import open_home_at as _home
from mailtrek.cli.groups import batch_app, cutover_app, endpoint_app, tenant_app
from mailtrek.errors import EXIT_INCOMPLETE, UsageError
from mailtrek.secrets import read_secret_file, redact, remember

if TYPE_CHECKING:
    from mailtrek.service.batches import SourceEvent

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.add_typer(endpoint_app, name="endpoint")
    app.add_typer(tenant_app, name="tenant")
    app.add_typer(batch_app, name="batch")
    app.add_typer(cutover_app, name="cutover")
    app.command("run")(run_cmd)
    from mailtrek.cli import (
        discovery_cmds,  # endpoint discover, batch preflight
        member_cmds,  # retry, sync, stop/resume --user, remove-user, ...
        tenant_m365_cmds,  # tenant add-app, apps, remove-app, probe
    )

    discovery_cmds.register(endpoint_app, batch_app)
    member_cmds.register(batch_app)
    tenant_m365_cmds.register(tenant_app)


# -- endpoints ---------------------------------------------------------------------------
@endpoint_app.command("add")
@handled
def endpoint_add(
    name: str,
    host: Annotated[str | None, typer.Option(help="IMAP server host name")] = None,
    port: Annotated[int | None, typer.Option(help="port [993 for ssl, else 143]")] = None,
    security: Annotated[str | None, typer.Option(help="ssl | starttls | none")] = None,
    ca_file: Annotated[Path | None, typer.Option(help="CA bundle that verifies the server")] = None,
    preset: Annotated[str | None, typer.Option(help="provider preset (gmail, yahoo, dovecot, ...; see `endpoint presets`)")] = None,
    auth: Annotated[str, typer.Option(help="password | xoauth2")] = "password",
    admin_format: Annotated[str | None, typer.Option(help="dovecot (user*admin) | exchange | mirapoint")] = None,
    admin_user: Annotated[str | None, typer.Option(help="as a destination: admin who logs in for every user")] = None,
    admin_password_file: Annotated[Path | None, typer.Option(help="file with the admin's password")] = None,
    service_account_key: Annotated[Path | None, typer.Option(help="Google Workspace: service-account JSON key with domain-wide delegation (users need no passwords; stored encrypted)")] = None,
    max_concurrent_migrations: Annotated[int | None, typer.Option(help="initial syncs at once [100]")] = None,
    max_concurrent_incremental: Annotated[int | None, typer.Option(help="incremental syncs at once [20]")] = None,
    connections_per_mailbox: Annotated[int | None, typer.Option(help="IMAP connections per mailbox [4]")] = None,
    dav_url: Annotated[str | None, typer.Option(help="contacts/calendars server, https://HOST[:PORT]/PATH (default: the preset's, else DNS SRV and /.well-known of each user's domain)")] = None,
    home: HomeOpt = None,
) -> None:
    """Store an IMAP endpoint."""
    from mailtrek.orchestrate.endpoints import read_service_account_key
    from mailtrek.service.endpoints import EndpointInput, build_endpoint, store_endpoint

    inp = EndpointInput(
        name, host=host, port=port, security=security, ca_file=ca_path(ca_file), preset=preset, auth=auth,
        admin_format=admin_format, admin_user=admin_user, max_concurrent_migrations=max_concurrent_migrations,
        max_concurrent_incremental=max_concurrent_incremental, connections_per_mailbox=connections_per_mailbox,
        security_given=security is not None, dav_url=dav_url)
    built = build_endpoint(inp)  # a refused endpoint leaves no home behind
    for w in built.warnings:
        typer.echo(f"warning: {w}", err=True)
    # Read before anything is stored: a bad key file leaves no endpoint behind.
    inp.service_account = read_service_account_key(service_account_key) if service_account_key else None
    inp.admin_password = env_password("MAILTREK_ADMIN_PASSWORD", admin_password_file) if admin_user else None
    if admin_user and not inp.admin_password:
        raise UsageError("--admin-user needs a password", hint="set MAILTREK_ADMIN_PASSWORD or --admin-password-file")
    ep = store_endpoint(_home(home), built, inp).endpoint
    typer.echo(f"endpoint {ep.name}: {ep.host}:{ep.port} ({ep.security}), "
               f"{ep.max_concurrent_migrations} initial / {ep.max_concurrent_incremental} incremental syncs at once, "
               f"{ep.connections_per_mailbox} connections per mailbox")
    if ep.uses_service_account:
        typer.echo(f"users log in with service account {ep.service_account_email} (XOAUTH2); "
                   "the CSV's Password column may be empty")
        typer.echo("hint: the account's client id needs domain-wide delegation with the scope "
                   "https://mail.google.com/; check one user with "
                   f"`mailtrek endpoint test {ep.name} --user someone@your.domain`")
    elif ep.preset:
        from mailtrek.orchestrate.presets import get_preset

        typer.echo(f"hint: {get_preset(ep.preset).hint}")


@endpoint_app.command("presets")
def endpoint_presets() -> None:
    """List the provider presets and their known limits."""
    from mailtrek.orchestrate.presets import PRESETS

    print_table([{"preset": p.name, "provider": p.title, "host": p.host or "(your host)",
             "port": p.port, "security": p.security, "conns/account": p.connections_per_account,
             "MB/day": p.daily_download_mb,
             "contacts/calendars": p.dav_preset.describe() if p.dav_preset else "(DNS)"}
            for p in PRESETS.values()],
           ["preset", "provider", "host", "port", "security", "conns/account", "MB/day", "contacts/calendars"])


@endpoint_app.command("list")
@handled
def endpoint_list(json_out: Annotated[bool, typer.Option("--json")] = False, home: HomeOpt = None) -> None:
    """List stored endpoints."""
    from mailtrek.orchestrate.endpoints import list_endpoints

    rows = [e.public() for e in list_endpoints(_home(home))]
    if json_out:
        print_json(rows)
    else:
        print_table(rows, ["name", "host", "port", "security", "preset", "auth", "max_concurrent_migrations",
                      "max_concurrent_incremental"])


@endpoint_app.command("show")
@handled
def endpoint_show(name: str, home: HomeOpt = None) -> None:
    """Show one endpoint."""
    from mailtrek.orchestrate.endpoints import get_endpoint

    print_json(get_endpoint(_home(home), name).public())


@endpoint_app.command("remove")
@handled
def endpoint_remove(name: str, home: HomeOpt = None) -> None:
    """Remove an endpoint no batch uses."""
    from mailtrek.orchestrate.endpoints import remove_endpoint

    remove_endpoint(_home(home), name)
    typer.echo(f"endpoint {name} removed")


@endpoint_app.command("test")
@handled
def endpoint_test(
    name: str,
    user: Annotated[str | None, typer.Option(help="log in as this user (admin formats allowed)")] = None,
    password_file: Annotated[Path | None, typer.Option(help="file with the password [env MAILTREK_SOURCE_PASSWORD; else asked on a terminal]")] = None,
    ca_file: Annotated[Path | None, typer.Option(help="CA bundle to verify the server with for this test (store it with `endpoint edit --ca-file`)")] = None,
    home: HomeOpt = None,
) -> None:
    """Check DNS, TCP, TLS and certificate, capabilities and a login, step by step.

    The login is the one a migration makes, through the same client. On a service-account
    endpoint it fetches a token for --user and uses XOAUTH2; on an endpoint with a stored
    admin and no password given, the admin logs in for --user (SASL PLAIN authzid).
    """
    from mailtrek.orchestrate.endpoints import get_endpoint
    from mailtrek.service.endpoints import probe

    h = _home(home)
    password = None
    ep = get_endpoint(h, name)
    if user and not ep.uses_service_account:  # a service account fetches a token
        password = env_password("MAILTREK_SOURCE_PASSWORD", password_file)
        if password is None and not ep.admin_user and sys.stdin.isatty():
            password = remember(typer.prompt(f"Password for {user}", hide_input=True))
    result = probe(h, name, user, password, ca_file=ca_path(ca_file))
    for s in result.steps:
        typer.echo(redact(f"[{'ok' if s.ok else 'FAILED'}] {s.name}: {s.detail} ({s.seconds * 1000:.0f} ms)"))
        if s.advice:
            typer.echo(redact(f"      what to do: {s.advice}"))
    failed = result.failed
    if failed is not None:
        typer.echo(f"endpoint {name}: the {failed.name} step failed", err=True)
        raise typer.Exit(4 if failed.name in ("dns", "tcp", "tls") else 3 if failed.name in ("login", "token") else 5)
    typer.echo(f"endpoint {name}: all checks passed" + ("" if user else " (no --user: login not tried)"))


# -- tenants -----------------------------------------------------------------------------
@tenant_app.command("add")
@handled
def tenant_add(
    name: str,
    tenant_id: Annotated[str, typer.Option(help="directory (tenant) id")],
    client_id: Annotated[str, typer.Option(help="application (client) id")],
    client_secret_file: Annotated[Path, typer.Option(help="file holding the client secret")],
    m365_authority: Annotated[str | None, typer.Option(help="authority URL [login.microsoftonline.com/TENANT]")] = None,
    graph_url: Annotated[str | None, typer.Option(help="Graph root [https://graph.microsoft.com]")] = None,
    ca_file: Annotated[Path | None, typer.Option(help="CA bundle for the identity and Graph endpoints")] = None,
    test: Annotated[bool, typer.Option("--test/--no-test", help="get a token before storing")] = True,
    home: HomeOpt = None,
) -> None:
    """Store a Microsoft 365 tenant (secret encrypted) after checking it can get a token."""
    from mailtrek.service.tenants import TenantInput, check_tenant, create_tenant

    inp = TenantInput(name, tenant_id, client_id, read_secret_file(client_secret_file),
                      authority=m365_authority, graph_url=graph_url, ca_file=ca_path(ca_file), test=test)
    for n in check_tenant(inp)[1]:  # before the home opens: a refused tenant leaves nothing behind
        typer.echo(f"note: {n}")
    h = _home(home)
    created = asyncio.run(create_tenant(h, inp))
    if created.tested:
        typer.echo(f"tenant {name}: token acquired")
    typer.echo(f"tenant {name} stored (client secret encrypted in {h.path})")


@tenant_app.command("test")
@handled
def tenant_test(name: str, home: HomeOpt = None) -> None:
    """Get a token for a stored tenant."""
    from mailtrek.orchestrate.endpoints import get_tenant
    from mailtrek.service.tenants import token_check

    h = _home(home)
    asyncio.run(token_check(h, get_tenant(h, name)))
    typer.echo(f"tenant {name}: token acquired")


@tenant_app.command("list")
@handled
def tenant_list(json_out: Annotated[bool, typer.Option("--json")] = False, home: HomeOpt = None) -> None:
    """List stored tenants."""
    from mailtrek.orchestrate.endpoints import list_tenants

    rows = [t.public() for t in list_tenants(_home(home))]
    if json_out:
        print_json(rows)
    else:
        print_table(rows, ["name", "tenant_id", "client_id", "authority", "graph_url"])


@tenant_app.command("show")
@handled
def tenant_show(name: str, home: HomeOpt = None) -> None:
    """Show one tenant (never its secret)."""
    from mailtrek.orchestrate.endpoints import get_tenant

    print_json(get_tenant(_home(home), name).public())


@tenant_app.command("remove")
@handled
def tenant_remove(name: str, home: HomeOpt = None) -> None:
    """Remove a tenant no batch uses (its encrypted secret goes with it)."""
    from mailtrek.orchestrate.endpoints import remove_tenant

    remove_tenant(_home(home), name)
    typer.echo(f"tenant {name} removed")


# -- batches -----------------------------------------------------------------------------
@batch_app.command("create")
@handled
def batch_create(
    name: str,
    csv_file: Annotated[Path, typer.Option("--csv", help="users CSV: EmailAddress,UserName,Password[,UserRoot]")],
    endpoint: Annotated[str | None, typer.Option(help="source endpoint (or --discover)")] = None,
    tenant: Annotated[str | None, typer.Option(help="Microsoft 365 destination tenant")] = None,
    dest_endpoint: Annotated[str | None, typer.Option(help="IMAP destination endpoint (instead of --tenant)")] = None,
    exclude_folder: Annotated[list[str] | None, typer.Option(help="folder (glob) to leave out; repeatable")] = None,
    since: Annotated[str | None, typer.Option(help="only mail received on/after this date")] = None,
    before: Annotated[str | None, typer.Option(help="only mail received before this date")] = None,
    max_size: Annotated[str | None, typer.Option(help="skip larger messages (bytes or 35M) [35M]")] = None,
    gmail_labels: Annotated[str, typer.Option(help="Gmail sources: folders+categories, folders, all-mail, off (auto: folders+categories when Gmail)")] = "auto",
    items: Annotated[str | None, typer.Option(help="what each user's move carries: mail, calendars, contacts (e.g. mail,calendars,contacts) [mail]; the CSV's Items column decides per user")] = None,
    autostart: Annotated[bool, typer.Option(help="start right away")] = False,
    notify: Annotated[list[str] | None, typer.Option(help="address for status e-mails; repeatable")] = None,
    incremental_interval: Annotated[float, typer.Option(help="hours between incremental syncs")] = 24.0,
    start_at: Annotated[str | None, typer.Option(help="start by itself then (ISO time, UTC unless an offset; +2h)")] = None,
    allow_unknown_columns: Annotated[bool, typer.Option(help="ignore extra CSV columns")] = False,
    dry_run: Annotated[bool, typer.Option(help="run the pre-flight for these users; create nothing")] = False,
    discover: Annotated[bool, typer.Option(help="find the source server from the CSV's address domains (instead of --endpoint)")] = False,
    nameserver: Annotated[str | None, typer.Option(envvar="MAILTREK_NAMESERVER", help="--discover: DNS server IP[:PORT]")] = None,
    ca_file: Annotated[Path | None, typer.Option(help="--discover: CA bundle for the servers' certificates (stored with a new endpoint)")] = None,
    ispdb_url: Annotated[str | None, typer.Option(help="--discover: Thunderbird ISP database base URL")] = None,
    https_port: Annotated[int | None, typer.Option(hidden=True, help="--discover: port of the domain's autoconfig URLs (tests)")] = None,
    discover_timeout: Annotated[float, typer.Option(help="--discover: seconds per DNS query, HTTP request or connection")] = 5.0,
    allow_plain: Annotated[bool, typer.Option(help="--discover: a server without TLS may be chosen (every password crosses the network in clear)")] = False,
    home: HomeOpt = None,
) -> None:
    """Create a batch from a users CSV (the whole file is validated first)."""
    from mailtrek.service.batches import BatchRequest, DiscoverRequest, create_batch

    found = DiscoverRequest(nameserver=nameserver, ca_file=ca_path(ca_file), ispdb_url=ispdb_url,
                            https_port=https_port, timeout=discover_timeout,
                            allow_plain=allow_plain) if discover else None
    req = BatchRequest(name, endpoint=endpoint, tenant=tenant, dest_endpoint=dest_endpoint,
                       exclude_folder=list(exclude_folder or []), since=since, before=before, max_size=max_size,
                       gmail_labels=gmail_labels, items=items, autostart=autostart, notify=list(notify or []),
                       incremental_interval=incremental_interval, allow_unknown_columns=allow_unknown_columns,
                       start_at=start_at, discover=found, dry_run=dry_run, cli=True)
    created = create_batch(_home(home), req, csv_file, on_source=_say_source)
    if dry_run:
        from mailtrek.cli.discovery_cmds import print_preflight

        src = created.source
        if src is not None and not src.reused:
            typer.echo(f"dry run: endpoint {src.endpoint.name} ({src.endpoint.host}:{src.endpoint.port}, "
                       f"{src.endpoint.security}) not stored")
        print_preflight(created.preflight, "table", None)
        typer.echo("dry run: no batch created")
        return
    for w in created.warnings:
        typer.echo(f"warning: {w}", err=True)
    b, when = created.batch, created.start_at
    assert b is not None
    later = f" (starts at {when:%Y-%m-%d %H:%M} UTC)" if when else f" (start it with `mailtrek batch start {name}`)"
    typer.echo(f"batch {name}: {len(created.users)} users, {b.status}" + ("" if autostart else later))


def _say_source(event: SourceEvent) -> None:
    """Print a step of ``batch create --discover``: what was found and where from, stored, removed."""
    from mailtrek.orchestrate.discovery import source_labels

    src = event.source
    ep = src.endpoint
    if event.what == "discovered":
        c = src.candidate
        typer.echo(redact(f"discovered {c.host}:{c.port} ({c.security}) for {', '.join(src.domains)} "
                          f"from {source_labels(c)}"))
        for s in c.sources:
            typer.echo(redact(f"  {s}"))
        for n in c.notes:
            typer.echo(redact(f"  note: {n}"))
        if src.reused:
            typer.echo(f"using stored endpoint {ep.name} (same host, port and security)")
    elif event.what == "saved":
        typer.echo(f"saved endpoint {ep.name}: {ep.host}:{ep.port} ({ep.security})")
    else:
        typer.echo(f"endpoint {ep.name} removed again", err=True)


def _simple(action: str) -> Callable[..., None]:
    def command(name: str, home: HomeOpt = None) -> None:
        from mailtrek.service.batches import simple_action

        typer.echo(f"batch {name}: {simple_action(_home(home), name, action)['status']}")
    command.__doc__ = {"start": "Start a created batch; `mailtrek run`, `mailtrek serve --run` or `mailtrek worker` does the work.",
                       "stop": "Stop a batch; running moves are interrupted.",
                       "resume": "Resume a stopped batch, or retry its failed users."}[action]
    return handled(command)


for _action in ("start",):  # stop and resume (with --user) live in member_cmds
    batch_app.command(_action)(_simple(_action))


@batch_app.command("complete")
@handled
def batch_complete(
    name: str,
    force: Annotated[bool, typer.Option(help="complete even though the MX is not switched (or not for 72 h)")] = False,
    nameserver: Annotated[str | None, typer.Option(envvar="MAILTREK_NAMESERVER", help="DNS server IP[:PORT]")] = None,
    expect_mx: Annotated[list[str] | None, typer.Option(help="MX host that means 'switched' (IMAP destinations)")] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="complete even though users failed or never synced")] = False,
    at: Annotated[str | None, typer.Option("--at", help="complete then instead of now (ISO time, +2h)")] = None,
    home: HomeOpt = None,
) -> None:
    """Complete a batch: a final incremental sync per user, then Completed.

    Failed and never-synced users are listed first and you are asked (--yes skips the
    question; without a terminal it is required). They are left out of the completion
    and of the hardening script.
    """
    from mailtrek.service.completion import check_completion, finish_completion

    h = _home(home)
    check = asyncio.run(check_completion(h, name, at=at, nameserver=nameserver, expect_mx=expect_mx,
                                         at_label="--at", imap_hint="give --expect-mx"))
    for p in check.problems:
        typer.echo(f"warning: {p}", err=True)
    for u in check.unsafe:
        typer.echo(f"warning: {u}", err=True)
    if check.unsafe and not force:
        raise UsageError(f"not completing batch {name}: the MX cutover is not done",
                         hint="switch the MX and wait 72 hours, or pass --force")
    left = check.left
    if left:
        typer.echo(f"{len(left)} user(s) would be left out of the completion (and of the hardening script):",
                   err=True)
        for line in left:
            typer.echo(redact(f"  {line}"), err=True)
        if not yes:
            if not sys.stdin.isatty():
                raise UsageError(f"not completing batch {name}: {len(left)} user(s) failed or never synced",
                                 hint=f"fix them (`mailtrek batch retry {name} --user EMAIL`), or pass --yes "
                                      "to complete without them")
            if not typer.confirm("complete without them?", default=False):
                raise typer.Exit(1)
    b = finish_completion(h, check)
    if check.when is not None:
        typer.echo(f"batch {name}: completes at {check.when:%Y-%m-%d %H:%M} UTC (a running `mailtrek run` or "
                   "worker starts the final syncs then)")
        return
    typer.echo(f"batch {name}: {b.status} (a final incremental sync runs for every synced user)")


@batch_app.command("delete")
@handled
def batch_delete(
    name: str,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation on a terminal")] = False,
    home: HomeOpt = None,
) -> None:
    """Delete a batch with its stored passwords (copied mail and its sync state stay, so a new batch
    for the same users copies nothing twice)."""
    from mailtrek.orchestrate.batches import delete_batch, get_batch, user_rows

    h = _home(home)
    if not yes and sys.stdin.isatty():
        b = get_batch(h, name)
        n_users = len(user_rows(h, name))
        if not typer.confirm(f"Delete batch {name} ({b.status}, {n_users} users) with its stored passwords? "
                             "Copied mail and its sync state stay", default=False):
            raise typer.Abort()
    n = delete_batch(h, name)
    typer.echo(f"batch {name} deleted: {n} users and their stored passwords removed")


@batch_app.command("show")
@handled
def batch_show(name: str, json_out: Annotated[bool, typer.Option("--json")] = False,
               user: Annotated[str | None, typer.Option("--user", help="one user: folders and run history")] = None,
               home: HomeOpt = None) -> None:
    """Show a batch's status and one line per user (or one user's folders and runs)."""
    from mailtrek.orchestrate.leases import lease_holders
    from mailtrek.orchestrate.reports import batch_document
    from mailtrek.units import human_bytes

    h = _home(home)
    if user:
        from mailtrek.cli.member_cmds import print_user

        print_user(h, name, user, json_out)
        return
    d = batch_document(h, name)
    holders = lease_holders(h, name)
    for u in d["users"]:
        u["worker"] = holders.get(u["email"])  # the runner or worker moving it now (HOST:PID:ID)
    if json_out:
        print_json(d)
        return
    t = d["totals"]
    typer.echo(f"batch {d['name']}: {d['status']}  ({t['users']} users: "
               + ", ".join(f"{k} {v}" for k, v in t["by_status"].items()) + ")")
    for u in d["users"]:
        u["items"] = f"{u['items_synced']}/{u['items_total']}" if u["items_total"] else u["items_synced"]
    typer.echo(f"{t['items_synced']} items ({human_bytes(t['bytes'])}) on the destination, "
               f"{t['items_skipped']} skipped")
    cols = ["email", "status", "items", "items_skipped", "size", "last_sync", "next_sync", "error"]
    if t["pim_users"]:  # contacts/calendars counts only where a user's move carries them
        for u in d["users"]:
            u["contacts/calendars"] = u["pim_summary"]
        cols.insert(-1, "contacts/calendars")
    print_table(d["users"], cols + (["worker"] if holders else []))


@batch_app.command("list")
@handled
def batch_list(json_out: Annotated[bool, typer.Option("--json")] = False, home: HomeOpt = None) -> None:
    """List batches."""
    from mailtrek.service.batches import list_view

    cols = ["name", "status", "endpoint", "destination", "users", "created"]
    rows = [{c: b[c] for c in cols} for b in list_view(_home(home))]
    if json_out:
        print_json(rows)
    else:
        print_table(rows, cols)


@batch_app.command("report")
@handled
def batch_report(
    name: str,
    fmt: Annotated[str, typer.Option("--format", help="csv | json | html | skipped-csv | powershell")] = "csv",
    output: Annotated[Path | None, typer.Option(help="write here instead of stdout")] = None,
    home: HomeOpt = None,
) -> None:
    """Write the batch report: per-user statistics and skipped items."""
    from mailtrek.orchestrate.reports import render

    text = render(_home(home), name, fmt)
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        typer.echo(f"report written to {output}")


# -- runner ------------------------------------------------------------------------------
def run_cmd(
    until_idle: Annotated[bool, typer.Option(help="do the work due now, then exit")] = False,
    lease_seconds: Annotated[float | None, typer.Option(help="lease length [120, env MAILTREK_LEASE_SECONDS]")] = None,
    poll_seconds: Annotated[float, typer.Option(help="how often to look for due work")] = 5.0,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
    home: HomeOpt = None,
) -> None:
    """Run the scheduler: initial syncs, incremental syncs, completions (logs to stdout)."""
    handled(_run)(until_idle, lease_seconds, poll_seconds, verbose, home)


def _run(until_idle: bool, lease_seconds: float | None, poll_seconds: float, verbose: bool,
         home: Path | None) -> None:
    from mailtrek.orchestrate.runner import Runner

    log_service_to_stdout(verbose)
    h = _home(home)

    async def main() -> None:
        runner = Runner(h, lease_seconds=lease_seconds, poll_seconds=poll_seconds)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, runner.stop)
        await runner.run(until_idle=until_idle)

    asyncio.run(main())


# -- cutover -----------------------------------------------------------------------------
@cutover_app.command("check")
@handled
def cutover_check(
    domain: str,
    nameserver: Annotated[str | None, typer.Option(envvar="MAILTREK_NAMESERVER", help="DNS server IP[:PORT]")] = None,
    tenant: Annotated[str | None, typer.Option(help="compare MX with this tenant's expected records")] = None,
    expect_mx: Annotated[list[str] | None, typer.Option(help="MX host that means 'switched'; repeatable")] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
    home: HomeOpt = None,
) -> None:
    """Say whether DOMAIN's mail flows to Microsoft 365 now, and since when (exit 1 when not)."""
    from mailtrek.orchestrate.cutover import check_cutover

    st = asyncio.run(check_cutover(_home(home), domain, tenant=tenant, nameserver=nameserver,
                                   expected_mx=expect_mx))
    if json_out:
        print_json(st.as_dict())
    else:
        typer.echo(f"domain {st.domain}")
        typer.echo("  MX: " + (", ".join(f"{p} {h}" for p, h in st.mx) or "none"))
        typer.echo("  SPF: " + (" | ".join(st.spf) or "none"))
        typer.echo("  autodiscover: " + (", ".join(st.autodiscover) or "none"))
        src = "tenant " + tenant if tenant and not expect_mx else "given" if expect_mx else "Microsoft's MX suffixes"
        typer.echo(f"  expected MX ({src}): " + (", ".join(st.expected_mx) or "-"))
        for p in st.problems:
            typer.echo(f"  problem: {p}")
        if st.switched:
            since = f"{st.switched_since:%Y-%m-%d %H:%M} UTC" if st.switched_since else "now"
            typer.echo(f"mail flows to the destination: first seen switched {since}"
                       + ("" if st.settled else " (less than 72 hours ago)"))
        else:
            typer.echo("mail does NOT flow to the destination yet"
                       + (f" (first seen switched {st.switched_since:%Y-%m-%d %H:%M} UTC is kept: this check "
                          "saw no MX to go by)" if st.switched_since else ""))
    if not st.switched:
        raise typer.Exit(EXIT_INCOMPLETE)
