"""`mailtrek serve` (the web dashboard and JSON API) and `mailtrek admin set-password`."""

from __future__ import annotations

import ipaddress
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from mailtrek.cli.common import HomeOpt, handled, log_service_to_stdout
from mailtrek.errors import UsageError
from mailtrek.secrets import read_secret_file

admin_app = typer.Typer(help="The web dashboard's admin account.", no_args_is_help=True)
PASSWORD_ENV = "MAILTREK_WEB_PASSWORD"


def register(app: typer.Typer) -> None:
    """Add `serve` and `admin` to ``app``."""
    app.command("serve")(serve)
    app.add_typer(admin_app, name="admin")


def _open(home: Path | None):  # type: ignore[no-untyped-def]
    import mailtrek.state.web  # noqa: F401  (the web tables must exist before the home opens)
    from mailtrek.orchestrate.home import open_home

    return open_home(home)


@admin_app.command("set-password")
@handled
def set_password(
    password_file: Annotated[Path | None, typer.Option(help=f"file holding the password [env {PASSWORD_ENV}; else asked]")] = None,
    home: HomeOpt = None,
) -> None:
    """Set the admin password of the web dashboard (stored as an argon2id hash; ends open sessions)."""
    from mailtrek.web.auth import set_admin_password

    if password_file is not None:
        password = read_secret_file(password_file)
    elif os.environ.get(PASSWORD_ENV):
        password = os.environ[PASSWORD_ENV]
    elif sys.stdin.isatty():
        password = typer.prompt("New admin password", hide_input=True, confirmation_prompt=True)
    else:
        raise UsageError("no password given", hint=f"use --password-file, {PASSWORD_ENV}, or run it in a terminal")
    h = _open(home)
    set_admin_password(h, password)
    typer.echo(f"admin password set in {h.path}; log in at the address `mailtrek serve` prints")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@handled
def serve(
    host: Annotated[str, typer.Option(help="address to listen on (loopback unless you say otherwise)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8025,
    run: Annotated[bool, typer.Option("--run", help="also run the scheduler (as `mailtrek run`) in this process")] = False,
    tls_cert: Annotated[Path | None, typer.Option(help="serve HTTPS with this certificate (PEM)")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="private key of --tls-cert")] = None,
    poll_seconds: Annotated[float, typer.Option(help="with --run: how often to look for due work")] = 2.0,
    allowed_host: Annotated[list[str] | None, typer.Option(
        help="a Host name the dashboard answers to (repeat) [the --host address and localhost]")] = None,
    trusted_proxy: Annotated[list[str] | None, typer.Option(
        help="address of a reverse proxy whose X-Forwarded-For/-Proto to believe (repeat) [none]")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
    home: HomeOpt = None,
) -> None:
    """Serve the web dashboard and JSON API (API docs at /docs).

    Proxy headers are believed only from a --trusted-proxy (otherwise anyone could
    choose the address the login limit counts, or the cookie's Secure flag), and only
    Host names in the allow-list are answered (no DNS rebinding).
    """
    import uvicorn

    from mailtrek.web.app import create_app
    from mailtrek.web.auth import admin_password_set

    if (tls_cert is None) != (tls_key is None):
        raise UsageError("--tls-cert and --tls-key go together")
    h = _open(home)
    log_service_to_stdout(verbose)
    if not admin_password_set(h):
        typer.echo("warning: no admin password yet: run `mailtrek admin set-password` to be able to log in", err=True)
    if not _loopback(host) and tls_cert is None:
        typer.echo(f"warning: listening on {host} without TLS: the password and session cross the network "
                   "in clear; use --tls-cert/--tls-key or a TLS reverse proxy", err=True)
    scheme = "https" if tls_cert else "http"
    typer.echo(f"mailtrek dashboard on {scheme}://{host}:{port}/ (home {h.path})"
               + (", scheduler running" if run else ""))
    hosts = allowed_hosts(host, allowed_host)
    if host in ("0.0.0.0", "::") and not allowed_host:
        typer.echo(f"warning: listening on every address but answering only to {', '.join(hosts)}; "
                   "name the others with --allowed-host", err=True)
    app = create_app(h, run_scheduler=run, poll_seconds=poll_seconds, allowed_hosts=hosts)
    uvicorn.run(app, host=host, port=port, log_level="warning",
                proxy_headers=bool(trusted_proxy), forwarded_allow_ips=list(trusted_proxy or []) or None,
                ssl_certfile=str(tls_cert) if tls_cert else None, ssl_keyfile=str(tls_key) if tls_key else None)


def allowed_hosts(host: str, given: list[str] | None) -> list[str]:
    """The Host names to answer to: ``given``, else the bind address and localhost's names."""
    if given:
        return list(given)
    names = ["localhost", "127.0.0.1", "[::1]"]
    if host not in ("0.0.0.0", "::") and host not in names:
        names.insert(0, f"[{host}]" if ":" in host else host)
    return names
