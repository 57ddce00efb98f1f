"""``mailtrek sim``: run the Microsoft 365 simulator (Entra ID token endpoint + Graph mail).

Contract used by acceptance checks: it prints ``key=value`` lines on stdout once listening
(``ca_file=DIR/ca.pem`` first, then ``base_url``, ``authority``, ``graph_url``,
``graph_beta_url``, ``imap_oauth_issuer``) and serves until SIGINT/SIGTERM.
"""

from __future__ import annotations

from pathlib import Path

import typer


def _latency(spec: str, ms_per_mb: float, seed: int) -> object:
    from mailtrek.sim.config import Latency

    low, _, high = spec.partition("-")
    try:
        base_min = float(low)
        base_max = float(high) if high else base_min
    except ValueError as exc:
        raise typer.BadParameter("use MS or MIN-MAX, e.g. 0 or 60-150", param_hint="--latency-ms") from exc
    if base_min < 0 or base_max < base_min:
        raise typer.BadParameter("need 0 <= MIN <= MAX", param_hint="--latency-ms")
    return Latency(base_min, base_max, ms_per_mb, seed)


def _apps(spec: str) -> dict[str, str]:
    """Parse ``ID:SECRET,ID:SECRET`` into client id -> secret."""
    found: dict[str, str] = {}
    for item in spec.split(","):
        if not item.strip():
            continue
        client_id, sep, secret = item.strip().partition(":")
        if not sep or not client_id or not secret:
            raise typer.BadParameter("use CLIENT_ID:SECRET[,CLIENT_ID:SECRET...]", param_hint="--apps")
        found[client_id] = secret
    return found


def sim(
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(0, help="Port to listen on; 0 picks a free one."),
    users: str = typer.Option("alice@contoso.test,bob@contoso.test",
                              help="Comma-separated user principal names with mailboxes."),
    users_without_mailbox: str = typer.Option(
        "", help="Comma-separated users that exist but have no mailbox (MailboxNotEnabledForRESTAPI)."),
    state_dir: Path | None = typer.Option(None, help="Keep ca.pem and mailboxes here across restarts."),
    latency_ms: str = typer.Option("60-150", help="Base service time per call: MS or MIN-MAX."),
    ms_per_mb: float = typer.Option(40.0, help="Extra service time per MB of body."),
    seed: int = typer.Option(1, help="Seed of the latency randomiser."),
    tenant_id: str = typer.Option("7a1c0e52-4f6b-4c39-9d0e-5b7d3c2a9e01", help="Tenant GUID."),
    token_lifetime: int = typer.Option(3600, help="Access-token lifetime in seconds."),
    apps: str = typer.Option(
        "", help="Comma-separated CLIENT_ID:SECRET app registrations; when given, the token "
                 "endpoint refuses other client ids and wrong secrets, as Entra ID does."),
    fractional_retry_after: bool = typer.Option(
        False, help="Send Retry-After with decimals (e.g. 2.128), as Graph's throttling page shows."),
    concurrency: int = typer.Option(4, help="Concurrent requests (per app, or per app and mailbox: --concurrency-scope)."),
    requests_per_window: int = typer.Option(10_000, help="Requests per app and mailbox per window."),
    request_window: float = typer.Option(600.0, help="Request window in seconds."),
    upload_mb_per_window: float = typer.Option(150.0, help="MB uploaded per app and mailbox per window."),
    upload_window: float = typer.Option(300.0, help="Upload window in seconds."),
    max_message_mb: int = typer.Option(35, help="Largest message (MB)."),
    mx: list[str] = typer.Option([], help="DOMAIN=MXHOST answered by serviceConfigurationRecords."),
    concurrency_scope: str = typer.Option(
        "app", help="What the concurrent-request limit counts: 'app' (per app ID across all "
                    "mailboxes, learn.microsoft.com/graph/throttling-limits 'Limits per app ID') "
                    "or 'mailbox' (per app and mailbox; 429 'MailboxConcurrency')."),
    import_mime_received: str = typer.Option(
        "headers", help="receivedDateTime of importMime items: 'headers' (topmost Received, else "
                        "Date) or 'now' (time of the import; Microsoft does not document it)."),
) -> None:
    """Run a local Microsoft 365 simulator over HTTPS (a test double, like moto for AWS)."""
    from mailtrek.sim import SimConfig, Simulator, UserSpec
    from mailtrek.sim.config import MB, Limits

    specs = [UserSpec(u.strip()) for u in users.split(",") if u.strip()]
    specs += [UserSpec(u.strip(), has_mailbox=False) for u in users_without_mailbox.split(",") if u.strip()]
    if any("@" not in s.upn for s in specs):
        raise typer.BadParameter("users must look like name@domain", param_hint="--users")
    mx_records = {}
    for item in mx:
        domain, sep, target = item.partition("=")
        if not sep or not domain or not target:
            raise typer.BadParameter("use DOMAIN=MXHOST", param_hint="--mx")
        mx_records[domain.lower()] = target
    from mailtrek.sim.config import CONCURRENCY_SCOPES, IMPORT_MIME_RECEIVED

    if concurrency_scope not in CONCURRENCY_SCOPES:
        raise typer.BadParameter("use app or mailbox", param_hint="--concurrency-scope")
    if import_mime_received not in IMPORT_MIME_RECEIVED:
        raise typer.BadParameter("use headers or now", param_hint="--import-mime-received")
    secrets = _apps(apps)
    config = SimConfig(
        concurrency_scope=concurrency_scope, import_mime_received=import_mime_received,
        client_secrets=secrets, registered_apps_only=bool(secrets),
        fractional_retry_after=fractional_retry_after,
        users=specs, host=host, port=port, state_dir=state_dir, tenant_id=tenant_id,
        token_lifetime_s=token_lifetime, mx_records=mx_records,
        latency=_latency(latency_ms, ms_per_mb, seed),  # type: ignore[arg-type]
        limits=Limits(concurrent_requests=concurrency, requests_per_window=requests_per_window,
                      request_window_s=request_window,
                      upload_bytes_per_window=int(upload_mb_per_window * MB),
                      upload_window_s=upload_window, max_message_bytes=max_message_mb * MB),
    )

    def announce(running: Simulator) -> None:
        for key, value in (
            ("ca_file", running.ca_file), ("base_url", running.base_url),
            ("authority", running.authority()), ("graph_url", running.graph_url),
            ("graph_beta_url", running.graph_beta_url),
            ("imap_oauth_issuer", running.imap_oauth_issuer),
        ):
            typer.echo(f"{key}={value}")

    Simulator(config).serve_forever(announce)


def register(app: typer.Typer) -> None:
    """Add the ``sim`` command to ``app``."""
    app.command("sim")(sim)
