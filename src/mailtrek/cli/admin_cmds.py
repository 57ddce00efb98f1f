"""The admin's tools: `endpoint edit`, `tenant edit`, `notify test` and `audit`."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from mailtrek.cli.common import HomeOpt, ca_path, env_password, handled, print_json, print_table
from mailtrek.cli.common import open_home_at as _home
from mailtrek.cli.groups import endpoint_app, tenant_app
from mailtrek.errors import ConfigError, UsageError
from mailtrek.secrets import read_secret_file, redact

notify_app = typer.Typer(help="Status e-mails: check that they can go out.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app`` (and `edit` to the endpoint and tenant groups)."""
    endpoint_app.command("edit")(endpoint_edit)
    tenant_app.command("edit")(tenant_edit)
    app.add_typer(notify_app, name="notify")
    app.command("audit")(audit_cmd)


@handled
def endpoint_edit(
    name: str,
    host: Annotated[str | None, typer.Option(help="IMAP server host name")] = None,
    port: Annotated[int | None, typer.Option(help="port")] = None,
    security: Annotated[str | None, typer.Option(help="ssl | starttls | none")] = None,
    ca_file: Annotated[Path | None, typer.Option(help="CA bundle that verifies the server")] = None,
    auth: Annotated[str | None, typer.Option(help="password | xoauth2")] = None,
    admin_format: Annotated[str | None, typer.Option(help="dovecot (user*admin) | exchange | mirapoint")] = None,
    admin_user: Annotated[str | None, typer.Option(help="as a destination: admin who logs in for every user")] = None,
    admin_password_file: Annotated[Path | None, typer.Option(help="file with the admin's new password")] = None,
    max_concurrent_migrations: Annotated[int | None, typer.Option(help="initial syncs at once")] = None,
    max_concurrent_incremental: Annotated[int | None, typer.Option(help="incremental syncs at once")] = None,
    connections_per_mailbox: Annotated[int | None, typer.Option(help="IMAP connections per mailbox")] = None,
    home: HomeOpt = None,
) -> None:
    """Change a stored endpoint; options not given stay as they are (next runs use the change)."""
    from mailtrek.orchestrate.editing import edit_endpoint

    h = _home(home)
    pw = env_password("MAILTREK_ADMIN_PASSWORD", admin_password_file) if admin_password_file else None
    ep = edit_endpoint(h, name, {
        "host": host, "port": port, "security": security, "ca_file": ca_path(ca_file), "auth": auth,
        "admin_format": admin_format, "admin_user": admin_user,
        "admin_password_enc": h.box.encrypt(pw) if pw else None,
        "max_concurrent_migrations": max_concurrent_migrations,
        "max_concurrent_incremental": max_concurrent_incremental,
        "connections_per_mailbox": connections_per_mailbox})
    typer.echo(f"endpoint {ep.name}: {ep.host}:{ep.port} ({ep.security}), "
               f"{ep.max_concurrent_migrations} initial / {ep.max_concurrent_incremental} incremental syncs at once, "
               f"{ep.connections_per_mailbox} connections per mailbox")
    typer.echo(f"check it with `mailtrek endpoint test {ep.name} --user SOMEONE`")


@handled
def tenant_edit(
    name: str,
    tenant_id: Annotated[str | None, typer.Option(help="directory (tenant) id")] = None,
    client_id: Annotated[str | None, typer.Option(help="application (client) id")] = None,
    client_secret_file: Annotated[Path | None, typer.Option(help="file holding the new client secret")] = None,
    m365_authority: Annotated[str | None, typer.Option(help="authority URL https://HOST/TENANT-ID")] = None,
    graph_url: Annotated[str | None, typer.Option(help="Graph root")] = None,
    ca_file: Annotated[Path | None, typer.Option(help="CA bundle for the identity and Graph endpoints")] = None,
    test: Annotated[bool, typer.Option("--test/--no-test", help="get a token before storing")] = True,
    home: HomeOpt = None,
) -> None:
    """Change a stored tenant (a new secret is stored encrypted); checks a token first."""
    from mailtrek.orchestrate.editing import edit_tenant, store_tenant
    from mailtrek.service.tenants import token_check

    h = _home(home)
    secret = read_secret_file(client_secret_file) if client_secret_file else None
    t, notes = edit_tenant(h, name, {
        "tenant_id": tenant_id, "client_id": client_id,
        "client_secret_enc": h.box.encrypt(secret) if secret else None, "authority": m365_authority,
        "graph_url": graph_url, "ca_file": ca_path(ca_file)})
    for n in notes:
        typer.echo(f"note: {n}")
    if test:
        asyncio.run(token_check(h, t))
        typer.echo(f"tenant {name}: token acquired")
    store_tenant(h, t)
    typer.echo(f"tenant {name} changed")


@notify_app.command("test")
@handled
def notify_test(
    to: Annotated[list[str], typer.Option("--to", help="address to send the test mail to; repeatable")],
    home: HomeOpt = None,
) -> None:
    """Send a test mail with the SMTP settings batches use (MAILTREK_SMTP_* or HOME/smtp.json)."""
    import smtplib

    from mailtrek.orchestrate.csvfile import is_address
    from mailtrek.orchestrate.notify import SmtpSettings, send_mail

    for a in to:
        if not is_address(a):
            raise UsageError(f"--to {a!r} is not an e-mail address")
    h = _home(home)
    s = SmtpSettings.load(h)
    if s is None:
        raise ConfigError("no SMTP server is configured: batch notifications cannot go out",
                          hint=f"set MAILTREK_SMTP_HOST (and _PORT, _SECURITY, _USER, _PASSWORD_FILE, _FROM) "
                               f"or write {h.path / 'smtp.json'}; see the README's 'Status e-mails'")
    typer.echo(f"sending a test mail via {s.host}:{s.port} ({s.security}) from {s.sender} to {', '.join(to)}")
    try:
        send_mail(s, list(to), "mailtrek: test mail",
                  "This is a test mail from mailtrek.\n\nBatch status e-mails will arrive like this one.\n")
    except (OSError, smtplib.SMTPException) as e:
        raise ConfigError(redact(f"the SMTP server {s.host}:{s.port} did not take the mail: "
                                 f"{e.__class__.__name__}: {e}"),
                          hint="check host, port, security, user and password; the CA file for TLS") from e
    typer.echo("test mail sent")


@handled
def audit_cmd(
    json_out: Annotated[bool, typer.Option("--json")] = False,
    limit: Annotated[int, typer.Option(help="newest entries to show")] = 200,
    target: Annotated[str | None, typer.Option(help="only entries about this object (batch, endpoint...)")] = None,
    home: HomeOpt = None,
) -> None:
    """Show the audit log: who changed what, when, and how it ended (newest first)."""
    from mailtrek.orchestrate.audit import entries

    rows = [e.as_dict() for e in entries(_home(home), limit=limit, target=target)]
    if json_out:
        print_json(rows)
    else:
        print_table(rows, ["at", "actor", "action", "target", "detail", "outcome"])
