"""The admin's API calls: change endpoints and tenants, read the audit log.

The same steps as `mailtrek endpoint edit`, `tenant edit` and `audit`; secrets in a body
are registered for redaction and only ever stored encrypted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from mailtrek.errors import UsageError
from mailtrek.orchestrate.audit import entries
from mailtrek.orchestrate.editing import edit_endpoint, edit_tenant, store_tenant
from mailtrek.secrets import remember
from mailtrek.web.deps import api_mutation, api_session, home_of

router = APIRouter(prefix="/api", tags=["admin"])
Authed = Annotated[Any, Depends(api_session)]
Mutating = Annotated[Any, Depends(api_mutation)]


class EndpointPatch(BaseModel):
    host: str | None = None
    port: int | None = None
    security: Literal["ssl", "starttls", "none"] | None = None
    ca_file: str | None = Field(None, description="path on the server")
    auth: Literal["password", "xoauth2"] | None = None
    admin_format: str | None = None
    admin_user: str | None = None
    admin_password: str | None = Field(None, description="stored encrypted; never returned")
    max_concurrent_migrations: int | None = None
    max_concurrent_incremental: int | None = None
    connections_per_mailbox: int | None = None


class TenantPatch(BaseModel):
    tenant_id: str | None = None
    client_id: str | None = None
    client_secret: str | None = Field(None, description="stored encrypted; never returned")
    authority: str | None = Field(None, description="https://HOST/TENANT-ID")
    graph_url: str | None = None
    ca_file: str | None = Field(None, description="path on the server")
    test: bool = Field(True, description="get a token before storing")


def _ca(path: str | None) -> str | None:
    if path is None:
        return None
    if not Path(path).is_file():
        raise UsageError(f"CA file not found on the server: {path}")
    return str(Path(path).resolve())


@router.patch("/endpoints/{name}", summary="Change an endpoint (`endpoint edit`); fields left out stay")
def endpoints_edit(name: str, body: EndpointPatch, request: Request, _: Mutating) -> dict[str, object]:
    home = home_of(request)
    changes = body.model_dump(exclude={"admin_password"})
    remember(body.admin_password)
    changes["ca_file"] = _ca(body.ca_file)
    changes["admin_password_enc"] = home.box.encrypt(body.admin_password) if body.admin_password else None
    return edit_endpoint(home, name, changes).public()


@router.patch("/tenants/{name}", summary="Change a tenant (`tenant edit`); gets a token first unless test=false")
async def tenants_edit(name: str, body: TenantPatch, request: Request, _: Mutating) -> dict[str, object]:
    from mailtrek.service.tenants import token_check

    home = home_of(request)
    remember(body.client_secret)
    t, notes = edit_tenant(home, name, {
        "tenant_id": body.tenant_id, "client_id": body.client_id,
        "client_secret_enc": home.box.encrypt(body.client_secret) if body.client_secret else None,
        "authority": body.authority, "graph_url": body.graph_url, "ca_file": _ca(body.ca_file)})
    if body.test:
        await token_check(home, t)
    store_tenant(home, t)
    return t.public() | {"notes": notes}


@router.get("/audit", summary="The audit log, newest first (`mailtrek audit`)")
def audit_list(request: Request, _: Authed, limit: int = 200, target: str | None = None) -> list[dict[str, object]]:
    return [e.as_dict() for e in entries(home_of(request), limit=max(1, min(limit, 5000)), target=target)]
