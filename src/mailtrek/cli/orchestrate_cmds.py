"""The Exchange-style workflow commands: endpoint, tenant, batch, run, cutover.

Thin: parse options, call :mod:`mailtrek.orchestrate`, print. Every command takes
``--home DIR`` (or ``MAILTREK_HOME``); errors print their message and hint (secrets
redacted) and exit with the error's code.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from mailtrek.cli.common import ca_path, log_service_to_stdout
from mailtrek.errors import EXIT_INCOMPLETE, MailtrekError, UsageError
from mailtrek.orchestrate.home import HOME_ENV, Home, open_home
from mailtrek.orchestrate.option_text import date_option, size_option
from mailtrek.secrets import read_secret_file, redact, remember

HomeOpt = Annotated[Path | None, typer.Option("--home", envvar=HOME_ENV,
                                              help="Directory holding mailtrek's state [default: user data dir]")]
F = TypeVar("F", bound=Callable[..., Any])

endpoint_app = typer.Typer(help="IMAP servers mailboxes come from (or go to).", no_args_is_help=True)
tenant_app = typer.Typer(help="Microsoft 365 tenants mailboxes go to.", no_args_is_help=True)
batch_app = typer.Typer(help="Batches of users: create, start, watch, complete.", no_args_is_help=True)
cutover_app = typer.Typer(help="Check the MX cutover of a domain.", no_args_is_help=True)


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

    discovery_cmds.register(app)
    member_cmds.register(batch_app)
    tenant_m365_cmds.register(tenant_app)


def handled(fn: F) -> F:
    """Turn MailtrekError into a message on stderr and the error's exit code."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except MailtrekError as e:
            typer.echo(f"error: {redact(e.message)}", err=True)
            if e.hint:
                typer.echo(f"hint: {redact(e.hint)}", err=True)
            raise typer.Exit(e.exit_code) from None
    return wrapper  # type: ignore[return-value]


def _home(path: Path | None) -> Home:
    return open_home(path)


def _print_json(data: Any) -> None:
    typer.echo(redact(json.dumps(data, indent=2, default=str, ensure_ascii=False)))


def _table(rows: list[dict[str, Any]], cols: list[str]) -> None:
    if not rows:
        typer.echo("(none)")
        return
    widths = {c: max(len(c), *(len(str(r.get(c) if r.get(c) is not None else "")) for r in rows)) for c in cols}
    typer.echo("  ".join(c.ljust(widths[c]) for c in cols).rstrip())
    for r in rows:
        typer.echo(redact("  ".join(str(r.get(c) if r.get(c) is not None else "").ljust(widths[c])
                                    for c in cols).rstrip()))


def _password(env: str, password_file: Path | None) -> str | None:
    if password_file is not None:
        return read_secret_file(password_file)
    return remember(os.environ.get(env)) or None


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
    home: HomeOpt = None,
) -> None:
    """Store an IMAP endpoint."""
    from mailtrek.orchestrate.endpoints import (
        add_endpoint,
        attach_service_account,
        make_endpoint,
        read_service_account_key,
    )

    ep = make_endpoint(name, host=host, port=port, security=security,
                       ca_file=ca_path(ca_file), preset=preset, auth=auth,
                       admin_format=admin_format, max_concurrent_migrations=max_concurrent_migrations,
                       max_concurrent_incremental=max_concurrent_incremental,
                       connections_per_mailbox=connections_per_mailbox)
    _check_port(ep.port, ep.security, security_given=security is not None)
    # Read before anything is stored: a bad key file leaves no endpoint behind.
    sa_info = read_service_account_key(service_account_key) if service_account_key else None
    h = _home(home)
    if sa_info is not None:
        attach_service_account(h, ep, sa_info)
    if admin_user:
        pw = _password("MAILTREK_ADMIN_PASSWORD", admin_password_file)
        if not pw:
            raise UsageError("--admin-user needs a password", hint="set MAILTREK_ADMIN_PASSWORD or --admin-password-file")
        ep.admin_user, ep.admin_password_enc = admin_user, h.box.encrypt(pw)
    add_endpoint(h, ep)
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


def _check_port(port: int, security: str, *, security_given: bool) -> None:
    """Refuse a port/security pair that cannot work; warn about a doubtful one."""
    from mailtrek.orchestrate.editing import port_security_problem

    problem = port_security_problem(port, security, security_given=security_given)
    if problem is None:
        return
    if problem.fatal:
        raise UsageError(problem.message, hint=problem.hint)
    typer.echo(f"warning: {problem.message}; {problem.hint}", err=True)


@endpoint_app.command("presets")
def endpoint_presets() -> None:
    """List the provider presets and their known limits."""
    from mailtrek.orchestrate.presets import PRESETS

    _table([{"preset": p.name, "provider": p.title, "host": p.host or "(your host)",
             "port": p.port, "security": p.security, "conns/account": p.connections_per_account,
             "MB/day": p.daily_download_mb} for p in PRESETS.values()],
           ["preset", "provider", "host", "port", "security", "conns/account", "MB/day"])


@endpoint_app.command("list")
@handled
def endpoint_list(json_out: Annotated[bool, typer.Option("--json")] = False, home: HomeOpt = None) -> None:
    """List stored endpoints."""
    from mailtrek.orchestrate.endpoints import list_endpoints

    rows = [e.public() for e in list_endpoints(_home(home))]
    if json_out:
        _print_json(rows)
    else:
        _table(rows, ["name", "host", "port", "security", "preset", "auth", "max_concurrent_migrations",
                      "max_concurrent_incremental"])


@endpoint_app.command("show")
@handled
def endpoint_show(name: str, home: HomeOpt = None) -> None:
    """Show one endpoint."""
    from mailtrek.orchestrate.endpoints import get_endpoint

    _print_json(get_endpoint(_home(home), name).public())


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
    from mailtrek.orchestrate.endpoints import admin_credentials, get_endpoint
    from mailtrek.orchestrate.probe import probe_endpoint

    h = _home(home)
    ep = get_endpoint(h, name)
    if ca_file is not None:
        ep.ca_file = ca_path(ca_file)
    if ep.uses_service_account:
        result = probe_endpoint(ep, user, token=_token_for(h, ep, user) if user else None)
    else:
        password = _password("MAILTREK_SOURCE_PASSWORD", password_file) if user else None
        admin = admin_credentials(h, ep, user) if user and password is None else None
        if user and password is None and admin is None and sys.stdin.isatty():
            password = remember(typer.prompt(f"Password for {user}", hide_input=True))
        result = probe_endpoint(ep, user, password, credentials=admin)
    for s in result.steps:
        typer.echo(redact(f"[{'ok' if s.ok else 'FAILED'}] {s.name}: {s.detail} ({s.seconds * 1000:.0f} ms)"))
        if s.advice:
            typer.echo(redact(f"      what to do: {s.advice}"))
    failed = result.failed
    if failed is not None:
        typer.echo(f"endpoint {name}: the {failed.name} step failed", err=True)
        raise typer.Exit(4 if failed.name in ("dns", "tcp", "tls") else 3 if failed.name in ("login", "token") else 5)
    typer.echo(f"endpoint {name}: all checks passed" + ("" if user else " (no --user: login not tried)"))


def _token_for(h: Home, ep: Any, user: str) -> Callable[[], str]:
    """Return a blocking call that fetches ``user``'s access token from ``ep``'s service account."""
    from mailtrek.orchestrate.endpoints import service_account_key
    from mailtrek.stores.gmail.auth import ServiceAccountTokens

    tokens = ServiceAccountTokens(service_account_key(h, ep), ca_file=ep.ca_file)
    return lambda: asyncio.run(tokens.token(user))


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
    from mailtrek.orchestrate.endpoints import Tenant, add_tenant, check_name

    check_name(name, "tenant")
    if m365_authority:
        from mailtrek.orchestrate.editing import check_authority

        m365_authority, notes = check_authority(m365_authority, tenant_id)
        for n in notes:
            typer.echo(f"note: {n}")
    secret = read_secret_file(client_secret_file)
    h = _home(home)
    t = Tenant(name=name, tenant_id=tenant_id, client_id=client_id, client_secret_enc=h.box.encrypt(secret),
               authority=m365_authority, graph_url=graph_url,
               ca_file=str(ca_file.resolve()) if ca_file else None)
    if test:
        asyncio.run(_token_check(h, t))
        typer.echo(f"tenant {name}: token acquired")
    add_tenant(h, t)
    typer.echo(f"tenant {name} stored (client secret encrypted in {h.path})")


async def _token_check(h: Home, t: Any) -> None:
    from mailtrek.orchestrate.mover import tenant_config
    from mailtrek.stores.m365.auth import TokenSource

    await TokenSource(tenant_config(h, t)).get_token()


@tenant_app.command("test")
@handled
def tenant_test(name: str, home: HomeOpt = None) -> None:
    """Get a token for a stored tenant."""
    from mailtrek.orchestrate.endpoints import get_tenant

    h = _home(home)
    asyncio.run(_token_check(h, get_tenant(h, name)))
    typer.echo(f"tenant {name}: token acquired")


@tenant_app.command("list")
@handled
def tenant_list(json_out: Annotated[bool, typer.Option("--json")] = False, home: HomeOpt = None) -> None:
    """List stored tenants."""
    from mailtrek.orchestrate.endpoints import list_tenants

    rows = [t.public() for t in list_tenants(_home(home))]
    if json_out:
        _print_json(rows)
    else:
        _table(rows, ["name", "tenant_id", "client_id", "authority", "graph_url"])


@tenant_app.command("show")
@handled
def tenant_show(name: str, home: HomeOpt = None) -> None:
    """Show one tenant (never its secret)."""
    from mailtrek.orchestrate.endpoints import get_tenant

    _print_json(get_tenant(_home(home), name).public())


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
    from mailtrek.orchestrate.batches import BatchOptions, create_batch, start_batch
    from mailtrek.orchestrate.csvfile import is_address, read_users_csv
    from mailtrek.orchestrate.endpoints import needs_no_passwords

    users = read_users_csv(csv_file, allow_unknown_columns=allow_unknown_columns,
                           allow_empty_password=endpoint is not None and needs_no_passwords(_home(home), endpoint))
    for a in notify or []:
        if not is_address(a):
            raise UsageError(f"--notify {a!r} is not an e-mail address")
    from mailtrek.stores.gmail.wiring import check_mode

    options = BatchOptions(exclude=list(exclude_folder or []), since=date_option(since, "--since"),
                           before=date_option(before, "--before"), max_size=size_option(max_size),
                           gmail_labels=check_mode(gmail_labels))
    if endpoint is not None and discover:
        raise UsageError("give --endpoint or --discover, not both",
                         hint="--endpoint names a stored source; --discover finds one from the CSV's domains")
    if endpoint is None and not discover:
        raise UsageError("batch create needs a source: --endpoint E",
                         hint="or --discover to find the server from the CSV's address domains")
    from mailtrek.orchestrate.schedule import parse_when

    when = parse_when(start_at, "--start-at")
    if when is not None and autostart:
        raise UsageError("give --autostart or --start-at, not both")
    h = _home(home)
    source: Any = endpoint
    found = None
    if discover:
        from mailtrek.orchestrate.batches import check_new_batch

        # Everything that would refuse the batch anyway is checked before the network is.
        if dry_run:
            _check_destination(h, tenant, dest_endpoint)
        else:
            check_new_batch(h, name, tenant=tenant, dest_endpoint=dest_endpoint,
                            incremental_hours=incremental_interval)
        found = _discover_source(h, [u.email for u in users], nameserver, ca_file, ispdb_url, https_port,
                                 discover_timeout, allow_plain)
        source = found.endpoint
    if dry_run:
        if found is not None and not found.reused:
            typer.echo(f"dry run: endpoint {found.endpoint.name} ({found.endpoint.host}:{found.endpoint.port}, "
                       f"{found.endpoint.security}) not stored")
        _dry_run(h, users, source, tenant, dest_endpoint, options)
        return
    if found is not None and not found.reused:
        from mailtrek.orchestrate.discovery import save_source

        save_source(h, found)
        typer.echo(f"saved endpoint {found.endpoint.name}: {found.endpoint.host}:{found.endpoint.port} "
                   f"({found.endpoint.security})")
    try:
        b = create_batch(h, name, endpoint=source if isinstance(source, str) else source.name, users=users,
                         tenant=tenant, dest_endpoint=dest_endpoint, options=options, notify=list(notify or []),
                         incremental_hours=incremental_interval, start_at=when)
    except Exception:
        if found is not None and found.saved:
            # The endpoint was stored for this batch only: do not leave it behind.
            from mailtrek.orchestrate.endpoints import remove_endpoint

            with contextlib.suppress(MailtrekError):
                remove_endpoint(h, found.endpoint.name)
                typer.echo(f"endpoint {found.endpoint.name} removed again", err=True)
        raise
    if notify:
        from mailtrek.cli.admin_cmds import smtp_warning

        warning = smtp_warning(home)
        if warning:
            typer.echo(f"warning: {warning}", err=True)
    if autostart:
        b = start_batch(h, name)
    later = f" (starts at {when:%Y-%m-%d %H:%M} UTC)" if when else f" (start it with `mailtrek batch start {name}`)"
    typer.echo(f"batch {name}: {len(users)} users, {b.status}" + ("" if autostart else later))


def _check_destination(h: Home, tenant: str | None, dest_endpoint: str | None) -> None:
    """Raise unless exactly one destination is given and stored."""
    from mailtrek.orchestrate.endpoints import get_endpoint, get_tenant

    if (tenant is None) == (dest_endpoint is None):
        raise UsageError("a batch needs exactly one destination", hint="give --tenant T or --dest-endpoint E")
    if tenant:
        get_tenant(h, tenant)
    if dest_endpoint:
        get_endpoint(h, dest_endpoint)


def _discover_source(h: Home, emails: list[str], nameserver: str | None, ca_file: Path | None,
                     ispdb_url: str | None, https_port: int | None, timeout: float,
                     allow_plain: bool = False) -> Any:
    """Discover the server of the CSV's domains and print where it came from; return a SourceEndpoint."""
    from mailtrek.orchestrate.discovery import (
        DEFAULT_ISPDB_URL,
        DiscoveryConfig,
        discover_domains,
        source_endpoint,
        source_labels,
    )

    ca = ca_path(ca_file)
    if timeout <= 0:
        raise UsageError("--discover-timeout must be positive")
    config = DiscoveryConfig(nameserver=nameserver, ca_file=ca, ispdb_url=ispdb_url or DEFAULT_ISPDB_URL,
                             https_port=https_port, timeout=timeout, allow_plain=allow_plain)
    src = source_endpoint(h, discover_domains(emails, config), ca)
    c = src.candidate
    typer.echo(redact(f"discovered {c.host}:{c.port} ({c.security}) for {', '.join(src.domains)} "
                      f"from {source_labels(c)}"))
    for s in c.sources:
        typer.echo(redact(f"  {s}"))
    for n in c.notes:
        typer.echo(redact(f"  note: {n}"))
    if src.reused:
        typer.echo(f"using stored endpoint {src.endpoint.name} (same host, port and security)")
    return src


def _dry_run(h: Home, users: list[Any], endpoint: Any, tenant: str | None, dest_endpoint: str | None,
             options: Any) -> None:
    from mailtrek.cli.discovery_cmds import print_preflight
    from mailtrek.orchestrate.endpoints import get_endpoint, get_tenant
    from mailtrek.orchestrate.preflight import preflight_users

    if (tenant is None) == (dest_endpoint is None):
        raise UsageError("a batch needs exactly one destination", hint="give --tenant T or --dest-endpoint E")
    source = get_endpoint(h, endpoint) if isinstance(endpoint, str) else endpoint  # --discover: not stored
    report = asyncio.run(preflight_users(
        h, users, source=source, tenant=get_tenant(h, tenant) if tenant else None,
        dest_endpoint=get_endpoint(h, dest_endpoint) if dest_endpoint else None, options=options))
    print_preflight(report, "table", None)
    typer.echo("dry run: no batch created")


def _simple(action: str) -> Callable[..., None]:
    def command(name: str, home: HomeOpt = None) -> None:
        from mailtrek.orchestrate import batches

        fn = {"start": batches.start_batch, "stop": batches.stop_batch, "resume": batches.resume_batch}[action]
        b = fn(_home(home), name)
        typer.echo(f"batch {name}: {b.status}")
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
    from mailtrek.orchestrate.batches import complete_batch, get_batch
    from mailtrek.orchestrate.cutover import completion_blockers
    from mailtrek.orchestrate.members import completion_warnings
    from mailtrek.orchestrate.schedule import parse_when, set_schedule
    from mailtrek.orchestrate.states import BatchStatus, check_batch_move

    h = _home(home)
    b = get_batch(h, name)
    when = parse_when(at, "--at")
    if when is None:
        check_batch_move(b.status, BatchStatus.COMPLETING, "complete")  # fail fast, before DNS
    problems, unsafe = asyncio.run(completion_blockers(
        h, name, nameserver=nameserver, expected_mx=expect_mx, imap_hint="give --expect-mx", at=when))
    for p in problems:
        typer.echo(f"warning: {p}", err=True)
    for u in unsafe:
        typer.echo(f"warning: {u}", err=True)
    if unsafe and not force:
        raise UsageError(f"not completing batch {name}: the MX cutover is not done",
                         hint="switch the MX and wait 72 hours, or pass --force")
    left = completion_warnings(h, name)
    if left:
        typer.echo(f"{len(left)} user(s) would be left out of the completion (and of the hardening script):",
                   err=True)
        for line in left:
            typer.echo(redact(f"  {line}"), err=True)
        if not yes:
            import sys

            if not sys.stdin.isatty():
                raise UsageError(f"not completing batch {name}: {len(left)} user(s) failed or never synced",
                                 hint=f"fix them (`mailtrek batch retry {name} --user EMAIL`), or pass --yes "
                                      "to complete without them")
            if not typer.confirm("complete without them?", default=False):
                raise typer.Exit(1)
    if when is not None:
        b = set_schedule(h, name, complete_at=when.isoformat())
        typer.echo(f"batch {name}: completes at {when:%Y-%m-%d %H:%M} UTC (a running `mailtrek run` or worker "
                   "starts the final syncs then)")
        return
    b = complete_batch(h, name)
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
        _print_json(d)
        return
    t = d["totals"]
    typer.echo(f"batch {d['name']}: {d['status']}  ({t['users']} users: "
               + ", ".join(f"{k} {v}" for k, v in t["by_status"].items()) + ")")
    for u in d["users"]:
        u["items"] = f"{u['items_synced']}/{u['items_total']}" if u["items_total"] else u["items_synced"]
    typer.echo(f"{t['items_synced']} items ({human_bytes(t['bytes'])}) on the destination, "
               f"{t['items_skipped']} skipped")
    cols = ["email", "status", "items", "items_skipped", "size", "last_sync", "next_sync", "error"]
    _table(d["users"], cols + (["worker"] if holders else []))


@batch_app.command("list")
@handled
def batch_list(json_out: Annotated[bool, typer.Option("--json")] = False, home: HomeOpt = None) -> None:
    """List batches."""
    from mailtrek.orchestrate.batches import list_batches, user_rows

    h = _home(home)
    rows = [{"name": b.name, "status": b.status.value, "endpoint": b.source_endpoint,
             "destination": b.tenant or b.dest_endpoint, "users": len(user_rows(h, b.name)),
             "created": b.created_at.isoformat(timespec="seconds") if b.created_at else None}
            for b in list_batches(h)]
    if json_out:
        _print_json(rows)
    else:
        _table(rows, ["name", "status", "endpoint", "destination", "users", "created"])


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
        _print_json(st.as_dict())
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
