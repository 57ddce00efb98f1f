"""Add and test Microsoft 365 tenants (`mailtrek tenant add|test`, the dashboard's Endpoints page)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mailtrek.errors import MailtrekError, UsageError
from mailtrek.orchestrate.editing import check_authority
from mailtrek.orchestrate.endpoints import Tenant, add_tenant, check_name, get_tenant
from mailtrek.orchestrate.home import Home
from mailtrek.secrets import redact, remember
from mailtrek.service.text import blank

__all__ = ["TenantCreated", "TenantInput", "check_tenant", "create_tenant", "test_tenant", "token_check"]


@dataclass(slots=True)
class TenantInput:
    """A tenant to store; the client secret is stored encrypted, never returned."""

    name: str
    tenant_id: str
    client_id: str
    client_secret: str
    authority: str | None = None
    graph_url: str | None = None
    ca_file: str | None = None  # a path on this machine
    test: bool = True  # get a token before storing


@dataclass(slots=True)
class TenantCreated:
    tenant: Tenant
    notes: list[str] = field(default_factory=list)  # what the authority check changed or noticed
    tested: bool = False  # a token was acquired before storing


async def token_check(home: Home, t: Tenant) -> None:
    """Get a token for ``t``; raises the token source's MailtrekError when it cannot."""
    from mailtrek.orchestrate.mover import tenant_config
    from mailtrek.stores.m365.auth import TokenSource

    await TokenSource(tenant_config(home, t)).get_token()


def check_tenant(inp: TenantInput) -> tuple[str | None, list[str]]:
    """Check ``inp`` without touching any state; return the authority to store and notes on it."""
    check_name(inp.name, "tenant")
    remember(inp.client_secret)
    if not inp.client_secret or not inp.tenant_id or not inp.client_id:
        raise UsageError("a tenant needs a tenant id, a client id and a client secret")
    ca = blank(inp.ca_file)
    if ca is not None and not Path(ca).is_file():
        raise UsageError(f"CA file not found on the server: {ca}")
    authority = blank(inp.authority)
    if not authority:
        return None, []
    authority, notes = check_authority(authority, inp.tenant_id.strip())
    return authority, list(notes)


async def create_tenant(home: Home, inp: TenantInput) -> TenantCreated:
    """Store a tenant (secret encrypted), getting a token first unless told not to."""
    authority, notes = check_tenant(inp)
    ca = blank(inp.ca_file)
    t = Tenant(name=inp.name, tenant_id=inp.tenant_id.strip(), client_id=inp.client_id.strip(),
               client_secret_enc=home.box.encrypt(inp.client_secret), authority=authority,
               graph_url=blank(inp.graph_url), ca_file=str(Path(ca).resolve()) if ca else None)
    if inp.test:
        await token_check(home, t)
    add_tenant(home, t)
    return TenantCreated(t, notes, tested=inp.test)


async def test_tenant(home: Home, name: str) -> dict[str, Any]:
    """Get a token for tenant ``name``; failures come back as text, not exceptions."""
    try:
        await token_check(home, get_tenant(home, name))
    except MailtrekError as e:
        return {"tenant": name, "ok": False, "detail": redact(str(e))}
    return {"tenant": name, "ok": True, "detail": "token acquired"}
