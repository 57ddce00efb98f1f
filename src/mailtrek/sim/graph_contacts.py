"""Graph contact folder and contact routes.

- GET/POST /users/{id}/contactFolders (learn.microsoft.com/graph/api/user-list-contactfolders,
  user-post-contactfolders: ``displayName``; a taken name answers 409 ErrorFolderExists);
  GET /users/{id}/contactFolders/{id} (contactfolder-get);
- GET/POST /users/{id}/contactFolders/{id}/contacts (contactfolder-list-contacts,
  contactfolder-post-contacts) with $select, paging (default page 10) and the
  extended-property ``$filter``/``$expand`` of graph_pim_common;
- GET/PATCH/DELETE /users/{id}/contacts/{id} (contact-get, contact-update, contact-delete);
- PUT/GET /users/{id}/contacts/{id}/photo/$value (profilephoto-update, profilephoto-get:
  a contact's photo is set with the image bytes as the body).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response

from mailtrek.sim.errors import GraphError
from mailtrek.sim.graph_common import check_id, context_url, item_not_found, mailbox
from mailtrek.sim.graph_pim_common import extended_filter, matches, read_extended, with_extended
from mailtrek.sim.odata import page, read_json, select
from mailtrek.sim.pim_data import PimData, PimFolder, PimItem
from mailtrek.sim.state import SimState

CONTACT_FIELDS = frozenset({
    "displayName", "givenName", "surname", "middleName", "title", "generation", "nickName",
    "initials", "emailAddresses", "businessPhones", "homePhones", "mobilePhone",
    "homeAddress", "businessAddress", "otherAddress", "companyName", "department",
    "jobTitle", "officeLocation", "profession", "personalNotes", "birthday", "categories",
    "imAddresses", "businessHomePage", "spouseName", "children", "fileAs", "manager",
    "assistantName"})
MAX_PHOTO = 4 * 1024 * 1024


def folder_resource(f: PimFolder) -> dict[str, Any]:
    """A contactFolder (learn.microsoft.com/graph/api/resources/contactfolder)."""
    return {"id": f.id, "displayName": f.name, "parentFolderId": None}


def contact_resource(item: PimItem, request: Request) -> dict[str, Any]:
    body = {"@odata.etag": f'W/"{item.id[-12:]}{item.version:06d}"', "id": item.id,
            "parentFolderId": item.folder_id, **item.props}
    for many in ("emailAddresses", "businessPhones", "homePhones", "categories"):
        body.setdefault(many, [])
    return select(with_extended(body, item.ext, request), request)


def _validate(body: dict[str, Any]) -> dict[str, Any]:
    unknown = set(body) - CONTACT_FIELDS - {"singleValueExtendedProperties", "@odata.type"}
    if unknown:
        raise GraphError(400, "RequestBodyRead", f"The property '{sorted(unknown)[0]}' does not "
                         "exist on type 'microsoft.graph.contact'.")
    emails = body.get("emailAddresses") or []
    if not isinstance(emails, list) or len(emails) > 3:
        # Outlook contacts hold three e-mail addresses (Email1..Email3)
        raise GraphError(400, "ErrorInvalidRequest", "A contact holds at most 3 email addresses.")
    return {k: v for k, v in body.items() if k in CONTACT_FIELDS}


def contacts_router(state: SimState) -> APIRouter:
    """Return the contact folder and contact routes."""
    router = APIRouter()
    data: PimData = state.pim
    photos: dict[str, tuple[bytes, str]] = state.pim_photos

    def folder(user_id: str, key: str) -> PimFolder:
        check_id(key)
        found = data.folder(user_id, key, "contacts")
        if found is None:
            raise item_not_found()
        return found

    def contact(user_id: str, key: str) -> PimItem:
        check_id(key)
        found = data.item(user_id, key)
        if found is None or found.kind != "contact":
            raise item_not_found()
        return found

    @router.get("/users/{user_key}/contactFolders")
    async def list_folders(user_key: str, request: Request) -> JSONResponse:
        user = mailbox(state, user_key)
        items = [folder_resource(f) for f in data.list_folders(user.id, "contacts")]
        return JSONResponse(page(items, request, state.base_url, 10,
                                 context=context_url(request, user_key, "contactFolders")))

    @router.post("/users/{user_key}/contactFolders")
    async def create_folder(user_key: str, request: Request) -> JSONResponse:
        user = mailbox(state, user_key)
        body = await read_json(request)
        name = body.get("displayName")
        if not isinstance(name, str) or not name.strip():
            raise GraphError(400, "ErrorInvalidRequest", "The folder name is invalid.")
        created = data.create_folder(user.id, "contacts", name)
        if created is None:
            raise GraphError(409, "ErrorFolderExists",
                             "A folder with the specified name already exists.")
        return JSONResponse({"@odata.context": context_url(request, user_key,
                                                           "contactFolders/$entity"),
                             **folder_resource(created)}, status_code=201)

    @router.get("/users/{user_key}/contactFolders/{folder_key}")
    async def get_folder(user_key: str, folder_key: str, request: Request) -> JSONResponse:
        user = mailbox(state, user_key)
        return JSONResponse(select(folder_resource(folder(user.id, folder_key)), request))

    @router.get("/users/{user_key}/contactFolders/{folder_key}/contacts")
    async def list_contacts(user_key: str, folder_key: str, request: Request) -> JSONResponse:
        user = mailbox(state, user_key)
        found = folder(user.id, folder_key)
        wanted = extended_filter(request)
        items = [contact_resource(i, request)
                 for i in data.list_items(user.id, found.id, "contact") if matches(i.ext, wanted)]
        return JSONResponse(page(items, request, state.base_url, 10,
                                 context=context_url(request, user_key, "contacts")))

    @router.post("/users/{user_key}/contactFolders/{folder_key}/contacts")
    async def create_contact(user_key: str, folder_key: str, request: Request) -> JSONResponse:
        user = mailbox(state, user_key)
        found = folder(user.id, folder_key)
        body = await read_json(request)
        item = data.add_item(user.id, found.id, "contact", _validate(body), read_extended(body))
        return JSONResponse({"@odata.context": context_url(request, user_key, "contacts/$entity"),
                             **contact_resource(item, request)}, status_code=201)

    @router.get("/users/{user_key}/contacts/{contact_key}")
    async def get_contact(user_key: str, contact_key: str, request: Request) -> JSONResponse:
        user = mailbox(state, user_key)
        return JSONResponse(contact_resource(contact(user.id, contact_key), request))

    @router.patch("/users/{user_key}/contacts/{contact_key}")
    async def update_contact(user_key: str, contact_key: str, request: Request) -> JSONResponse:
        user = mailbox(state, user_key)
        item = contact(user.id, contact_key)
        body = await read_json(request)
        ext, changes = read_extended(body), _validate(body)
        with data.lock:
            item.props.update(changes)
            item.props = {k: v for k, v in item.props.items() if v is not None}
            item.ext.update(ext)
            item.version += 1
        return JSONResponse(contact_resource(item, request))

    @router.delete("/users/{user_key}/contacts/{contact_key}")
    async def delete_contact(user_key: str, contact_key: str) -> Response:
        user = mailbox(state, user_key)
        item = contact(user.id, contact_key)
        with data.lock:
            data.items.pop(item.id, None)
        photos.pop(item.id, None)
        return Response(status_code=204)

    @router.put("/users/{user_key}/contacts/{contact_key}/photo/$value")
    async def put_photo(user_key: str, contact_key: str, request: Request) -> Response:
        user = mailbox(state, user_key)
        item = contact(user.id, contact_key)
        raw = await request.body()
        if not raw or len(raw) > MAX_PHOTO:
            raise GraphError(400, "ErrorInvalidRequest", "The photo is empty or too large.")
        photos[item.id] = (raw, request.headers.get("content-type", "image/jpeg"))
        return Response(status_code=200)

    @router.get("/users/{user_key}/contacts/{contact_key}/photo/$value")
    async def get_photo(user_key: str, contact_key: str) -> Response:
        user = mailbox(state, user_key)
        item = contact(user.id, contact_key)
        if item.id not in photos:
            raise GraphError(404, "ErrorItemNotFound", "The photo wasn't found.")
        raw, ctype = photos[item.id]
        return Response(raw, media_type=ctype)

    return router
