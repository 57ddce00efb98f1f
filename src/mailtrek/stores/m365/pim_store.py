"""Contacts and calendars into Microsoft 365 through Graph: a ``PimDestination``.

Collections are calendars (learn.microsoft.com/graph/api/user-list-calendars,
user-post-calendars) and contact folders (user-list-contactfolders,
user-post-contactfolders), found or created by name. Objects are events
(user-post-events, event-update, event-list-instances) and contacts
(contactfolder-post-contacts, contact-update, profilephoto-update for the photo).
A calendar's tasks (VTODO) go to the Microsoft To Do list of its name (``pim_tasks``).
Inline event attachments are added as fileAttachments after the event is written
(event-post-attachments, "under 3 MB"; 3 MB to 150 MB through an upload session; matched
by name and size so none is added twice); attachments given by URI are kept as links in the body; both are noted per item.

Exactly once: every object carries its source UID in a single-value extended property
(``PROP_UID``, learn.microsoft.com/graph/api/singlevaluelegacyextendedproperty-post-singlevalueextendedproperties);
before creating, the store looks the UID up (``$filter=singleValueExtendedProperties/Any(...)``,
singlevaluelegacyextendedproperty-get) unless it has just listed the whole collection,
and answers ``existing`` instead of creating a twin. A POST whose answer was lost is
looked up the same way before it is reported.

No attendee receives anything: "When an event is sent, the server sends invitations to
all the attendees" (user-post-events), and Graph has no switch to create a meeting
without sending them. So events are created *without* attendees; the organizer and
attendee list are kept in the event body (a short text block) and, as JSON, in the
extended property ``PROP_PEOPLE``; the per-item report says so. Read back, the store
writes events and contacts as iCalendar/vCard (``pim.graph_ical``) so the shared sync and
verify compare them like any DAV object; ``projection`` says what a source object
becomes here, so the comparison is against what Graph can hold.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from mailtrek.errors import ConfigError, StoreError
from mailtrek.pacer import Pacer
from mailtrek.pim.fields import BrokenObjectError, read_object
from mailtrek.pim.graph_ical import (
    contact_vcard,
    event_ical,
    project_contact,
    project_event,
    project_task,
    series_dates,
    when,
)
from mailtrek.pim.graph_map import (
    INLINE_EVENT_FILE,
    EventFile,
    GraphContact,
    GraphEvent,
    contact_to_graph,
    event_to_graph,
    has_task,
)
from mailtrek.pim.model import (
    Changes,
    Collection,
    Item,
    ItemRef,
    Kind,
    PutResult,
    match_collection,
)
from mailtrek.stores.m365.api import (
    GraphClient,
    GraphConflictError,
    GraphNotFoundError,
)
from mailtrek.stores.m365.config import TenantConfig
from mailtrek.stores.m365.create_once import create_once
from mailtrek.stores.m365.pim_tasks import TodoTasks, is_task_href

GUID = "{8a5c6f2e-0d1b-4f43-9b7e-6d2c1e3f4a70}"  # mailtrek's property set
PROP_UID = f"String {GUID} Name mailtrekSourceUid"
PROP_PEOPLE = f"String {GUID} Name mailtrekAttendees"
PAGE = "100"
UPLOAD_CHUNK = 3200 * 1024  # a multiple of 320 KiB, under the 4 MB a range may carry
MOVED = dt.timedelta(days=366)
EVENT_SELECT = ("id,subject,start,end,isAllDay,recurrence,type,originalStart,body,"
                "location,categories")
CONTACT_SELECT = "id,displayName,givenName,surname,middleName,title,generation,emailAddresses"
AREAS: dict[Kind, tuple[str, str, str]] = {  # collection path, name field, item path
    "calendar": ("calendars", "name", "events"),
    "contacts": ("contactFolders", "displayName", "contacts"),
}


def _quote(value: str) -> str:
    return value.replace("'", "''")


def _uid_filter(uid: str) -> str:
    return (f"singleValueExtendedProperties/Any(ep: ep/id eq '{_quote(PROP_UID)}' and "
            f"ep/value eq '{_quote(uid)}')")


def _expand_uid() -> str:
    return f"singleValueExtendedProperties($filter=id eq '{_quote(PROP_UID)}')"


def _ext_uid(resource: dict[str, Any]) -> str | None:
    for p in resource.get("singleValueExtendedProperties") or []:
        if p.get("id", "").lower() == PROP_UID.lower():
            return str(p.get("value"))
    return None


def _people_note(ge: GraphEvent) -> str:
    lines = ["", "-- migrated by mailtrek: nobody was invited; the original meeting had --"]
    if ge.organizer:
        lines.append(f"Organizer: {_who(ge.organizer)}")
    for a in ge.attendees:
        lines.append(f"Attendee ({a.get('type', 'required')}): {_who(a)}")
    return "\n".join(lines)


def _links_note(links: Sequence[str]) -> str:
    return "\n".join(["", "-- migrated by mailtrek: attachments given as links --", *links])


def _who(person: dict[str, Any]) -> str:
    e = person.get("emailAddress") or {}
    return f"{e['name']} <{e['address']}>" if e.get("name") else str(e.get("address", ""))


class GraphPimStore:
    """One Exchange Online mailbox's calendars and contact folders (see module doc)."""

    def __init__(self, address: str, tenant: TenantConfig, *, client: GraphClient | None = None,
                 pacer: Pacer | None = None) -> None:
        if "@" not in address:
            raise ConfigError(f"Not a mailbox address: {address!r}", hint="use m365://user@domain")
        self.address = address
        self.tenant = tenant
        self._own_client = client is None
        self.client = client or GraphClient(tenant, pacer=pacer)
        self._user = f"users/{quote(address, safe='@')}"
        self._cache: dict[str, dict[str, Any]] = {}  # item href -> resource as listed
        self._index: dict[str, dict[str, str]] = {}  # collection href -> {UID: item href}
        self.tasks = TodoTasks(self._user, self._call, self._all)

    # -- plumbing ---------------------------------------------------------------------
    async def _call(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
        response = await self.client.request(self.address, method, path, **kw)
        return response.json() if response.content else {}

    async def _all(self, path: str, params: dict[str, str]) -> list[dict[str, Any]]:
        return [i async for i in self.client.pages(self.address, f"{self._user}/{path}",
                                                   params=params)]

    @staticmethod
    def _id(c: Collection) -> str:
        return c.href.rstrip("/").rsplit("/", 1)[-1]

    # -- PimSource --------------------------------------------------------------------
    async def connect(self) -> None:
        """Check that the user exists (and has a mailbox: its calendars answer)."""
        await self._call("GET", f"{self._user}/calendars", params={"$top": "1",
                                                                    "$select": "id"})

    async def close(self) -> None:
        if self._own_client:
            await self.client.close()
        else:
            await self.client.release(self.address)

    async def collections(self, kinds: Sequence[Kind]) -> list[Collection]:
        out: list[Collection] = []
        for kind in kinds:
            path, name_field, _ = AREAS[kind]
            for r in await self._all(path, {"$top": PAGE}):
                out.append(Collection(f"{path}/{r['id']}/", kind, str(r.get(name_field) or "")))
            if kind == "calendar":  # To Do lists no calendar is named like: task calendars
                names = {c.name.casefold() for c in out if c.kind == "calendar"}
                out += [c for c in await self.tasks.lists() if c.name.casefold() not in names]
        return out

    async def list_items(self, collection: Collection) -> list[ItemRef]:
        """Every event (series masters and single events) or contact, with its etag."""
        if is_task_href(collection.href):  # a To Do list: its tasks
            return [ItemRef(t["href"], t.get("@odata.etag"))
                    for t in await self.tasks.list_items(collection)]
        path, _, items = AREAS[collection.kind]
        select = EVENT_SELECT if collection.kind == "calendar" else CONTACT_SELECT
        found = await self._all(f"{path}/{self._id(collection)}/{items}",
                                {"$top": PAGE, "$select": select, "$expand": _expand_uid()})
        index: dict[str, str] = {}
        refs = []
        for r in found:
            href = f"{items}/{r['id']}"
            self._cache[href] = r
            uid = _ext_uid(r)
            if uid is not None:
                index.setdefault(uid, href)
            refs.append(ItemRef(href, r.get("@odata.etag")))
        if collection.kind == "calendar":  # its VTODOs live in the To Do list of its name
            for t in await self.tasks.list_items(collection):
                refs.append(ItemRef(t["href"], t.get("@odata.etag")))
        self._index[collection.href] = index
        return refs

    async def fetch(self, collection: Collection, hrefs: Sequence[str]) -> list[Item]:
        out = []
        for href in hrefs:
            if is_task_href(href):
                task = await self.tasks.fetch(href)
                if task is not None:
                    out.append(Item(href, *task))
                continue
            r = self._cache.get(href)
            if r is None:
                select = EVENT_SELECT if collection.kind == "calendar" else CONTACT_SELECT
                try:
                    r = await self._call("GET", f"{self._user}/{href}",
                                         params={"$select": select, "$expand": _expand_uid()})
                except GraphNotFoundError:
                    continue
            uid = _ext_uid(r) or f"graph-{r['id']}"
            body = (await self._event_body(uid, r) if collection.kind == "calendar"
                    else contact_vcard(uid, r))
            out.append(Item(href, r.get("@odata.etag"), body))
        return out

    async def changes(self, collection: Collection, token: str) -> Changes | None:
        return None  # no sync token here: the sync lists by etag

    async def _event_body(self, uid: str, r: dict[str, Any]) -> bytes:
        """The series as iCalendar: exceptions and cancelled occurrences from its instances."""
        if not r.get("recurrence"):
            return event_ical(uid, r)
        dates = series_dates(r)
        if not dates:
            return event_ical(uid, r)
        first = when(r["start"])
        # Instances are found by the time they are at now: a changed occurrence may have
        # moved (by up to a year here) outside the series' own span.
        lo = dt.datetime.combine(dates[0], dt.time(), first.tzinfo) - MOVED
        hi = dt.datetime.combine(dates[-1], dt.time(), first.tzinfo) + MOVED
        seen: set[dt.date] = set()
        exceptions = []
        for inst in await self._all(f"events/{r['id']}/instances", {
                "startDateTime": _iso(lo), "endDateTime": _iso(hi), "$top": "1000",
                "$select": "id,type,start,end,subject,isAllDay,originalStart"}):
            original = dt.datetime.fromisoformat(str(inst["originalStart"]).replace("Z", "+00:00"))
            seen.add(original.astimezone(first.tzinfo).date())
            if inst.get("type") == "exception":
                exceptions.append({**inst, "isAllDay": inst.get("isAllDay", r.get("isAllDay"))})
        cancelled: list[dt.datetime | dt.date] = []
        for d in dates:
            if d not in seen:
                at = dt.datetime.combine(d, first.timetz().replace(tzinfo=None), first.tzinfo)
                cancelled.append(d if r.get("isAllDay") else at)
        return event_ical(uid, r, exceptions, cancelled)

    # -- PimDestination ---------------------------------------------------------------
    async def ensure_collection(self, like: Collection,
                                known_href: str | None = None) -> Collection:
        path, name_field, _ = AREAS[like.kind]
        if like.kind == "calendar" and like.tasks_only:  # a task list: To Do (pim_tasks)
            return await self.tasks.ensure_list(like, known_href)
        existing = [c for c in await self.collections([like.kind]) if not is_task_href(c.href)]
        found = match_collection(existing, known_href, like.name, fold_case=True)
        if found is not None:
            return found
        try:
            r = await self._call("POST", f"{self._user}/{path}", json_body={name_field: like.name})
        except GraphConflictError:  # made meanwhile (another run): take it
            for c in await self.collections([like.kind]):
                if c.name.casefold() == like.name.casefold() and not is_task_href(c.href):
                    return c
            raise
        made = Collection(f"{path}/{r['id']}/", like.kind, like.name)
        self._index[made.href] = {}
        return made

    async def find(self, collection: Collection, uid: str) -> str | None:
        """The href of the object holding ``uid`` (from the last listing, else a lookup)."""
        index = self._index.get(collection.href)
        if index is not None:
            return index.get(uid)
        return await self._lookup(collection, uid)

    async def _lookup(self, collection: Collection, uid: str) -> str | None:
        """The href of the object holding ``uid``, asked of Graph (``$filter`` on PROP_UID)."""
        path, _, items = AREAS[collection.kind]
        found = await self._all(f"{path}/{self._id(collection)}/{items}", {
            "$filter": _uid_filter(uid), "$select": "id", "$expand": _expand_uid()})
        for r in found:
            if _ext_uid(r) == uid:
                return f"{items}/{r['id']}"
        return None

    def projection(self, kind: Kind, body: bytes) -> bytes:
        """What ``body`` becomes in Graph, as iCalendar/vCard (BrokenObjectError if nothing)."""
        if kind == "calendar":
            return project_task(body) if has_task(body) else project_event(body)
        return project_contact(body, read_object(body, kind).uid)

    async def put(self, collection: Collection, uid: str, body: bytes, *,
                  href: str | None = None) -> PutResult:
        if collection.kind == "calendar" and has_task(body):  # a VTODO: To Do (pim_tasks)
            return await self.tasks.put(collection, uid, body, href)
        if is_task_href(collection.href):
            return PutResult(error="not a task, in a collection of tasks only (its To Do list "
                             "holds tasks): not copied")
        try:
            mapped: GraphEvent | GraphContact = (event_to_graph(body) if collection.kind
                                                 == "calendar" else contact_to_graph(body))
        except BrokenObjectError as e:
            reason = e.reason
            if collection.kind == "calendar" and reason == "no VEVENT in it":
                reason = "no VEVENT or VTODO in it: Graph calendars hold events and To Do " \
                         "lists tasks (journal entries are not copied)"
            return PutResult(error=reason)
        notes = list(mapped.lost)
        json_body = dict(mapped.body)
        ext = [{"id": PROP_UID, "value": uid}]
        if isinstance(mapped, GraphEvent) and mapped.links:
            text = (json_body.get("body") or {}).get("content", "") + _links_note(mapped.links)
            json_body["body"] = {"contentType": "text", "content": text}
        if isinstance(mapped, GraphEvent) and (mapped.attendees or mapped.organizer):
            people = {"organizer": mapped.organizer, "attendees": mapped.attendees}
            ext.append({"id": PROP_PEOPLE, "value": json.dumps(people, ensure_ascii=False)})
            text = (json_body.get("body") or {}).get("content", "") + _people_note(mapped)
            json_body["body"] = {"contentType": "text", "content": text}
            notes.append(f"not invited: {len(mapped.attendees)} attendees and the organizer "
                         "kept in the event body and an extended property, not as attendees")
        json_body["singleValueExtendedProperties"] = ext
        path, _, items = AREAS[collection.kind]
        if href is None:
            async def find(fresh: bool) -> str | None:
                return await (self._lookup if fresh else self.find)(collection, uid)

            async def post() -> tuple[str, dict[str, Any]]:
                made = await self._call(
                    "POST", f"{self._user}/{path}/{self._id(collection)}/{items}",
                    json_body=json_body)
                return f"{items}/{made['id']}", made

            def remember(made: str) -> None:  # into a listing only: a partial one would
                index = self._index.get(collection.href)  # hide the objects not in it
                if index is not None:
                    index[uid] = made

            created = await create_once(find, post, remember)
            if created.answer is None:
                return PutResult(existing=created.href)
            href, r = created.href, created.answer
        else:
            if isinstance(mapped, GraphEvent) and "recurrence" not in json_body:
                json_body["recurrence"] = None
            r = await self._call("PATCH", f"{self._user}/{href}", json_body=json_body)
        self._cache.pop(href, None)
        if isinstance(mapped, GraphEvent) and (mapped.overrides or mapped.cancelled):
            notes += await self._apply_instances(r, mapped)
        if isinstance(mapped, GraphEvent) and mapped.files:
            notes += await self._add_files(href, mapped.files)
        if isinstance(mapped, GraphContact) and mapped.photo:
            await self.client.request(self.address, "PUT", f"{self._user}/{href}/photo/$value",
                                      content=mapped.photo, headers={"Content-Type": "image/jpeg"})
        return PutResult(href=href, etag=r.get("@odata.etag"), notes=tuple(notes))

    async def _add_files(self, href: str, files: Sequence[EventFile]) -> list[str]:
        """Add the event's inline attachments it does not hold yet (by name and size) as
        fileAttachments (learn.microsoft.com/graph/api/event-post-attachments)."""
        path = f"{self._user}/{href}/attachments"
        held = {(str(a.get("name")), int(a.get("size") or 0)) for a in await self._all(
            f"{href}/attachments", {"$select": "id,name,size"})}
        notes = []
        for f in files:
            if (f.name, len(f.content)) in held:
                continue
            try:
                if len(f.content) < INLINE_EVENT_FILE:
                    await self._call("POST", path, json_body={
                        "@odata.type": "#microsoft.graph.fileAttachment", "name": f.name,
                        "contentType": f.content_type,
                        "contentBytes": base64.b64encode(f.content).decode()})
                else:
                    await self._upload(path, f)
            except StoreError as e:
                notes.append(f"attachment {f.name}: refused ({e.message})")
        return notes

    async def _upload(self, path: str, f: EventFile) -> None:
        """A file of 3 MB or more through an upload session: ranges of at most 4 MB PUT
        to the pre-authenticated ``uploadUrl`` (learn.microsoft.com/graph/api/attachment-createuploadsession,
        learn.microsoft.com/graph/outlook-large-attachments)."""
        session = await self._call("POST", f"{path}/createUploadSession", json_body={
            "AttachmentItem": {"attachmentType": "file", "name": f.name,
                               "size": len(f.content), "contentType": f.content_type}})
        url = session.get("uploadUrl")
        if not url:
            raise StoreError("Graph created an upload session without an uploadUrl")
        size = len(f.content)
        for start in range(0, size, UPLOAD_CHUNK):
            chunk = f.content[start:start + UPLOAD_CHUNK]
            await self.client.request(
                self.address, "PUT", url, absolute=True, authenticated=False, content=chunk,
                headers={"Content-Type": "application/octet-stream",
                         "Content-Range": f"bytes {start}-{start + len(chunk) - 1}/{size}"})

    async def _apply_instances(self, series: dict[str, Any], ge: GraphEvent) -> list[str]:
        """Change the overridden occurrences and delete the cancelled ones (EXDATE)."""
        notes = []
        for rid, changed in ge.overrides:
            inst = await self._occurrence(series, rid)
            if inst is None:
                notes.append(f"override of {rid['dateTime']}: the series has no such occurrence")
                continue
            await self._call("PATCH", f"{self._user}/events/{inst}", json_body=changed)
        for rid in ge.cancelled:
            inst = await self._occurrence(series, rid)
            if inst is None:
                notes.append(f"EXDATE {rid['dateTime']}: the series has no such occurrence")
                continue
            try:
                await self._call("DELETE", f"{self._user}/events/{inst}")
            except GraphNotFoundError:
                continue
        return notes

    async def _occurrence(self, series: dict[str, Any], rid: dict[str, str]) -> str | None:
        """The id of the occurrence whose original start is ``rid`` (an instances query)."""
        at = when(rid)
        if series.get("isAllDay"):
            at = dt.datetime.combine(at.date(), dt.time(), when(series["start"]).tzinfo)
        found = await self._all(f"events/{series['id']}/instances", {
            "startDateTime": _iso(at - dt.timedelta(days=1)),
            "endDateTime": _iso(at + dt.timedelta(days=2)), "$select": "id,originalStart"})
        for inst in found:
            original = dt.datetime.fromisoformat(str(inst["originalStart"]).replace("Z", "+00:00"))
            if original == at or (series.get("isAllDay") and original.astimezone(
                    at.tzinfo).date() == at.date()):
                return str(inst["id"])
        return None


def _iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def open_pim_store(address: str, tenant: TenantConfig, *,
                   client: GraphClient | None = None) -> GraphPimStore:
    """The Graph contacts-and-calendars store for ``m365://address`` (not yet connected)."""
    return GraphPimStore(address, tenant, client=client)


__all__ = ["PROP_PEOPLE", "PROP_UID", "GraphPimStore", "StoreError", "open_pim_store"]
