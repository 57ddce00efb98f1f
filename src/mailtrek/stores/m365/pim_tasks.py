"""Tasks (VTODO) into Microsoft To Do, for the Graph PIM store.

A source calendar's VTODOs go to the To Do list of the same name
(learn.microsoft.com/graph/api/todo-list-lists, todo-post-lists), found by name or
created on the first task; a source task collection named "Tasks" thus lands in the
mailbox's default list. Tasks are created with todotasklist-post-tasks, changed with
todotask-update and listed with todotasklist-list-tasks.

Exactly once: the Outlook extended properties the events carry are documented for
messages, events, calendars, contacts and their folders, not for todoTask
(learn.microsoft.com/graph/api/singlevaluelegacyextendedproperty-post-singlevalueextendedproperties).
The documented way to tie a task to "the object that is associated with this task on the
third-party/partner system" is a ``linkedResource`` with its ``externalId``
(learn.microsoft.com/graph/api/resources/linkedresource), which "you can also create
... while creating a todoTask" (todotask-post-linkedresources). So each task is created
with ``linkedResources: [{applicationName: "mailtrek", externalId: <source UID>}]``, and
before creating, the list is read (``$expand=linkedResources``) and a task already
carrying the UID is answered as ``existing`` (adopted by the shared sync), also after a
POST whose answer was lost. Graph has no ``$filter`` on linked resources, so the lookup
reads the list once per run and keeps an index.

Permissions: To Do's pages list delegated ``Tasks.ReadWrite``; application permissions
(``Tasks.ReadWrite.All``, admin consent) reached To Do in Graph v1.0 in February 2023
(devblogs.microsoft.com/microsoft365dev/new-capabilities-available-in-microsoft-graph-to-do-apis),
though some older permission tables still say "Not supported". A tenant whose app lacks it
answers 403, and each task is reported with that error while events and contacts go on.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from mailtrek.errors import StoreError
from mailtrek.pim.fields import BrokenObjectError
from mailtrek.pim.graph_ical import task_ical
from mailtrek.pim.graph_map import GraphTask, todo_to_graph
from mailtrek.pim.model import Collection, PutResult, match_collection
from mailtrek.stores.m365.api import (
    GraphAccessDeniedError,
    GraphConflictError,
    GraphNotFoundError,
)
from mailtrek.stores.m365.create_once import create_once

APP = "mailtrek"
DENIED = "Microsoft To Do refused access (the app needs Tasks.ReadWrite.All): task not copied"
PAGE = "100"
Call = Callable[..., Awaitable[dict[str, Any]]]
Pages = Callable[[str, dict[str, str]], Awaitable[list[dict[str, Any]]]]


def linked_uid(task: dict[str, Any]) -> str | None:
    """The source UID mailtrek linked to ``task`` (its linkedResource's externalId)."""
    for link in task.get("linkedResources") or []:
        if link.get("applicationName") == APP and link.get("externalId"):
            return str(link["externalId"])
    return None


def is_task_href(href: str) -> bool:
    return href.startswith("todo/lists/")


class TodoTasks:
    """The To Do side of one mailbox: lists paired with calendars by name, and tasks."""

    def __init__(self, user: str, call: Call, pages: Pages) -> None:
        self._user = user
        self._call = call
        self._pages = pages
        self._lists: dict[str, str] = {}  # calendar href -> To Do list id
        self._index: dict[str, dict[str, str]] = {}  # calendar href -> {UID: task href}
        self.cache: dict[str, dict[str, Any]] = {}  # task href -> resource as listed
        self.denied = False  # To Do answered 403 (no Tasks.ReadWrite.All)

    async def lists(self) -> list[Collection]:
        """Every To Do list, as a calendar of tasks (``todo/lists/{id}/``); none when To
        Do refuses the app (``denied`` is then set)."""
        self.denied = False
        try:
            found = await self._pages("todo/lists", {"$top": PAGE})
        except GraphAccessDeniedError:
            self.denied = True
            return []
        return [Collection(f"todo/lists/{r['id']}/", "calendar", str(r.get("displayName") or ""),
                           components=("VTODO",)) for r in found]

    async def ensure_list(self, like: Collection, known_href: str | None) -> Collection:
        """The To Do list for a source collection of tasks only: ``known_href``, else the
        list of its name, else a new one (learn.microsoft.com/graph/api/todo-post-lists)."""
        existing = await self.lists()
        if self.denied:
            raise StoreError(DENIED.replace("task not copied", "no task list made"))
        found = match_collection(existing, known_href, like.name, fold_case=True)
        if found is not None:
            return found
        lid = await self._list_id(like, True)
        return Collection(f"todo/lists/{lid}/", "calendar", like.name, components=("VTODO",))

    async def _list_id(self, calendar: Collection, create: bool) -> str | None:
        """The id of the To Do list named like ``calendar`` (created when asked)."""
        if is_task_href(calendar.href):
            return calendar.href.rstrip("/").rsplit("/", 1)[-1]
        known = self._lists.get(calendar.href)
        if known is not None:
            return known
        name = calendar.name.casefold()
        for r in await self._pages("todo/lists", {"$top": PAGE}):
            if str(r.get("displayName") or "").casefold() == name:
                self._lists[calendar.href] = str(r["id"])
                return str(r["id"])
        if not create:
            return None
        try:
            r = await self._call("POST", f"{self._user}/todo/lists",
                                 json_body={"displayName": calendar.name})
        except GraphConflictError:  # made meanwhile: take it
            return await self._list_id(calendar, False)
        self._lists[calendar.href] = str(r["id"])
        self._index[calendar.href] = {}
        return str(r["id"])

    async def list_items(self, calendar: Collection) -> list[dict[str, Any]]:
        """Every task of the paired list (none when there is no such list, or when To Do
        refuses the app: then each task is reported by ``put``), indexed."""
        try:
            return await self._list_items(calendar)
        except GraphAccessDeniedError:
            if is_task_href(calendar.href):
                raise
            self._index[calendar.href] = {}
            return []

    async def _list_items(self, calendar: Collection) -> list[dict[str, Any]]:
        lid = await self._list_id(calendar, False)
        if lid is None:
            self._index[calendar.href] = {}
            return []
        found = await self._pages(f"todo/lists/{lid}/tasks",
                                  {"$top": PAGE, "$expand": "linkedResources"})
        index: dict[str, str] = {}
        for r in found:
            href = f"todo/lists/{lid}/tasks/{r['id']}"
            r["href"] = href
            self.cache[href] = r
            uid = linked_uid(r)
            if uid is not None:
                index.setdefault(uid, href)
        self._index[calendar.href] = index
        return found

    async def fetch(self, href: str) -> tuple[str | None, bytes] | None:
        """The task at ``href`` as (etag, VTODO), None when it is gone."""
        r = self.cache.get(href)
        if r is None:
            try:
                r = await self._call("GET", f"{self._user}/{href}",
                                     params={"$expand": "linkedResources"})
            except GraphNotFoundError:
                return None
        return r.get("@odata.etag"), task_ical(linked_uid(r) or f"graph-{r['id']}", r)

    async def find(self, calendar: Collection, uid: str) -> str | None:
        if calendar.href not in self._index:
            await self.list_items(calendar)
        return self._index.get(calendar.href, {}).get(uid)

    async def put(self, calendar: Collection, uid: str, body: bytes,
                  href: str | None) -> PutResult:
        """Create (or, with ``href``, update) the task for one VTODO object."""
        try:
            mapped = todo_to_graph(body)
        except BrokenObjectError as e:
            return PutResult(error=e.reason)
        try:
            return await self._put(calendar, uid, mapped, href)
        except GraphAccessDeniedError:
            return PutResult(error=DENIED)

    async def _put(self, calendar: Collection, uid: str, mapped: GraphTask,
                   href: str | None) -> PutResult:
        json_body = dict(mapped.body)
        if href is None or not is_task_href(href):
            async def find(fresh: bool) -> str | None:
                if fresh:  # the list as it is now, not as it was read before the POST
                    self._index.pop(calendar.href, None)
                return await self.find(calendar, uid)

            async def post() -> tuple[str, dict[str, Any]]:
                lid = await self._list_id(calendar, True)  # made on the first task
                json_body["linkedResources"] = [{"applicationName": APP, "externalId": uid,
                                                 "displayName": f"source UID {uid}"}]
                made = await self._call("POST", f"{self._user}/todo/lists/{lid}/tasks",
                                        json_body=json_body)
                return f"todo/lists/{lid}/tasks/{made['id']}", made

            def remember(made: str) -> None:
                self._index.setdefault(calendar.href, {})[uid] = made

            created = await create_once(find, post, remember)
            if created.answer is None:
                return PutResult(existing=created.href)
            href, r = created.href, created.answer
        else:
            for key in ("startDateTime", "dueDateTime", "completedDateTime", "recurrence",
                        "reminderDateTime"):
                json_body.setdefault(key, None)  # gone from the source: gone here
            json_body.setdefault("body", {"contentType": "text", "content": ""})
            json_body.setdefault("categories", [])
            json_body.setdefault("isReminderOn", False)
            r = await self._call("PATCH", f"{self._user}/{href}", json_body=json_body)
        self.cache.pop(href, None)
        return PutResult(href=href, etag=r.get("@odata.etag"), notes=tuple(mapped.lost))
