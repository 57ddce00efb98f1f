"""Graph calendar and event routes.

- GET/POST /users/{id}/calendars (learn.microsoft.com/graph/api/user-list-calendars,
  user-post-calendars: ``name`` is required; a taken name answers 409 ErrorFolderExists);
  GET /users/{id}/calendars/{id} (calendar-get);
- GET/POST /users/{id}/calendars/{id}/events (calendar-list-events: series masters and
  single instances, not occurrences; user-post-events: 201 with the event). $select,
  $top/$skip paging (default page 10, as events list) and the extended-property
  ``$filter``/``$expand`` of graph_pim_common;
- GET/PATCH/DELETE /users/{id}/events/{id} (event-get, event-update, event-delete), for
  series masters, single events and occurrences: PATCHing an occurrence makes it an
  ``exception``, DELETE cancels it;
- GET /users/{id}/events/{id}/instances?startDateTime&endDateTime (event-list-instances:
  "If the event is a SeriesMaster type, this returns the occurrences and exceptions of the
  event in the specified time range").

Invitations: "When an event is sent, the server sends invitations to all the attendees"
(user-post-events). Every event created with attendees, and every PATCH that sets
attendees (Exchange sends the organizer's update then), records one invitation per
attendee in ``SimState.pim.outbox``; nothing else does.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response

from mailtrek.sim.errors import GraphError
from mailtrek.sim.graph_common import check_id, context_url, item_not_found, mailbox
from mailtrek.sim.graph_pim_common import extended_filter, matches, read_extended, with_extended
from mailtrek.sim.odata import page, read_json, select
from mailtrek.sim.pim_data import PimData, PimFolder, PimItem, local_start, occurrence_dates, zone
from mailtrek.sim.state import SimState

EVENT_FIELDS = frozenset({
    "subject", "body", "start", "end", "isAllDay", "recurrence", "location", "locations",
    "categories", "showAs", "sensitivity", "importance", "isReminderOn",
    "reminderMinutesBeforeStart", "attendees", "organizer", "responseRequested",
    "allowNewTimeProposals", "isOnlineMeeting", "hideAttendees", "transactionId"})
OCCURRENCE_SEP = "_OID"


def _etag(item: PimItem) -> str:
    return f'W/"{item.id[-12:]}{item.version:06d}"'


def _check_time(value: Any, what: str) -> None:
    if not isinstance(value, dict) or not isinstance(value.get("dateTime"), str):
        raise GraphError(400, "ErrorInvalidRequest", f"The {what} of the event is missing.")
    try:
        dt.datetime.fromisoformat(value["dateTime"][:19])
    except ValueError as e:
        raise GraphError(400, "ErrorInvalidRequest", f"Invalid {what}: {value!r}") from e


def _validate(body: dict[str, Any], create: bool) -> dict[str, Any]:
    unknown = set(body) - EVENT_FIELDS - {"singleValueExtendedProperties", "@odata.type"}
    if unknown:
        raise GraphError(400, "RequestBodyRead", f"The property '{sorted(unknown)[0]}' does not "
                         "exist on type 'microsoft.graph.event'.")
    if create or "start" in body:
        _check_time(body.get("start"), "start")
    if create or "end" in body:
        _check_time(body.get("end"), "end")
    return {k: v for k, v in body.items() if k in EVENT_FIELDS}


def _utc(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _shift(value: dict[str, Any], day: dt.date) -> dict[str, Any]:
    return {**value, "dateTime": day.isoformat() + value["dateTime"][10:]}


def calendar_resource(f: PimFolder) -> dict[str, Any]:
    """A calendar (learn.microsoft.com/graph/api/resources/calendar)."""
    return {"id": f.id, "name": f.name, "isDefaultCalendar": f.is_default, "canEdit": True,
            "changeKey": f.id[-8:], "color": "auto"}


def event_resource(item: PimItem, request: Request, selected: bool = True) -> dict[str, Any]:
    """An event as Graph renders it (``$select`` applied unless ``selected`` is False)."""
    p = item.props
    body: dict[str, Any] = {
        "@odata.etag": _etag(item), "id": item.id, "changeKey": _etag(item)[3:-1],
        "subject": p.get("subject", ""), "body": p.get("body") or {"contentType": "text",
                                                                   "content": ""},
        "start": p["start"], "end": p["end"], "isAllDay": bool(p.get("isAllDay")),
        "recurrence": p.get("recurrence"), "type": "seriesMaster" if p.get("recurrence")
        else "singleInstance", "seriesMasterId": None, "originalStart": None,
        "originalStartTimeZone": p["start"].get("timeZone"),
        "location": p.get("location") or {"displayName": ""},
        "categories": p.get("categories") or [], "showAs": p.get("showAs", "busy"),
        "sensitivity": p.get("sensitivity", "normal"), "isReminderOn": p.get("isReminderOn", True),
        "reminderMinutesBeforeStart": p.get("reminderMinutesBeforeStart", 15),
        "attendees": p.get("attendees") or [], "isOrganizer": True,
        "hasAttachments": bool(item.attachments),
        "organizer": {"emailAddress": {"address": item.mailbox}},
    }
    body = with_extended(body, item.ext, request)
    return select(body, request) if selected else body


def _instance(master: PimItem, day: dt.date, request: Request,
              base: dict[str, Any] | None = None) -> dict[str, Any]:
    """An occurrence (or exception) of ``master`` on ``day``; ``base``: the master's
    resource, when the caller renders many."""
    out = dict(base if base is not None else event_resource(master, request, selected=False))
    changed = master.exceptions.get(day.isoformat())
    first = local_start(master.props)
    out.update(id=f"{master.id}{OCCURRENCE_SEP}{day.strftime('%Y%m%d')}",
               type="exception" if changed is not None else "occurrence",
               seriesMasterId=master.id, recurrence=None,
               originalStart=_utc(dt.datetime.combine(day, first.timetz().replace(tzinfo=None),
                                                      first.tzinfo)))
    out.pop("singleValueExtendedProperties", None)
    offset = day - first.date()
    out["start"] = _shift(master.props["start"], day)
    end_day = dt.date.fromisoformat(master.props["end"]["dateTime"][:10]) + offset
    out["end"] = _shift(master.props["end"], end_day)
    if changed:
        out.update(changed)
    return select(out, request)


def calendar_router(state: SimState) -> APIRouter:
    """Return the calendar and event routes."""
    router = APIRouter()
    data: PimData = state.pim

    def calendar(user_id: str, key: str) -> PimFolder:
        check_id(key)
        found = data.folder(user_id, key, "calendar")
        if found is None:
            raise item_not_found()
        return found

    def event(user_id: str, key: str) -> tuple[PimItem, dt.date | None]:
        check_id(key)
        master_id, _, day = key.partition(OCCURRENCE_SEP)
        found = data.item(user_id, master_id)
        if found is None or found.kind != "event":
            raise item_not_found()
        if not day:
            return found, None
        try:
            when = dt.datetime.strptime(day, "%Y%m%d").date()
        except ValueError as e:
            raise item_not_found() from e
        if when not in occurrence_dates(found.props) or when.isoformat() in found.cancelled:
            raise item_not_found()
        return found, when

    def outbox(item: PimItem, attendees: Any, kind: str) -> None:
        recipients = [str((a.get("emailAddress") or {}).get("address", ""))
                      for a in attendees or [] if isinstance(a, dict)]
        if recipients:
            data.send_invitations(item, recipients, kind)

    @router.get("/users/{user_key}/calendars")
    async def list_calendars(user_key: str, request: Request) -> JSONResponse:
        user = mailbox(state, user_key)
        items = [calendar_resource(f) for f in data.list_folders(user.id, "calendar")]
        return JSONResponse(page(items, request, state.base_url, 10,
                                 context=context_url(request, user_key, "calendars")))

    @router.post("/users/{user_key}/calendars")
    async def create_calendar(user_key: str, request: Request) -> JSONResponse:
        user = mailbox(state, user_key)
        body = await read_json(request)
        name = body.get("name")
        if not isinstance(name, str) or not name.strip():
            raise GraphError(400, "ErrorInvalidRequest", "The calendar name is invalid.")
        created = data.create_folder(user.id, "calendar", name)
        if created is None:
            raise GraphError(409, "ErrorFolderExists",
                             "A folder with the specified name already exists.")
        created.ext.update(read_extended(body))
        return JSONResponse({"@odata.context": context_url(request, user_key, "calendars/$entity"),
                             **calendar_resource(created)}, status_code=201)

    @router.get("/users/{user_key}/calendars/{cal_key}")
    async def get_calendar(user_key: str, cal_key: str, request: Request) -> JSONResponse:
        user = mailbox(state, user_key)
        return JSONResponse(select(calendar_resource(calendar(user.id, cal_key)), request))

    @router.get("/users/{user_key}/calendars/{cal_key}/events")
    async def list_events(user_key: str, cal_key: str, request: Request) -> JSONResponse:
        user = mailbox(state, user_key)
        found = calendar(user.id, cal_key)
        wanted = extended_filter(request)
        items = [event_resource(i, request) for i in data.list_items(user.id, found.id, "event")
                 if matches(i.ext, wanted)]
        return JSONResponse(page(items, request, state.base_url, 10,
                                 context=context_url(request, user_key, "events")))

    @router.post("/users/{user_key}/calendars/{cal_key}/events")
    async def create_event(user_key: str, cal_key: str, request: Request) -> JSONResponse:
        user = mailbox(state, user_key)
        found = calendar(user.id, cal_key)
        body = await read_json(request)
        ext = read_extended(body)
        item = data.add_item(user.id, found.id, "event", _validate(body, True), ext)
        outbox(item, item.props.get("attendees"), "request")
        return JSONResponse({"@odata.context": context_url(request, user_key, "events/$entity"),
                             **event_resource(item, request)}, status_code=201)

    @router.get("/users/{user_key}/events/{event_key}")
    async def get_event(user_key: str, event_key: str, request: Request) -> JSONResponse:
        user = mailbox(state, user_key)
        item, day = event(user.id, event_key)
        return JSONResponse(event_resource(item, request) if day is None
                            else _instance(item, day, request))

    @router.patch("/users/{user_key}/events/{event_key}")
    async def update_event(user_key: str, event_key: str, request: Request) -> JSONResponse:
        user = mailbox(state, user_key)
        item, day = event(user.id, event_key)
        body = await read_json(request)
        ext = read_extended(body)
        changes = _validate(body, False)
        with data.lock:
            if day is not None:
                changes.pop("recurrence", None)
                item.exceptions.setdefault(day.isoformat(), {}).update(changes)
            else:
                if "recurrence" in changes or "start" in changes:
                    item.exceptions.clear()  # a new pattern drops the changed occurrences
                    item.cancelled.clear()
                item.props.update(changes)
                item.props = {k: v for k, v in item.props.items() if v is not None
                              or k == "recurrence"}
                item.ext.update(ext)
            item.version += 1
        if "attendees" in changes:
            outbox(item, changes["attendees"], "update")
        return JSONResponse(event_resource(item, request) if day is None
                            else _instance(item, day, request))

    @router.delete("/users/{user_key}/events/{event_key}")
    async def delete_event(user_key: str, event_key: str) -> Response:
        user = mailbox(state, user_key)
        item, day = event(user.id, event_key)
        with data.lock:
            if day is None:
                data.items.pop(item.id, None)
            else:
                item.exceptions.pop(day.isoformat(), None)
                item.cancelled.add(day.isoformat())
                item.version += 1
        return Response(status_code=204)

    @router.get("/users/{user_key}/events/{event_key}/instances")
    async def instances(user_key: str, event_key: str, request: Request) -> JSONResponse:
        user = mailbox(state, user_key)
        item, day = event(user.id, event_key)
        try:
            lo = _parse_bound(request.query_params["startDateTime"])
            hi = _parse_bound(request.query_params["endDateTime"])
        except KeyError as e:
            raise GraphError(400, "ErrorInvalidParameter", "This request requires a time window "
                             "specified by the query string parameters StartDateTime and "
                             "EndDateTime.") from e
        out: list[dict[str, Any]] = []
        if day is None and item.props.get("recurrence"):
            length = _length(item)
            base = event_resource(item, request, selected=False)
            first = local_start(item.props)
            wall, tz = first.timetz().replace(tzinfo=None), first.tzinfo
            for d in occurrence_dates(item.props):
                if d.isoformat() in item.cancelled:
                    continue
                start = dt.datetime.combine(d, wall, tz)
                changed = item.exceptions.get(d.isoformat()) or {}
                if "start" in changed:
                    start = local_start(changed)
                if start < hi and start + length > lo:
                    out.append(_instance(item, d, request, base))
        return JSONResponse(page(out, request, state.base_url, 10,
                                 context=context_url(request, user_key, "events")))

    return router


def _length(item: PimItem) -> dt.timedelta:
    end = dt.datetime.fromisoformat(item.props["end"]["dateTime"][:19]).replace(
        tzinfo=zone(item.props["end"].get("timeZone")))
    return max(end - local_start(item.props), dt.timedelta(0))


def _parse_bound(text: str) -> dt.datetime:
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as e:
        raise GraphError(400, "ErrorInvalidParameter", f"Invalid time: {text}") from e
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)
