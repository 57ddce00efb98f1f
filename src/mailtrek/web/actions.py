"""The steps one API call or form post takes, shared by the JSON API and the pages.

Thin like the CLI: validate the input, call :mod:`mailtrek.orchestrate`, return what
to show. Secrets typed into a form are registered for redaction and only ever stored
encrypted; nothing here returns them.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mailtrek.errors import UsageError
from mailtrek.orchestrate import batches as batch_ops
from mailtrek.orchestrate.csvfile import is_address, parse_users_csv
from mailtrek.orchestrate.cutover import CutoverStatus, check_cutover, completion_blockers
from mailtrek.orchestrate.editing import check_authority, port_security_problem
from mailtrek.orchestrate.endpoints import (
    Tenant,
    add_endpoint,
    add_tenant,
    admin_credentials,
    check_name,
    get_endpoint,
    get_tenant,
    make_endpoint,
)
from mailtrek.orchestrate.home import Home
from mailtrek.orchestrate.probe import probe_endpoint
from mailtrek.orchestrate.states import BatchStatus, check_batch_move
from mailtrek.secrets import redact, remember


def _blank(v: Any) -> Any:
    return None if isinstance(v, str) and not v.strip() else v


@dataclass(slots=True)
class EndpointInput:
    name: str
    host: str | None = None
    port: int | None = None
    security: str | None = None
    ca_file: str | None = None
    preset: str | None = None
    auth: str = "password"
    admin_format: str | None = None
    admin_user: str | None = None
    admin_password: str | None = None
    max_concurrent_migrations: int | None = None
    max_concurrent_incremental: int | None = None
    connections_per_mailbox: int | None = None


def create_endpoint(home: Home, inp: EndpointInput) -> dict[str, object]:
    """Store an endpoint (as `mailtrek endpoint add`); return its public view."""
    v = {k: _blank(x) for k, x in asdict(inp).items()}
    remember(v["admin_password"])
    ca = v["ca_file"]
    if ca is not None and not Path(ca).is_file():
        raise UsageError(f"CA file not found on the server: {ca}")
    ep = make_endpoint(v["name"], host=v["host"], port=v["port"], security=v["security"],
                       ca_file=str(Path(ca).resolve()) if ca else None, preset=v["preset"],
                       auth=v["auth"] or "password", admin_format=v["admin_format"],
                       max_concurrent_migrations=v["max_concurrent_migrations"],
                       max_concurrent_incremental=v["max_concurrent_incremental"],
                       connections_per_mailbox=v["connections_per_mailbox"])
    problem = port_security_problem(ep.port, ep.security, security_given=True)
    if problem is not None and problem.fatal:  # 993 with STARTTLS, 143 with SSL: cannot connect
        raise UsageError(problem.message, hint=problem.hint)
    if v["admin_user"]:
        if not v["admin_password"]:
            raise UsageError("an admin user needs a password")
        ep.admin_user, ep.admin_password_enc = v["admin_user"], home.box.encrypt(v["admin_password"])
    add_endpoint(home, ep)
    return ep.public()


async def test_endpoint(home: Home, name: str, user: str | None, password: str | None) -> dict[str, Any]:
    """Probe endpoint ``name`` step by step (as `mailtrek endpoint test`)."""
    ep = get_endpoint(home, name)
    user, password = _blank(user), _blank(password)
    remember(password)
    admin = admin_credentials(home, ep, user) if user and password is None else None
    result = await asyncio.to_thread(probe_endpoint, ep, user, password if user else None,
                                     credentials=admin)
    failed = result.failed
    return {"endpoint": name, "ok": result.ok, "login_tried": user is not None,
            "failed_step": failed.name if failed else None,
            "steps": [{"name": s.name, "ok": s.ok, "detail": redact(s.detail),
                       "advice": redact(s.advice) if s.advice else None,
                       "ms": round(s.seconds * 1000)} for s in result.steps]}


@dataclass(slots=True)
class TenantInput:
    name: str
    tenant_id: str
    client_id: str
    client_secret: str
    authority: str | None = None
    graph_url: str | None = None
    ca_file: str | None = None
    test: bool = True


async def token_check(home: Home, t: Tenant) -> None:
    from mailtrek.orchestrate.mover import tenant_config
    from mailtrek.stores.m365.auth import TokenSource

    await TokenSource(tenant_config(home, t)).get_token()


async def create_tenant(home: Home, inp: TenantInput) -> dict[str, object]:
    """Store a tenant (as `mailtrek tenant add`), getting a token first unless told not to."""
    check_name(inp.name, "tenant")
    remember(inp.client_secret)
    if not inp.client_secret or not inp.tenant_id or not inp.client_id:
        raise UsageError("a tenant needs a tenant id, a client id and a client secret")
    ca = _blank(inp.ca_file)
    if ca is not None and not Path(ca).is_file():
        raise UsageError(f"CA file not found on the server: {ca}")
    authority = _blank(inp.authority)
    if authority:
        authority, _ = check_authority(authority, inp.tenant_id.strip())
    t = Tenant(name=inp.name, tenant_id=inp.tenant_id.strip(), client_id=inp.client_id.strip(),
               client_secret_enc=home.box.encrypt(inp.client_secret), authority=authority,
               graph_url=_blank(inp.graph_url), ca_file=str(Path(ca).resolve()) if ca else None)
    if inp.test:
        await token_check(home, t)
    add_tenant(home, t)
    return t.public()


async def test_tenant(home: Home, name: str) -> dict[str, Any]:
    """Get a token for tenant ``name``; failures come back as text, not exceptions."""
    from mailtrek.errors import MailtrekError

    try:
        await token_check(home, get_tenant(home, name))
    except MailtrekError as e:
        return {"tenant": name, "ok": False, "detail": redact(str(e))}
    return {"tenant": name, "ok": True, "detail": "token acquired"}


@dataclass(slots=True)
class BatchInput:
    name: str
    endpoint: str
    tenant: str | None = None
    dest_endpoint: str | None = None
    exclude_folder: list[str] = field(default_factory=list)
    since: str | None = None
    before: str | None = None
    max_size: str | None = None
    autostart: bool = False
    notify: list[str] = field(default_factory=list)
    incremental_interval: float = batch_ops.DEFAULT_INCREMENTAL_HOURS
    allow_unknown_columns: bool = False
    start_at: str | None = None  # ISO time or +2h: the batch starts by itself then


def create_batch(home: Home, inp: BatchInput, csv_bytes: bytes) -> dict[str, Any]:
    """Validate the uploaded CSV and create the batch (as `mailtrek batch create`).

    Raises CsvInvalidError (with every problem and its line) before anything is stored.
    """
    from mailtrek.orchestrate.endpoints import needs_no_passwords
    from mailtrek.orchestrate.option_text import date_option, size_option
    from mailtrek.orchestrate.schedule import parse_when

    users = parse_users_csv(csv_bytes, allow_unknown_columns=inp.allow_unknown_columns,
                            allow_empty_password=needs_no_passwords(home, inp.endpoint))
    notify = [a.strip() for a in inp.notify if a.strip()]
    for a in notify:
        if not is_address(a):
            raise UsageError(f"notify address {a!r} is not an e-mail address")
    options = batch_ops.BatchOptions(
        exclude=[x.strip() for x in inp.exclude_folder if x.strip()],
        since=date_option(_blank(inp.since), "since"), before=date_option(_blank(inp.before), "before"),
        max_size=size_option(_blank(inp.max_size)))
    b = batch_ops.create_batch(home, inp.name, endpoint=inp.endpoint, users=users,
                               tenant=_blank(inp.tenant), dest_endpoint=_blank(inp.dest_endpoint),
                               options=options, notify=notify, incremental_hours=inp.incremental_interval,
                               start_at=parse_when(_blank(inp.start_at), "start"))
    if inp.autostart:
        b = batch_ops.start_batch(home, inp.name)
    from mailtrek.orchestrate.notify import cannot_mail

    warning = cannot_mail(home) if notify else None
    out: dict[str, Any] = {"name": b.name, "status": b.status.value, "users": len(users)}
    if warning:  # only then: the answer keeps its shape for callers that compare it whole
        out["warnings"] = [warning]
    return out


def simple_action(home: Home, name: str, action: str) -> dict[str, Any]:
    """Start, stop or resume batch ``name``; return its new status."""
    fn = {"start": batch_ops.start_batch, "stop": batch_ops.stop_batch,
          "resume": batch_ops.resume_batch}.get(action)
    if fn is None:
        raise UsageError(f"unknown action {action!r}")
    b = fn(home, name)
    return {"name": name, "status": b.status.value}


async def complete(home: Home, name: str, *, force: bool = False, nameserver: str | None = None,
                   expect_mx: list[str] | None = None, yes: bool = False,
                   at: str | None = None) -> dict[str, Any]:
    """Complete batch ``name`` after the checks `mailtrek batch complete` does (now, or ``at``).

    Raises UsageError listing the reasons when the cutover is not done and not ``force``,
    and listing the failed and never-synced users unless ``yes``.
    """
    from mailtrek.orchestrate.members import completion_warnings
    from mailtrek.orchestrate.schedule import parse_when, set_schedule

    b = batch_ops.get_batch(home, name)
    when = parse_when(_blank(at), "completion")
    if when is None:
        check_batch_move(b.status, BatchStatus.COMPLETING, "complete")  # fail fast, before DNS
    expect_mx = [h for h in (expect_mx or []) if h.strip()]
    nameserver = _blank(nameserver)
    problems, unsafe = await completion_blockers(home, name, nameserver=nameserver,
                                                 expected_mx=expect_mx, at=when)
    warnings = problems + unsafe
    if warnings and not force:
        raise UsageError(f"not completing batch {name}: the MX cutover is not done: " + "; ".join(warnings),
                         hint="switch the MX and wait 72 hours, or tick 'force'")
    left = completion_warnings(home, name)
    if left and not yes:
        raise UsageError(f"not completing batch {name}: {len(left)} user(s) failed or never synced: "
                         + "; ".join(left[:20]),
                         hint="fix and retry them first, or confirm completing without them ('yes')")
    if when is not None:
        set_schedule(home, name, complete_at=when.isoformat())
        return {"name": name, "status": b.status.value, "complete_at": when.isoformat(),
                "warnings": warnings, "left_out": left}
    b = batch_ops.complete_batch(home, name)
    return {"name": name, "status": b.status.value, "warnings": warnings, "left_out": left}


async def cutover(home: Home, domain: str, *, tenant: str | None = None, nameserver: str | None = None,
                  expect_mx: list[str] | None = None) -> dict[str, Any]:
    """Check a domain's MX cutover (as `mailtrek cutover check`)."""
    if not domain.strip():
        raise UsageError("give a domain")
    st: CutoverStatus = await check_cutover(home, domain.strip(), tenant=_blank(tenant),
                                            nameserver=_blank(nameserver),
                                            expected_mx=[h for h in (expect_mx or []) if h.strip()] or None)
    return st.as_dict()
