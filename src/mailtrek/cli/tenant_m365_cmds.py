"""``mailtrek tenant add-app | apps | remove-app | probe``: app registrations and the canary.

Microsoft's Outlook limits are per app ID, so each extra registration adds 4 concurrent
requests (README "Microsoft 365: app registrations and the tenant probe").
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

import typer

from mailtrek.cli.common import HomeOpt, handled, print_json, print_table
from mailtrek.cli.common import open_home_at as _home
from mailtrek.secrets import read_secret_file


def add_app(
    name: Annotated[str, typer.Argument(help="the stored tenant")],
    client_id: Annotated[str, typer.Option(help="application (client) id of the extra registration")],
    client_secret_file: Annotated[Path | None, typer.Option(help="file holding its client secret")] = None,
    certificate: Annotated[Path | None, typer.Option(
        help="PEM with the private key and certificate (instead of a secret)")] = None,
    app_name: Annotated[str | None, typer.Option("--name", help="label [the client id]")] = None,
    test: Annotated[bool, typer.Option("--test/--no-test", help="get a token before storing")] = True,
    home: HomeOpt = None,
) -> None:
    """Add another app registration to a tenant: 4 more concurrent requests (limits are per app)."""
    from mailtrek.errors import UsageError
    from mailtrek.orchestrate.tenant_apps import TenantApp, app_configs
    from mailtrek.orchestrate.tenant_apps import add_app as store_app

    if (client_secret_file is None) == (certificate is None):
        raise UsageError("give --client-secret-file or --certificate (one of them)")
    h = _home(home)
    app = TenantApp(tenant=name, name=app_name or client_id, client_id=client_id,
                    client_secret_enc=h.box.encrypt(read_secret_file(client_secret_file))
                    if client_secret_file else None,
                    cert_path=str(certificate.resolve()) if certificate else None)
    store_app(h, app)
    if test:
        from mailtrek.orchestrate.endpoints import get_tenant
        from mailtrek.stores.m365.auth import TokenSource

        config = next(c for c in app_configs(h, get_tenant(h, name)) if c.client_id == client_id)
        try:
            asyncio.run(TokenSource(config).get_token())
        except BaseException:
            from mailtrek.orchestrate.tenant_apps import remove_app

            remove_app(h, name, app.name)
            raise
        typer.echo(f"app {app.name}: token acquired")
    typer.echo(f"tenant {name}: app {app.name} stored")


def apps(name: str, json_out: Annotated[bool, typer.Option("--json")] = False,
         home: HomeOpt = None) -> None:
    """List a tenant's app registrations (its own first; never a secret)."""
    from mailtrek.orchestrate.endpoints import get_tenant
    from mailtrek.orchestrate.tenant_apps import list_apps

    h = _home(home)
    t = get_tenant(h, name)
    rows: list[dict[str, Any]] = [{"tenant": name, "name": "(tenant)", "client_id": t.client_id,
                                   "credential": "client secret (stored)", "cert_path": None}]
    rows += [a.public() for a in list_apps(h, name)]
    if json_out:
        print_json(rows)
    else:
        print_table(rows, ["name", "client_id", "credential"])
        typer.echo(f"{len(rows)} app(s): up to {4 * len(rows)} concurrent requests "
                   "(4 per app ID, learn.microsoft.com/graph/throttling-limits)")


def remove_app(name: str, app: Annotated[str, typer.Argument(help="app name or client id")],
               home: HomeOpt = None) -> None:
    """Forget an extra app registration of a tenant."""
    from mailtrek.orchestrate.tenant_apps import remove_app as forget

    forget(_home(home), name, app)
    typer.echo(f"tenant {name}: app {app} removed")


def probe(
    name: Annotated[str, typer.Argument(help="the stored tenant")],
    mailbox: Annotated[str, typer.Option(help="mailbox to test in (a hidden folder, deleted after)")],
    other_mailbox: Annotated[str | None, typer.Option(
        help="a second mailbox, to tell a per-app from a per-mailbox concurrency limit")] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
    home: HomeOpt = None,
) -> None:
    """Ask the live tenant what Microsoft leaves open, store it as the tenant's profile.

    Creates a few marked test items in a hidden folder of MAILBOX, reads back what
    Exchange did (received date, draft, exact MIME), measures the concurrency scope with
    one small burst (with --other-mailbox), deletes everything it made.
    """
    from mailtrek.orchestrate.endpoints import get_tenant
    from mailtrek.orchestrate.tenant_probe import probe_tenant

    h = _home(home)
    result = asyncio.run(probe_tenant(h, get_tenant(h, name), mailbox, other_mailbox))
    if json_out:
        print_json(result)
        return
    print_table(result["steps"], ["step", "result", "detail"])
    typer.echo(f"profile of tenant {name} stored: " + ", ".join(
        f"{k}={v}" for k, v in result["profile"].items()))


def register(tenant_app: typer.Typer) -> None:
    """Add the commands to ``mailtrek tenant``."""
    tenant_app.command("add-app")(handled(add_app))
    tenant_app.command("apps")(handled(apps))
    tenant_app.command("remove-app")(handled(remove_app))
    tenant_app.command("probe")(handled(probe))
