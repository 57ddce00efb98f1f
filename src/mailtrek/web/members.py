"""Per-user control in the JSON API and the pages: retry, sync now, stop, resume, remove, move,
export the failed users, schedules. The same calls as the CLI (:mod:`mailtrek.service.members`,
:mod:`mailtrek.orchestrate.members`, ``schedule``).

Both routers are included before the generic ``/batches/{name}/{action}`` routes, so
their fixed paths win.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, File, Form, HTTPException, Request, Response, UploadFile
from pydantic import BaseModel, Field

from mailtrek.errors import MailtrekError, UsageError
from mailtrek.orchestrate import members
from mailtrek.orchestrate.csvfile import MAX_BYTES, parse_users_csv
from mailtrek.orchestrate.schedule import set_schedule
from mailtrek.secrets import redact, remember
from mailtrek.service.members import USER_ACTIONS, user_action
from mailtrek.web.deps import api_mutation, api_session, check_form_csrf, home_of, page_session

api = APIRouter(prefix="/api", tags=["api"])
pages = APIRouter(include_in_schema=False)
Authed = Annotated[Any, Depends(api_session)]
Mutating = Annotated[Any, Depends(api_mutation)]
Viewer = Annotated[Any, Depends(page_session)]
CsrfField = Annotated[str | None, Form(alias="csrf")]


def user_page_doc(request: Request, name: str, email: str) -> dict[str, Any]:
    """The batch-page view of one user plus its folders and run history."""
    from mailtrek.web.live import batch_view

    doc = batch_view(home_of(request), name, request.app.state.meter)
    user = next((u for u in doc["users"] if u["email"] == email.strip().lower()), None)
    if user is None:
        raise HTTPException(404, f"batch {name} has no user {email}")
    return {"batch": doc, "user": {**user, **members.user_detail(home_of(request), name, email)}}


def _one(request: Request, name: str, email: str, action: str, *, password: str | None = None,
         username: str | None = None, to: str | None = None) -> members.Outcome:
    if action not in USER_ACTIONS:
        raise HTTPException(404, f"unknown action {action}")
    return user_action(home_of(request), name, email, action, password=password, username=username, to=to)


def _failed_csv(request: Request, name: str, with_errors: bool) -> Response:
    text = members.export_failed(home_of(request), name, with_errors=with_errors)
    return Response(text, media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{name}-failed-users.csv"'})


# -- API -------------------------------------------------------------------------------------
class SyncBody(BaseModel):
    user: str | None = Field(None, description="one user's address; all synced users when left out")


class RetryBody(BaseModel):
    password: str | None = Field(None, description="new source password; stored encrypted, never returned")
    username: str | None = Field(None, description="new source login (UserName)")


class MoveBody(BaseModel):
    to: str


class ScheduleBody(BaseModel):
    incremental_hours: float | None = None
    start_at: str | None = Field(None, description="ISO time, +2h, or none to clear (Created batches)")
    complete_at: str | None = Field(None, description="ISO time, +2h, or none to clear")


@api.post("/batches/{name}/sync", summary="Incremental sync now, for all synced users or one (`batch sync`)")
def api_sync(name: str, body: SyncBody, request: Request, _: Mutating) -> dict[str, Any]:
    out = members.sync_now(home_of(request), name, body.user)
    return {"name": name, "users": [o.as_dict() for o in out]}


@api.patch("/batches/{name}", summary="Change the interval, start or completion time (`batch set`)")
def api_schedule(name: str, body: ScheduleBody, request: Request, _: Mutating) -> dict[str, Any]:
    b = set_schedule(home_of(request), name, interval_hours=body.incremental_hours, start_at=body.start_at,
                     complete_at=body.complete_at)
    return {"name": name, "incremental_hours": b.incremental_hours,
            "start_at": b.start_at.isoformat() if b.start_at else None,
            "complete_at": b.complete_at.isoformat() if b.complete_at else None}


@api.get("/batches/{name}/failed.csv", summary="The failed users as a users CSV to fix (`batch export-failed`)")
def api_failed(name: str, request: Request, _: Authed, with_errors: bool = False) -> Response:
    return _failed_csv(request, name, with_errors)


@api.post("/batches/{name}/retry-csv", summary="New credentials from a users CSV; retry them (`batch retry --csv`)")
async def api_retry_csv(name: str, request: Request, _: Mutating,
                        csv: Annotated[UploadFile, File(description="EmailAddress,UserName,Password")]) -> dict[str, Any]:
    users = parse_users_csv(await csv.read(MAX_BYTES + 1), allow_unknown_columns=True, allow_empty_password=True)
    return {"name": name, "users": [o.as_dict() for o in members.retry_from_csv(home_of(request), name, users)]}


@api.get("/batches/{name}/users/{email}", summary="One user: counts, folders, run history (`batch show --user`)")
def api_user(name: str, email: str, request: Request, _: Authed) -> dict[str, Any]:
    return user_page_doc(request, name, email)["user"]


@api.post("/batches/{name}/users/{email}/retry", summary="New credentials (optional) and run again (`batch retry`)")
def api_retry(name: str, email: str, body: RetryBody, request: Request, _: Mutating) -> dict[str, str]:
    remember(body.password)
    return _one(request, name, email, "retry", password=body.password, username=body.username).as_dict()


@api.post("/batches/{name}/users/{email}/move", summary="Move the user to another batch (`batch move-user`)")
def api_move(name: str, email: str, body: MoveBody, request: Request, _: Mutating) -> dict[str, str]:
    return _one(request, name, email, "move", to=body.to).as_dict()


@api.post("/batches/{name}/users/{email}/{action}",
          summary="Sync now, stop or resume one user (`batch sync|stop|resume --user`)")
def api_user_action(name: str, email: str, action: Literal["sync", "stop", "resume"], request: Request,
                    _: Mutating) -> dict[str, str]:
    return _one(request, name, email, action).as_dict()


@api.delete("/batches/{name}/users/{email}", summary="Take the user out of the batch (`batch remove-user`)")
def api_remove(name: str, email: str, request: Request, _: Mutating) -> dict[str, str]:
    return _one(request, name, email, "remove").as_dict()


# -- pages -----------------------------------------------------------------------------------
def _see(url: str) -> Response:
    from fastapi.responses import RedirectResponse

    return RedirectResponse(url, status_code=303)


@pages.post("/batches/{name}/sync")
def page_sync(request: Request, name: str, s: Viewer, csrf: CsrfField = None) -> Response:
    check_form_csrf(s, csrf)
    members.sync_now(home_of(request), name)
    return _see(f"/batches/{name}?done=sync")


@pages.post("/batches/{name}/schedule")
def page_schedule(request: Request, name: str, s: Viewer, csrf: CsrfField = None,
                  interval: Annotated[str, Form()] = "", start_at: Annotated[str, Form()] = "",
                  complete_at: Annotated[str, Form()] = "") -> Response:
    check_form_csrf(s, csrf)
    try:
        hours = float(interval) if interval.strip() else None
    except ValueError:
        raise UsageError("the incremental interval must be a number of hours") from None
    set_schedule(home_of(request), name, interval_hours=hours, start_at=start_at.strip() or None,
                 complete_at=complete_at.strip() or None)
    return _see(f"/batches/{name}?done=schedule")


@pages.get("/batches/{name}/failed.csv")
def page_failed(request: Request, name: str, s: Viewer) -> Response:
    return _failed_csv(request, name, True)


@pages.post("/batches/{name}/retry-csv")
async def page_retry_csv(request: Request, name: str, s: Viewer, csrf: CsrfField = None,
                         csv: UploadFile | None = None) -> Response:
    check_form_csrf(s, csrf)
    if csv is None:
        raise UsageError("choose the corrected users CSV to upload")
    users = parse_users_csv(await csv.read(MAX_BYTES + 1), allow_unknown_columns=True, allow_empty_password=True)
    members.retry_from_csv(home_of(request), name, users)
    return _see(f"/batches/{name}?done=retry")


@pages.get("/batches/{name}/users/{email}")
def page_user(request: Request, name: str, email: str, s: Viewer) -> Response:
    from mailtrek.orchestrate.batches import list_batches
    from mailtrek.web.pages import page

    d = user_page_doc(request, name, email)
    others = [b.name for b in list_batches(home_of(request))
              if b.name != name and b.source_endpoint == d["batch"]["source_endpoint"]
              and (b.tenant, b.dest_endpoint) == (d["batch"]["tenant"], d["batch"]["dest_endpoint"])]
    return page(request, "user.html", s, title=f"{email} in {name}", b=d["batch"], u=d["user"], others=others,
                notice=request.query_params.get("done"), error=request.query_params.get("error"))


@pages.post("/batches/{name}/users/{email}/{action}")
def page_user_action(request: Request, name: str, email: str, action: str, s: Viewer, csrf: CsrfField = None,
                     password: Annotated[str, Form()] = "", username: Annotated[str, Form()] = "",
                     to: Annotated[str, Form()] = "") -> Response:
    check_form_csrf(s, csrf)
    remember(password)
    if action not in USER_ACTIONS:
        raise HTTPException(404, f"unknown action {action}")
    try:
        _one(request, name, email, action, password=password, username=username.strip(), to=to.strip())
    except MailtrekError as e:
        from urllib.parse import quote

        if action == "remove":
            raise
        return _see(f"/batches/{name}/users/{email}?error={quote(redact(e.message))}")
    if action in ("remove", "move"):
        return _see(f"/batches/{name}?done={action}")
    return _see(f"/batches/{name}/users/{email}?done={action}")
