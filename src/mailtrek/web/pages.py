"""Server-rendered pages (Jinja2): login, endpoints and tenants, batches, users, cutover.

Every page needs the admin session (else a redirect to /login); every form carries the
session's CSRF token. Passwords typed into forms are never put back into a page.
"""

from __future__ import annotations

import asyncio
import hmac
import secrets
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, HTTPException, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from mailtrek.errors import MailtrekError, UsageError
from mailtrek.orchestrate import batches as batch_ops
from mailtrek.orchestrate import endpoints as ep_ops
from mailtrek.orchestrate.csvfile import MAX_BYTES, CsvInvalidError
from mailtrek.orchestrate.presets import PRESETS
from mailtrek.orchestrate.states import BatchStatus, can_move
from mailtrek.secrets import redact
from mailtrek.service import batches as batch_service
from mailtrek.service import completion
from mailtrek.service import endpoints as endpoint_service
from mailtrek.service import tenants as tenant_service
from mailtrek.units import human_bytes
from mailtrek.web.api import report_response, set_session_cookie
from mailtrek.web.auth import (
    Session,
    admin_password_set,
    check_admin_password,
    end_session,
    new_session,
)
from mailtrek.web.deps import (
    COOKIE,
    LOGIN_COOKIE,
    check_form_csrf,
    client_of,
    home_of,
    is_tls,
    limiter_of,
    page_session,
    session_or_none,
)
from mailtrek.web.live import batch_view
from mailtrek.web.user_table import SORTS, user_table

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).parent / "templates")
Viewer = Annotated[Session, Depends(page_session)]
CsrfField = Annotated[str | None, Form(alias="csrf")]
BATCH_ACTIONS = ("start", "sync", "stop", "resume", "complete", "delete")
REPORT_FORMATS = ("csv", "json", "html", "skipped-csv")
DISCOVER = "(discover)"  # the New batch form's source choice that finds the server


def human_seconds(s: int | None) -> str:
    if s is None:
        return "–"
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min"
    return f"{s // 3600} h {s % 3600 // 60} min"


def short_time(v: Any) -> str:
    if not v:
        return "–"
    dt = datetime.fromisoformat(v) if isinstance(v, str) else v
    return f"{dt:%Y-%m-%d %H:%M:%S} UTC"


templates.env.filters.update(bytes=human_bytes, duration=human_seconds, when=short_time)


def page(request: Request, name: str, session: Session | None, status: int = 200, **ctx: Any) -> HTMLResponse:
    return templates.TemplateResponse(request, name, {"csrf": session.csrf if session else None, **ctx},
                                      status_code=status)


def error_page(request: Request, status: int, error: Any, headers: dict[str, str] | None = None) -> HTMLResponse:
    text = redact(error.message if isinstance(error, MailtrekError) else str(error))
    hint = redact(error.hint) if isinstance(error, MailtrekError) and error.hint else None
    r = page(request, "error.html", session_or_none(request), status, title=f"Error {status}",
             error=text, hint=hint)
    for k, v in (headers or {}).items():
        r.headers[k] = v
    return r


def see(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


# -- login -------------------------------------------------------------------------------
def login_page(request: Request, status: int = 200, error: str | None = None) -> HTMLResponse:
    token = secrets.token_urlsafe(24)
    r = page(request, "login.html", None, status, title="Log in", login_token=token, error=error,
             password_set=admin_password_set(home_of(request)))
    r.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="strict", secure=is_tls(request), path="/login")
    return r


@router.get("/login")
def login_form(request: Request) -> Response:
    if session_or_none(request):
        return see("/batches")
    return login_page(request)


@router.post("/login")
def login(request: Request, password: Annotated[str, Form()],
          login_token: Annotated[str, Form()] = "") -> Response:
    cookie = request.cookies.get(LOGIN_COOKIE, "")
    if not cookie or not hmac.compare_digest(cookie.encode(), login_token.encode()):
        raise HTTPException(403, "the login form's security token is missing or stale: reload and try again")
    limiter, client = limiter_of(request), client_of(request)
    wait = limiter.retry_after(client)
    if wait:
        r = login_page(request, 429, f"Too many failed logins. Try again in {wait} seconds.")
        r.headers["Retry-After"] = str(wait)
        return r
    home = home_of(request)
    if not check_admin_password(home, password):
        limiter.failed(client)
        return login_page(request, 401, "Wrong password.")
    limiter.succeeded(client)
    token, _ = new_session(home)
    done = see("/batches")
    set_session_cookie(request, done, token)
    done.delete_cookie(LOGIN_COOKIE, path="/login")
    return done


@router.post("/logout")
def logout(request: Request, s: Viewer, csrf: CsrfField = None) -> Response:
    check_form_csrf(s, csrf)
    end_session(home_of(request), request.cookies.get(COOKIE))
    r = see("/login")
    r.delete_cookie(COOKIE, path="/")
    return r


@router.get("/")
def index(s: Viewer) -> Response:
    return see("/batches")


# -- endpoints and tenants -----------------------------------------------------------------
def endpoints_page(request: Request, s: Session, status: int = 200, **ctx: Any) -> HTMLResponse:
    home = home_of(request)
    return page(request, "endpoints.html", s, status, title="Endpoints and tenants",
                endpoints=[e.public() for e in ep_ops.list_endpoints(home)],
                tenants=[t.public() for t in ep_ops.list_tenants(home)],
                presets=list(PRESETS.values()), notice=request.query_params.get("added"), **ctx)


@router.get("/endpoints")
def endpoints_view(request: Request, s: Viewer) -> Response:
    return endpoints_page(request, s)


def _int(text: str | None, label: str) -> int | None:
    if text is None or not text.strip():
        return None
    try:
        return int(text)
    except ValueError:
        raise UsageError(f"{label} must be a whole number") from None


@router.post("/endpoints")
def endpoints_add(
    request: Request, s: Viewer, csrf: CsrfField = None,
    name: Annotated[str, Form()] = "", host: Annotated[str, Form()] = "", port: Annotated[str, Form()] = "",
    security: Annotated[str, Form()] = "", ca_file: Annotated[str, Form()] = "",
    preset: Annotated[str, Form()] = "", admin_format: Annotated[str, Form()] = "",
    admin_user: Annotated[str, Form()] = "", admin_password: Annotated[str, Form()] = "",
    max_concurrent_migrations: Annotated[str, Form()] = "",
    max_concurrent_incremental: Annotated[str, Form()] = "",
    connections_per_mailbox: Annotated[str, Form()] = "",
    dav_url: Annotated[str, Form()] = "",
) -> Response:
    check_form_csrf(s, csrf)
    form = {"name": name, "host": host, "port": port, "security": security, "ca_file": ca_file,
            "preset": preset, "admin_format": admin_format, "admin_user": admin_user, "dav_url": dav_url}
    try:
        endpoint_service.create_endpoint(home_of(request), endpoint_service.EndpointInput(
            name=name.strip(), host=host.strip(), port=_int(port, "Port"), security=security, ca_file=ca_file.strip(),
            preset=preset, admin_format=admin_format, admin_user=admin_user.strip(), admin_password=admin_password,
            max_concurrent_migrations=_int(max_concurrent_migrations, "Initial syncs at once"),
            max_concurrent_incremental=_int(max_concurrent_incremental, "Incremental syncs at once"),
            connections_per_mailbox=_int(connections_per_mailbox, "Connections per mailbox"),
            dav_url=dav_url.strip() or None))
    except MailtrekError as e:
        return endpoints_page(request, s, 400, endpoint_error=redact(str(e)), endpoint_form=form)
    return see(f"/endpoints?added={name.strip()}")


@router.post("/endpoints/{name}/test")
async def endpoints_test(request: Request, name: str, s: Viewer, csrf: CsrfField = None,
                         user: Annotated[str, Form()] = "", password: Annotated[str, Form()] = "") -> Response:
    check_form_csrf(s, csrf)
    result = await endpoint_service.test_endpoint(home_of(request), name, user, password)
    return page(request, "probe.html", s, title=f"Test of endpoint {name}", result=result, user=user)


@router.post("/endpoints/{name}/remove")
def endpoints_remove(request: Request, name: str, s: Viewer, csrf: CsrfField = None) -> Response:
    check_form_csrf(s, csrf)
    ep_ops.remove_endpoint(home_of(request), name)
    return see("/endpoints")


@router.post("/tenants")
async def tenants_add(
    request: Request, s: Viewer, csrf: CsrfField = None,
    name: Annotated[str, Form()] = "", tenant_id: Annotated[str, Form()] = "",
    client_id: Annotated[str, Form()] = "", client_secret: Annotated[str, Form()] = "",
    authority: Annotated[str, Form()] = "", graph_url: Annotated[str, Form()] = "",
    ca_file: Annotated[str, Form()] = "", test: Annotated[bool, Form()] = False,
) -> Response:
    check_form_csrf(s, csrf)
    form = {"name": name, "tenant_id": tenant_id, "client_id": client_id, "authority": authority,
            "graph_url": graph_url, "ca_file": ca_file}
    try:
        await tenant_service.create_tenant(home_of(request), tenant_service.TenantInput(
            name=name.strip(), tenant_id=tenant_id, client_id=client_id, client_secret=client_secret,
            authority=authority.strip(), graph_url=graph_url.strip(), ca_file=ca_file.strip(), test=test))
    except MailtrekError as e:
        return endpoints_page(request, s, 400, tenant_error=redact(str(e)), tenant_form=form)
    return see(f"/endpoints?added={name.strip()}")


@router.post("/tenants/{name}/test")
async def tenants_test(request: Request, name: str, s: Viewer, csrf: CsrfField = None) -> Response:
    check_form_csrf(s, csrf)
    result = await tenant_service.test_tenant(home_of(request), name)
    return page(request, "probe.html", s, title=f"Test of tenant {name}", tenant_result=result)


@router.post("/tenants/{name}/remove")
def tenants_remove(request: Request, name: str, s: Viewer, csrf: CsrfField = None) -> Response:
    check_form_csrf(s, csrf)
    ep_ops.remove_tenant(home_of(request), name)
    return see("/endpoints")


@router.get("/confirm/{kind}/{name}/remove")
def confirm_remove(request: Request, kind: str, name: str, s: Viewer) -> Response:
    if kind not in ("endpoints", "tenants"):
        raise HTTPException(404, "nothing to remove there")
    what = "endpoint" if kind == "endpoints" else "tenant"
    return page(request, "confirm.html", s, title=f"Remove {what} {name}?", action="remove",
                target=f"/{kind}/{name}/remove", back="/endpoints",
                question=f"Remove {what} {name}? Its stored secret is deleted with it.")


# -- batches -------------------------------------------------------------------------------
@router.get("/batches")
def batches_view(request: Request, s: Viewer) -> Response:
    from mailtrek.web.api import batches_list

    return page(request, "batches.html", s, title="Batches", batches=batches_list(request, s),
                notice=request.query_params.get("deleted"))


def new_batch_page(request: Request, s: Session, status: int = 200, **ctx: Any) -> HTMLResponse:
    home = home_of(request)
    return page(request, "batch_new.html", s, status, title="New batch",
                endpoints=[e.name for e in ep_ops.list_endpoints(home)],
                tenants=[t.name for t in ep_ops.list_tenants(home)], discover=DISCOVER,
                gmail_modes=batch_service.gmail_label_modes(), **ctx)


@router.get("/batches/new")
def batch_new(request: Request, s: Viewer) -> Response:
    return new_batch_page(request, s, form={})


@router.post("/batches")
async def batch_create(
    request: Request, s: Viewer, csrf: CsrfField = None, csv: UploadFile | None = None,
    name: Annotated[str, Form()] = "", endpoint: Annotated[str, Form()] = "",
    destination: Annotated[str, Form()] = "", exclude_folder: Annotated[str, Form()] = "",
    since: Annotated[str, Form()] = "", before: Annotated[str, Form()] = "",
    max_size: Annotated[str, Form()] = "", gmail_labels: Annotated[str, Form()] = "auto",
    items: Annotated[list[str] | None, Form()] = None,
    autostart: Annotated[bool, Form()] = False,
    notify: Annotated[str, Form()] = "", incremental_interval: Annotated[str, Form()] = "24",
    nameserver: Annotated[str, Form()] = "", ca_file: Annotated[str, Form()] = "",
    allow_plain: Annotated[bool, Form()] = False,
) -> Response:
    check_form_csrf(s, csrf)
    form = {"name": name, "endpoint": endpoint, "destination": destination, "exclude_folder": exclude_folder,
            "since": since, "before": before, "max_size": max_size, "gmail_labels": gmail_labels,
            "items": items or ["mail"], "autostart": autostart, "notify": notify, "incremental_interval": incremental_interval,
            "nameserver": nameserver, "ca_file": ca_file, "allow_plain": allow_plain}
    kind, _, dest = destination.partition(":")
    discover = endpoint == DISCOVER  # the source select's first choice: find it from the CSV's domains
    try:
        try:
            hours = float(incremental_interval or 24)
        except ValueError:
            raise UsageError("the incremental interval must be a number of hours") from None
        if csv is None:
            raise UsageError("choose the users CSV file to upload")
        data = await csv.read(MAX_BYTES + 1)
        req = batch_service.BatchRequest(
            name=name.strip(), endpoint=None if discover else endpoint, tenant=dest if kind == "tenant" else None,
            dest_endpoint=dest if kind == "endpoint" else None,
            exclude_folder=exclude_folder.split(","), since=since, before=before, max_size=max_size,
            gmail_labels=gmail_labels, items=",".join(items or []) or None, autostart=autostart,
            notify=notify.split(","), incremental_interval=hours,
            discover=batch_service.DiscoverRequest(nameserver=nameserver, ca_file=ca_file,
                                                   allow_plain=allow_plain) if discover else None)
        created = await asyncio.to_thread(batch_service.create_batch, home_of(request), req, data)
    except CsvInvalidError as e:
        problems = [{"line": p.line, "reason": redact(p.reason)} for p in e.problems]
        return new_batch_page(request, s, 422, form=form, problems=problems,
                              error=f"The CSV has {len(problems)} problem(s); nothing was created.")
    except MailtrekError as e:
        return new_batch_page(request, s, 400, form=form, error=redact(str(e)))
    done = []
    if created.source is not None:
        src = created.source.endpoint
        done.append(f"source {src.host}:{src.port} ({src.security}) found, "
                    + (f"stored endpoint {src.name} used" if created.source.reused else f"saved as endpoint {src.name}"))
    done += [f"warning: {w}" for w in created.warnings]  # e.g. notify without SMTP: said now, not later
    if done:
        from urllib.parse import quote

        return see(f"/batches/{name.strip()}?done=" + quote("created; " + "; ".join(done)))
    return see(f"/batches/{name.strip()}")


def batch_actions(status: str) -> list[str]:
    """Return the actions the batch's status allows, in button order."""
    out = []
    if status == BatchStatus.CREATED:
        out.append("start")
    if status in (BatchStatus.SYNCING, BatchStatus.SYNCED, BatchStatus.SYNCED_WITH_ERRORS):
        out.append("sync")
    if status != BatchStatus.CREATED and can_move("batch", status, BatchStatus.STOPPED):
        out.append("stop")  # a batch that never started has nothing to stop
    if status in (BatchStatus.STOPPED, BatchStatus.FAILED, BatchStatus.SYNCED_WITH_ERRORS):
        out.append("resume")
    if can_move("batch", status, BatchStatus.COMPLETING):
        out.append("complete")
    out.append("delete")
    return out


@router.get("/batches/{name}")
def batch_page(request: Request, name: str, s: Viewer) -> Response:
    doc = batch_view_doc(request, name)
    return page(request, "batch.html", s, title=f"Batch {name}", b=doc, actions=batch_actions(doc["status"]),
                notice=request.query_params.get("done"), formats=REPORT_FORMATS,
                table=user_table(doc["users"], request.query_params), sorts=SORTS)


def batch_view_doc(request: Request, name: str) -> dict[str, Any]:
    return batch_view(home_of(request), name, request.app.state.meter)


@router.get("/batches/{name}/live")
def batch_live(request: Request, name: str, s: Viewer) -> Response:
    """The part of the batch page that the browser refreshes every few seconds."""
    doc = batch_view_doc(request, name)
    return page(request, "_batch_live.html", s, b=doc, actions=batch_actions(doc["status"]),
                table=user_table(doc["users"], request.query_params))


@router.get("/batches/{name}/confirm/{action}")
def batch_confirm(request: Request, name: str, action: str, s: Viewer) -> Response:
    if action not in BATCH_ACTIONS:
        raise HTTPException(404, f"unknown action {action}")
    b = batch_ops.get_batch(home_of(request), name)
    questions = {
        "start": f"Start batch {name}? The runner begins the initial sync of every user.",
        "sync": f"Sync batch {name} now? Every synced user gets an incremental sync without waiting "
                "for the interval.",
        "stop": f"Stop batch {name}? Running syncs are interrupted; resume picks up where they left off.",
        "resume": f"Resume batch {name}? Stopped and failed users are synced again.",
        "complete": f"Complete batch {name}? Every synced user gets a final incremental sync, "
                    "then the batch is finished for good.",
        "delete": f"Delete batch {name}? Its users' stored passwords are removed (mail already copied "
                  "stays, and so does what mailtrek knows of it: a new batch for these users copies nothing twice).",
    }
    from mailtrek.orchestrate.members import completion_warnings

    left = completion_warnings(home_of(request), name) if action == "complete" else []
    return page(request, "confirm.html", s, title=f"{action.capitalize()} batch {name}?", action=action,
                target=f"/batches/{name}/{action}", back=f"/batches/{name}", question=questions[action],
                batch=b, complete=action == "complete", left_out=left)


@router.post("/batches/{name}/complete")
async def batch_complete(request: Request, name: str, s: Viewer, csrf: CsrfField = None,
                         force: Annotated[bool, Form()] = False, expect_mx: Annotated[str, Form()] = "",
                         nameserver: Annotated[str, Form()] = "", yes: Annotated[bool, Form()] = False,
                         at: Annotated[str, Form()] = "") -> Response:
    check_form_csrf(s, csrf)
    await completion.complete(home_of(request), name, force=force, nameserver=nameserver,
                           expect_mx=expect_mx.split(","), yes=yes, at=at)
    return see(f"/batches/{name}?done=complete")


@router.post("/batches/{name}/delete")
def batch_delete(request: Request, name: str, s: Viewer, csrf: CsrfField = None) -> Response:
    check_form_csrf(s, csrf)
    batch_ops.delete_batch(home_of(request), name)
    return see(f"/batches?deleted={name}")


@router.post("/batches/{name}/{action}")
def batch_action(request: Request, name: str, action: str, s: Viewer, csrf: CsrfField = None) -> Response:
    check_form_csrf(s, csrf)
    if action not in ("start", "stop", "resume"):
        raise HTTPException(404, f"unknown action {action}")
    batch_service.simple_action(home_of(request), name, action)
    return see(f"/batches/{name}?done={action}")


@router.get("/batches/{name}/report.{fmt}")
def batch_report(request: Request, name: str, fmt: str, s: Viewer) -> Response:
    if fmt not in REPORT_FORMATS:
        raise HTTPException(404, f"unknown report format {fmt}")
    return report_response(request, name, fmt)


# -- cutover -------------------------------------------------------------------------------
@router.get("/cutover")
def cutover_view(request: Request, s: Viewer) -> Response:
    return page(request, "cutover.html", s, title="Cutover check", form={},
                tenants=[t.name for t in ep_ops.list_tenants(home_of(request))])


@router.post("/cutover")
async def cutover_check(request: Request, s: Viewer, csrf: CsrfField = None,
                        domain: Annotated[str, Form()] = "", tenant: Annotated[str, Form()] = "",
                        nameserver: Annotated[str, Form()] = "", expect_mx: Annotated[str, Form()] = "") -> Response:
    check_form_csrf(s, csrf)
    form = {"domain": domain, "tenant": tenant, "nameserver": nameserver, "expect_mx": expect_mx}
    tenants = [t.name for t in ep_ops.list_tenants(home_of(request))]
    try:
        result = await completion.cutover(home_of(request), domain, tenant=tenant, nameserver=nameserver,
                                       expect_mx=expect_mx.split(","))
    except MailtrekError as e:
        return page(request, "cutover.html", s, 400, title="Cutover check", form=form, tenants=tenants,
                    error=redact(str(e)))
    return page(request, "cutover.html", s, title="Cutover check", form=form, tenants=tenants, result=result)
