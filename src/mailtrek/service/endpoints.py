"""Add and test IMAP endpoints (`mailtrek endpoint add|test`, the dashboard's Endpoints page)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mailtrek.errors import UsageError
from mailtrek.orchestrate.editing import port_security_problem
from mailtrek.orchestrate.endpoints import (
    Endpoint,
    add_endpoint,
    attach_service_account,
    get_endpoint,
    make_endpoint,
)
from mailtrek.orchestrate.home import Home
from mailtrek.orchestrate.probe import ProbeResult, probe_endpoint
from mailtrek.orchestrate.specs import admin_spec
from mailtrek.secrets import redact, remember
from mailtrek.service.text import blank

__all__ = ["EndpointCreated", "EndpointInput", "build_endpoint", "create_endpoint", "probe", "probe_view",
           "store_endpoint", "test_endpoint"]


@dataclass(slots=True)
class EndpointInput:
    """An endpoint to store; blank strings count as not given."""

    name: str
    host: str | None = None
    port: int | None = None
    security: str | None = None
    ca_file: str | None = None  # a path on this machine
    preset: str | None = None
    auth: str = "password"
    admin_format: str | None = None
    admin_user: str | None = None
    admin_password: str | None = None
    max_concurrent_migrations: int | None = None
    max_concurrent_incremental: int | None = None
    connections_per_mailbox: int | None = None
    service_account: dict[str, Any] | None = None  # a Google service-account key, already read
    security_given: bool = True  # False: the security came from the preset or port (doubts are warnings)
    dav_url: str | None = None  # contacts/calendars server (https://HOST[:PORT]/PATH)


@dataclass(slots=True)
class EndpointCreated:
    endpoint: Endpoint
    warnings: list[str] = field(default_factory=list)


def create_endpoint(home: Home, inp: EndpointInput) -> EndpointCreated:
    """Store an endpoint; refuse a port/security pair that cannot work, warn about a doubtful one."""
    return store_endpoint(home, build_endpoint(inp), inp)


def build_endpoint(inp: EndpointInput) -> EndpointCreated:
    """Check ``inp`` and build its endpoint without touching any state (nothing stored yet)."""
    remember(inp.admin_password)
    ca = blank(inp.ca_file)
    if ca is not None and not Path(ca).is_file():
        raise UsageError(f"CA file not found on the server: {ca}")
    ep = make_endpoint(inp.name, host=blank(inp.host), port=inp.port, security=blank(inp.security),
                       ca_file=str(Path(ca).resolve()) if ca else None, preset=blank(inp.preset),
                       auth=blank(inp.auth) or "password", admin_format=blank(inp.admin_format),
                       max_concurrent_migrations=inp.max_concurrent_migrations,
                       max_concurrent_incremental=inp.max_concurrent_incremental,
                       connections_per_mailbox=inp.connections_per_mailbox, dav_url=blank(inp.dav_url))
    warnings = []
    problem = port_security_problem(ep.port, ep.security, security_given=inp.security_given)
    if problem is not None:
        if problem.fatal:  # 993 with STARTTLS, 143 with SSL: cannot connect
            raise UsageError(problem.message, hint=problem.hint)
        warnings.append(f"{problem.message}; {problem.hint}")
    return EndpointCreated(ep, warnings)


def store_endpoint(home: Home, built: EndpointCreated, inp: EndpointInput) -> EndpointCreated:
    """Store an endpoint :func:`build_endpoint` built, with its encrypted secrets from ``inp``."""
    ep = built.endpoint
    remember(inp.admin_password)
    if inp.service_account is not None:
        attach_service_account(home, ep, inp.service_account)
    admin_user = blank(inp.admin_user)
    if admin_user:
        admin_password = blank(inp.admin_password)
        if not admin_password:
            raise UsageError("an admin user needs a password")
        ep.admin_user, ep.admin_password_enc = admin_user, home.box.encrypt(admin_password)
    add_endpoint(home, ep)
    return built


def _token_for(home: Home, ep: Endpoint, user: str) -> Callable[[], str]:
    """Return a blocking call that fetches ``user``'s access token from ``ep``'s service account."""
    from mailtrek.orchestrate.endpoints import service_account_key
    from mailtrek.stores.gmail.auth import ServiceAccountTokens

    tokens = ServiceAccountTokens(service_account_key(home, ep), ca_file=ep.ca_file)
    return lambda: asyncio.run(tokens.token(user))


def probe(home: Home, name: str, user: str | None, password: str | None, *,
          ca_file: str | None = None) -> ProbeResult:
    """Check DNS, TCP, TLS, capabilities and (with ``user``) a login on endpoint ``name``.

    The login is a migration's: a service-account endpoint logs in with a token fetched
    for ``user``; an endpoint with a stored admin, given no password, logs in as the admin
    for ``user`` (as migrations into it do). ``ca_file`` replaces the stored CA bundle for
    this test only. Blocking: call it from a thread inside an event loop.
    """
    ep = get_endpoint(home, name)
    user, password = blank(user), blank(password)
    remember(password)
    if ca_file is not None:
        ep.ca_file = ca_file
    if ep.uses_service_account:
        return probe_endpoint(ep, user, token=_token_for(home, ep, user) if user else None)
    admin = admin_spec(home, ep, user, label="probe") if user and password is None else None
    return probe_endpoint(ep, user, password if user else None, login=admin)


def probe_view(name: str, user: str | None, result: ProbeResult) -> dict[str, Any]:
    """The probe as JSON: each step with its time, details and advice redacted."""
    failed = result.failed
    return {"endpoint": name, "ok": result.ok, "login_tried": blank(user) is not None,
            "failed_step": failed.name if failed else None,
            "steps": [{"name": s.name, "ok": s.ok, "detail": redact(s.detail),
                       "advice": redact(s.advice) if s.advice else None,
                       "ms": round(s.seconds * 1000)} for s in result.steps]}


async def test_endpoint(home: Home, name: str, user: str | None, password: str | None) -> dict[str, Any]:
    """Probe endpoint ``name`` step by step off the event loop; return :func:`probe_view`."""
    result = await asyncio.to_thread(probe, home, name, user, password)
    return probe_view(name, user, result)
