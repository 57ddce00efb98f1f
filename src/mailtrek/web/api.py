"""The JSON API under /api: the same operations as the CLI (see /docs for OpenAPI).

Log in with ``POST /api/login`` (sets the session cookie, returns the CSRF token); every
change needs that token in the ``X-CSRF-Token`` header.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, File, Form, HTTPException, Request, Response, UploadFile
from pydantic import BaseModel, Field

from mailtrek.orchestrate import batches as batch_ops
from mailtrek.orchestrate import endpoints as ep_ops
from mailtrek.orchestrate.csvfile import MAX_BYTES
from mailtrek.orchestrate.presets import PRESETS
from mailtrek.orchestrate.reports import render
from mailtrek.service import batches as batch_service
from mailtrek.service import completion
from mailtrek.service import endpoints as endpoint_service
from mailtrek.service import tenants as tenant_service
from mailtrek.web.auth import check_admin_password, end_session, new_session
from mailtrek.web.deps import (
    COOKIE,
    api_mutation,
    api_session,
    client_of,
    home_of,
    is_tls,
    limiter_of,
)
from mailtrek.web.live import batch_view

router = APIRouter(prefix="/api", tags=["api"])
Authed = Annotated[Any, Depends(api_session)]
Mutating = Annotated[Any, Depends(api_mutation)]
REPORT_TYPES = {"csv": "text/csv; charset=utf-8", "json": "application/json",
                "html": "text/html; charset=utf-8", "skipped-csv": "text/csv; charset=utf-8"}


def set_session_cookie(request: Request, response: Response, token: str) -> None:
    """Set the session cookie: HttpOnly, SameSite=Lax, Secure when served over TLS."""
    response.set_cookie(COOKIE, token, httponly=True, samesite="lax", secure=is_tls(request), path="/",
                        max_age=12 * 3600)


class Login(BaseModel):
    password: str


@router.post("/login", summary="Log in as the admin; returns the CSRF token for changes")
def login(body: Login, request: Request, response: Response) -> dict[str, str]:
    limiter, client = limiter_of(request), client_of(request)
    wait = limiter.retry_after(client)
    if wait:
        raise HTTPException(429, "too many failed logins; wait and try again", headers={"Retry-After": str(wait)})
    home = home_of(request)
    if not check_admin_password(home, body.password):
        limiter.failed(client)
        raise HTTPException(401, "wrong password (set it with `mailtrek admin set-password`)")
    limiter.succeeded(client)
    token, s = new_session(home)
    set_session_cookie(request, response, token)
    return {"csrf": s.csrf}


@router.post("/logout", summary="End the session")
def logout(request: Request, response: Response, _: Mutating) -> dict[str, bool]:
    end_session(home_of(request), request.cookies.get(COOKIE))
    response.delete_cookie(COOKIE, path="/")
    return {"ok": True}


@router.get("/session", summary="The CSRF token of the current session")
def session_info(s: Authed) -> dict[str, str]:
    return {"csrf": s.csrf}


# -- endpoints -----------------------------------------------------------------------------
class EndpointBody(BaseModel):
    name: str
    host: str | None = None
    port: int | None = None
    security: Literal["ssl", "starttls", "none"] | None = None
    ca_file: str | None = Field(None, description="path on the server")
    preset: str | None = None
    auth: Literal["password", "xoauth2"] = "password"
    admin_format: str | None = None
    admin_user: str | None = None
    admin_password: str | None = Field(None, description="stored encrypted; never returned")
    max_concurrent_migrations: int | None = None
    max_concurrent_incremental: int | None = None
    connections_per_mailbox: int | None = None
    dav_url: str | None = Field(None, description="contacts/calendars server: https://HOST[:PORT]/PATH")


class ProbeBody(BaseModel):
    user: str | None = None
    password: str | None = Field(None, description="used for this test only; never stored or returned")


@router.get("/endpoints", summary="List endpoints (`endpoint list`)")
def endpoints_list(request: Request, _: Authed) -> list[dict[str, object]]:
    return [e.public() for e in ep_ops.list_endpoints(home_of(request))]


@router.get("/endpoint-presets", summary="Provider presets (`endpoint presets`)")
def endpoint_presets(_: Authed) -> list[dict[str, object]]:
    return [{"name": p.name, "title": p.title, "host": p.host, "port": p.port, "security": p.security,
             "connections_per_account": p.connections_per_account,
             "dav": p.dav_preset.describe() if p.dav_preset else None} for p in PRESETS.values()]


@router.post("/endpoints", status_code=201, summary="Add an endpoint (`endpoint add`)")
def endpoints_add(body: EndpointBody, request: Request, _: Mutating) -> dict[str, object]:
    inp = endpoint_service.EndpointInput(**body.model_dump())
    return endpoint_service.create_endpoint(home_of(request), inp).endpoint.public()


@router.get("/endpoints/{name}", summary="Show an endpoint (`endpoint show`)")
def endpoints_show(name: str, request: Request, _: Authed) -> dict[str, object]:
    return ep_ops.get_endpoint(home_of(request), name).public()


@router.delete("/endpoints/{name}", summary="Remove an endpoint (`endpoint remove`)")
def endpoints_remove(name: str, request: Request, _: Mutating) -> dict[str, bool]:
    ep_ops.remove_endpoint(home_of(request), name)
    return {"ok": True}


@router.post("/endpoints/{name}/test", summary="DNS, TCP, TLS, capabilities, login (`endpoint test`)")
async def endpoints_test(name: str, body: ProbeBody, request: Request, _: Mutating) -> dict[str, Any]:
    return await endpoint_service.test_endpoint(home_of(request), name, body.user, body.password)


# -- tenants -------------------------------------------------------------------------------
class TenantBody(BaseModel):
    name: str
    tenant_id: str
    client_id: str
    client_secret: str = Field(description="stored encrypted; never returned")
    authority: str | None = None
    graph_url: str | None = None
    ca_file: str | None = None
    test: bool = True


@router.get("/tenants", summary="List tenants (`tenant list`)")
def tenants_list(request: Request, _: Authed) -> list[dict[str, object]]:
    return [t.public() for t in ep_ops.list_tenants(home_of(request))]


@router.post("/tenants", status_code=201, summary="Add a tenant (`tenant add`)")
async def tenants_add(body: TenantBody, request: Request, _: Mutating) -> dict[str, object]:
    created = await tenant_service.create_tenant(home_of(request), tenant_service.TenantInput(**body.model_dump()))
    return created.tenant.public()


@router.get("/tenants/{name}", summary="Show a tenant (`tenant show`)")
def tenants_show(name: str, request: Request, _: Authed) -> dict[str, object]:
    return ep_ops.get_tenant(home_of(request), name).public()


@router.delete("/tenants/{name}", summary="Remove a tenant (`tenant remove`)")
def tenants_remove(name: str, request: Request, _: Mutating) -> dict[str, bool]:
    ep_ops.remove_tenant(home_of(request), name)
    return {"ok": True}


@router.post("/tenants/{name}/test", summary="Get a token (`tenant test`)")
async def tenants_test(name: str, request: Request, _: Mutating) -> dict[str, Any]:
    return await tenant_service.test_tenant(home_of(request), name)


# -- batches -------------------------------------------------------------------------------
@router.get("/batches", summary="List batches with status and counts (`batch list`)")
def batches_list(request: Request, _: Authed) -> list[dict[str, Any]]:
    return batch_service.list_view(home_of(request))


@router.post("/batches", status_code=201, summary="Create a batch from a users CSV (`batch create`)")
async def batches_create(
    request: Request,
    _: Mutating,
    csv: Annotated[UploadFile, File(description="EmailAddress,UserName,Password[,UserRoot]")],
    name: Annotated[str, Form()],
    endpoint: Annotated[str | None, Form(description="source endpoint (or discover)")] = None,
    tenant: Annotated[str | None, Form()] = None,
    dest_endpoint: Annotated[str | None, Form()] = None,
    exclude_folder: Annotated[list[str] | None, Form()] = None,
    since: Annotated[str | None, Form()] = None,
    before: Annotated[str | None, Form()] = None,
    max_size: Annotated[str | None, Form()] = None,
    gmail_labels: Annotated[str, Form(description="Gmail sources: auto, folders+categories, folders, "
                                                  "all-mail, off")] = "auto",
    autostart: Annotated[bool, Form()] = False,
    notify: Annotated[list[str] | None, Form()] = None,
    incremental_interval: Annotated[float, Form()] = batch_ops.DEFAULT_INCREMENTAL_HOURS,
    allow_unknown_columns: Annotated[bool, Form()] = False,
    start_at: Annotated[str | None, Form(description="start by itself then (ISO time, +2h)")] = None,
    items: Annotated[str | None, Form(description="mail, calendars, contacts [mail]")] = None,
    discover: Annotated[bool, Form(description="find the source server from the CSV's address domains "
                                               "(instead of endpoint)")] = False,
    nameserver: Annotated[str | None, Form(description="discover: DNS server IP[:PORT]")] = None,
    ca_file: Annotated[str | None, Form(description="discover: CA bundle on the server, stored with "
                                                    "a new endpoint")] = None,
    ispdb_url: Annotated[str | None, Form(description="discover: Thunderbird ISP database base URL")] = None,
    https_port: Annotated[int | None, Form(description="discover: port of the domain's autoconfig URLs (tests)")] = None,
    discover_timeout: Annotated[float, Form(description="discover: seconds per DNS query, HTTP request "
                                                        "or connection")] = 5.0,
    allow_plain: Annotated[bool, Form(description="discover: a server without TLS may be chosen")] = False,
) -> dict[str, Any]:
    data = await csv.read(MAX_BYTES + 1)
    found = (batch_service.DiscoverRequest(nameserver=nameserver, ca_file=ca_file, ispdb_url=ispdb_url,
                                           https_port=https_port, timeout=discover_timeout,
                                           allow_plain=allow_plain) if discover else None)
    req = batch_service.BatchRequest(
        name=name, endpoint=endpoint, tenant=tenant, dest_endpoint=dest_endpoint,
        exclude_folder=exclude_folder or [], since=since, before=before, max_size=max_size,
        gmail_labels=gmail_labels, autostart=autostart, notify=notify or [],
        incremental_interval=incremental_interval, allow_unknown_columns=allow_unknown_columns,
        start_at=start_at, items=items, discover=found)
    # Off the event loop: discovery waits on DNS and servers for seconds.
    created = await asyncio.to_thread(batch_service.create_batch, home_of(request), req, data)
    return created.view()


@router.get("/batches/{name}", summary="A batch and its users, with progress, speed, ETA (`batch show`)")
def batches_show(name: str, request: Request, _: Authed) -> dict[str, Any]:
    return batch_view(home_of(request), name, request.app.state.meter)


class CompleteBody(BaseModel):
    force: bool = False
    nameserver: str | None = None
    expect_mx: list[str] = []
    yes: bool = Field(False, description="complete even though users failed or never synced")
    at: str | None = Field(None, description="complete then instead of now (ISO time, +2h)")


@router.post("/batches/{name}/complete", summary="Complete a batch after the MX check (`batch complete`)")
async def batches_complete(name: str, body: CompleteBody, request: Request, _: Mutating) -> dict[str, Any]:
    return await completion.complete(home_of(request), name, force=body.force, nameserver=body.nameserver,
                                  expect_mx=body.expect_mx, yes=body.yes, at=body.at)


@router.post("/batches/{name}/{action}", summary="Start, stop or resume a batch (`batch start|stop|resume`)")
def batches_action(name: str, action: Literal["start", "stop", "resume"], request: Request,
                   _: Mutating) -> dict[str, Any]:
    return batch_service.simple_action(home_of(request), name, action)


@router.delete("/batches/{name}", summary="Delete a batch and its stored passwords (`batch delete`)")
def batches_delete(name: str, request: Request, _: Mutating) -> dict[str, Any]:
    return {"name": name, "users_removed": batch_ops.delete_batch(home_of(request), name)}


@router.get("/batches/{name}/report", summary="The batch report (`batch report`)")
def batches_report(name: str, request: Request, _: Authed,
                   format: Literal["csv", "json", "html", "skipped-csv"] = "csv") -> Response:
    return report_response(request, name, format)


def report_response(request: Request, name: str, fmt: str) -> Response:
    """Return the report as a download; HTML reports may not run scripts when opened."""
    text = render(home_of(request), name, fmt)
    ext = "csv" if fmt == "skipped-csv" else fmt
    suffix = "-skipped" if fmt == "skipped-csv" else ""
    return Response(text, media_type=REPORT_TYPES[fmt], headers={
        "Content-Disposition": f'attachment; filename="{name}{suffix}-report.{ext}"',
        "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
    })


# -- cutover -------------------------------------------------------------------------------
class CutoverBody(BaseModel):
    domain: str
    tenant: str | None = None
    nameserver: str | None = None
    expect_mx: list[str] = []


@router.post("/cutover/check", summary="Is the domain's mail flowing to the destination? (`cutover check`)")
async def cutover_check(body: CutoverBody, request: Request, _: Mutating) -> dict[str, Any]:
    return await completion.cutover(home_of(request), body.domain, tenant=body.tenant,
                                 nameserver=body.nameserver, expect_mx=body.expect_mx)
