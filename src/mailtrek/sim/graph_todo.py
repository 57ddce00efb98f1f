"""Graph Microsoft To Do routes: task lists, tasks and their linked resources.

- GET/POST /users/{id}/todo/lists (learn.microsoft.com/graph/api/todo-list-lists,
  todo-post-lists: ``displayName`` is required); every mailbox has its default list
  "Tasks" (``wellknownListName`` ``defaultList``, learn.microsoft.com/graph/api/resources/todotasklist);
  GET /users/{id}/todo/lists/{id} (todotasklist-get);
- GET/POST /users/{id}/todo/lists/{id}/tasks (todotasklist-list-tasks,
  todotasklist-post-tasks: 201 with the task; a create body may carry
  ``linkedResources``, "You can also create a linkedResource object while creating a
  todoTask", linkedresource); $top/$skip paging and ``$expand=linkedResources``;
- GET/PATCH/DELETE /users/{id}/todo/lists/{id}/tasks/{id} (todotask-get, todotask-update,
  todotask-delete);
- GET/POST /users/{id}/todo/lists/{id}/tasks/{id}/linkedResources
  (todotask-list-linkedresources, todotask-post-linkedresources).

The todoTask resource (learn.microsoft.com/graph/api/resources/todotask): ``title``,
``body``, ``status`` (notStarted, inProgress, completed, waitingOnOthers, deferred),
``importance`` (low, normal, high), ``dueDateTime``/``startDateTime``/
``completedDateTime``/``reminderDateTime`` (dateTimeTimeZone), ``isReminderOn``,
``categories`` and ``recurrence`` (patternedRecurrence). These routes sit behind the same
gate (token, throttling) as every other Graph route.
"""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response

from mailtrek.sim.errors import GraphError
from mailtrek.sim.graph_common import check_id, context_url, item_not_found, mailbox
from mailtrek.sim.odata import expanded, page, read_json, select
from mailtrek.sim.pim_data import PimData, PimFolder, PimItem
from mailtrek.sim.state import SimState

TASK_FIELDS = frozenset({
    "title", "body", "status", "importance", "dueDateTime", "startDateTime",
    "completedDateTime", "reminderDateTime", "isReminderOn", "categories", "recurrence"})
STATUSES = frozenset({"notStarted", "inProgress", "completed", "waitingOnOthers", "deferred"})
IMPORTANCES = frozenset({"low", "normal", "high"})
LINK_FIELDS = ("applicationName", "displayName", "externalId", "webUrl")


def list_resource(f: PimFolder) -> dict[str, Any]:
    """A todoTaskList (learn.microsoft.com/graph/api/resources/todotasklist)."""
    return {"@odata.etag": f'W/"{f.id[-12:]}"', "id": f.id, "displayName": f.name,
            "isOwner": True, "isShared": False,
            "wellknownListName": "defaultList" if f.is_default else "none"}


def task_resource(item: PimItem, request: Request) -> dict[str, Any]:
    p = item.props
    body: dict[str, Any] = {
        "@odata.etag": f'W/"{item.id[-12:]}{item.version:06d}"', "id": item.id,
        "title": p.get("title", ""), "body": p.get("body") or {"contentType": "text",
                                                               "content": ""},
        "status": p.get("status", "notStarted"), "importance": p.get("importance", "normal"),
        "isReminderOn": bool(p.get("isReminderOn", False)),
        "categories": p.get("categories") or [], "hasAttachments": False}
    for key in ("dueDateTime", "startDateTime", "completedDateTime", "reminderDateTime",
                "recurrence"):
        if p.get(key) is not None:
            body[key] = p[key]
    if "linkedResources" in expanded(request):
        body["linkedResources"] = [dict(link) for link in p.get("linkedResources") or []]
    return select(body, request)


def _time(value: Any, what: str) -> None:
    if value is None:
        return
    if not isinstance(value, dict) or not isinstance(value.get("dateTime"), str):
        raise GraphError(400, "invalidRequest", f"Invalid value for {what}.")


def _validate(body: dict[str, Any], create: bool) -> dict[str, Any]:
    unknown = set(body) - TASK_FIELDS - {"linkedResources", "@odata.type"}
    if unknown:
        raise GraphError(400, "invalidRequest", f"The property '{sorted(unknown)[0]}' does "
                         "not exist on type 'microsoft.graph.todoTask'.")
    if create and not str(body.get("title") or "").strip():
        raise GraphError(400, "invalidRequest", "The title of the task is required.")
    if "status" in body and body["status"] not in STATUSES:
        raise GraphError(400, "invalidRequest", f"Invalid status: {body['status']!r}")
    if "importance" in body and body["importance"] not in IMPORTANCES:
        raise GraphError(400, "invalidRequest", f"Invalid importance: {body['importance']!r}")
    for key in ("dueDateTime", "startDateTime", "completedDateTime", "reminderDateTime"):
        _time(body.get(key), key)
    return {k: v for k, v in body.items() if k in TASK_FIELDS}


def _link(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise GraphError(400, "invalidRequest", "A linkedResource must be an object.")
    return {"id": str(uuid.uuid4()), **{k: raw[k] for k in LINK_FIELDS if raw.get(k) is not None}}


def todo_router(state: SimState) -> APIRouter:
    """Return the To Do list and task routes."""
    router = APIRouter()
    data: PimData = state.pim

    def task_list(user_id: str, key: str) -> PimFolder:
        check_id(key)
        found = data.folder(user_id, key, "todo")
        if found is None:
            raise item_not_found()
        return found

    def task(user_id: str, list_key: str, key: str) -> PimItem:
        found_list = task_list(user_id, list_key)
        check_id(key)
        found = data.item(user_id, key)
        if found is None or found.kind != "task" or found.folder_id != found_list.id:
            raise item_not_found()
        return found

    @router.get("/users/{user_key}/todo/lists")
    async def list_lists(user_key: str, request: Request) -> JSONResponse:
        user = mailbox(state, user_key)
        items = [list_resource(f) for f in data.list_folders(user.id, "todo")]
        return JSONResponse(page(items, request, state.base_url, 10,
                                 context=context_url(request, user_key, "todo/lists")))

    @router.post("/users/{user_key}/todo/lists")
    async def create_list(user_key: str, request: Request) -> JSONResponse:
        user = mailbox(state, user_key)
        body = await read_json(request)
        name = body.get("displayName")
        if not isinstance(name, str) or not name.strip():
            raise GraphError(400, "invalidRequest", "The displayName of the list is required.")
        created = data.create_folder(user.id, "todo", name)
        if created is None:
            raise GraphError(409, "nameAlreadyExists", "A list with that name already exists.")
        return JSONResponse({"@odata.context": context_url(request, user_key,
                                                           "todo/lists/$entity"),
                             **list_resource(created)}, status_code=201)

    @router.get("/users/{user_key}/todo/lists/{list_key}")
    async def get_list(user_key: str, list_key: str, request: Request) -> JSONResponse:
        user = mailbox(state, user_key)
        return JSONResponse(select(list_resource(task_list(user.id, list_key)), request))

    @router.get("/users/{user_key}/todo/lists/{list_key}/tasks")
    async def list_tasks(user_key: str, list_key: str, request: Request) -> JSONResponse:
        user = mailbox(state, user_key)
        found = task_list(user.id, list_key)
        items = [task_resource(i, request) for i in data.list_items(user.id, found.id, "task")]
        return JSONResponse(page(items, request, state.base_url, 10,
                                 context=context_url(request, user_key, "tasks")))

    @router.post("/users/{user_key}/todo/lists/{list_key}/tasks")
    async def create_task(user_key: str, list_key: str, request: Request) -> JSONResponse:
        user = mailbox(state, user_key)
        found = task_list(user.id, list_key)
        body = await read_json(request)
        props = _validate(body, True)
        links = body.get("linkedResources") or []
        if not isinstance(links, list):
            raise GraphError(400, "invalidRequest", "linkedResources must be a collection.")
        props["linkedResources"] = [_link(x) for x in links]
        item = data.add_item(user.id, found.id, "task", props, {})
        return JSONResponse({"@odata.context": context_url(request, user_key, "tasks/$entity"),
                             **task_resource(item, request)}, status_code=201)

    @router.get("/users/{user_key}/todo/lists/{list_key}/tasks/{task_key}")
    async def get_task(user_key: str, list_key: str, task_key: str,
                       request: Request) -> JSONResponse:
        user = mailbox(state, user_key)
        return JSONResponse(task_resource(task(user.id, list_key, task_key), request))

    @router.patch("/users/{user_key}/todo/lists/{list_key}/tasks/{task_key}")
    async def update_task(user_key: str, list_key: str, task_key: str,
                          request: Request) -> JSONResponse:
        user = mailbox(state, user_key)
        item = task(user.id, list_key, task_key)
        body = await read_json(request)
        if "linkedResources" in body:  # a navigation property: its own routes change it
            raise GraphError(400, "invalidRequest", "linkedResources cannot be updated here.")
        changes = _validate(body, False)
        with data.lock:
            item.props.update(changes)
            item.props = {k: v for k, v in item.props.items() if v is not None}
            item.version += 1
        return JSONResponse(task_resource(item, request))

    @router.delete("/users/{user_key}/todo/lists/{list_key}/tasks/{task_key}")
    async def delete_task(user_key: str, list_key: str, task_key: str) -> Response:
        user = mailbox(state, user_key)
        item = task(user.id, list_key, task_key)
        with data.lock:
            data.items.pop(item.id, None)
        return Response(status_code=204)

    @router.get("/users/{user_key}/todo/lists/{list_key}/tasks/{task_key}/linkedResources")
    async def list_links(user_key: str, list_key: str, task_key: str,
                         request: Request) -> JSONResponse:
        user = mailbox(state, user_key)
        item = task(user.id, list_key, task_key)
        links = [dict(x) for x in item.props.get("linkedResources") or []]
        return JSONResponse(page(links, request, state.base_url, 10))

    @router.post("/users/{user_key}/todo/lists/{list_key}/tasks/{task_key}/linkedResources")
    async def create_link(user_key: str, list_key: str, task_key: str,
                          request: Request) -> JSONResponse:
        user = mailbox(state, user_key)
        item = task(user.id, list_key, task_key)
        link = _link(await read_json(request))
        with data.lock:
            item.props.setdefault("linkedResources", []).append(link)
            item.version += 1
        return JSONResponse(link, status_code=201)

    return router
