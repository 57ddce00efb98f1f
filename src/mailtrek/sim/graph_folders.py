"""Graph mail folder routes.

- GET /users/{id}/mailFolders lists the children of msgfolderroot only, hidden ones only
  with includeHiddenFolders=true (learn.microsoft.com/graph/api/user-list-mailfolders);
- GET .../mailFolders/{id|wellKnownName} (learn.microsoft.com/graph/api/mailfolder-get);
- GET/POST .../mailFolders/{id}/childFolders (learn.microsoft.com/graph/api/mailfolder-list-childfolders,
  learn.microsoft.com/graph/api/mailfolder-post-childfolders: "displayName and isHidden are the
  only writable properties");
- POST /users/{id}/mailFolders creates under the root (learn.microsoft.com/graph/api/user-post-mailfolders);
- DELETE .../mailFolders/{id} answers 204 and removes the folder with its contents
  (learn.microsoft.com/graph/api/mailfolder-delete); well-known folders cannot be deleted
  (403 ErrorDeleteDistinguishedFolder, the Exchange error name).

Folder names are unique per parent regardless of case, as in Exchange; a clash answers
409 ErrorFolderExists (code as Exchange names it; Microsoft does not document the Graph
status for this case, research m365.md A3).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response

from mailtrek.sim.errors import GraphError
from mailtrek.sim.graph_common import api_version, context_url, folder, mailbox
from mailtrek.sim.odata import expanded, page, read_json, select
from mailtrek.sim.state import DirectoryUser, SimState
from mailtrek.sim.store import Folder, FolderExistsError


def folder_resource(state: SimState, found: Folder, version: str) -> dict[str, Any]:
    """Render a folder as a Graph mailFolder."""
    children, total, unread = state.store.folder_counts(found.id)
    body: dict[str, Any] = {
        "id": found.id,
        "displayName": found.display_name,
        "parentFolderId": found.parent_id,
        "childFolderCount": children,
        "unreadItemCount": unread,
        "totalItemCount": total,
        "isHidden": found.is_hidden,
    }
    if version == "beta":
        body["wellKnownName"] = found.well_known
    return body


def folders_router(state: SimState) -> APIRouter:
    """Return the routes for mail folders."""
    router = APIRouter()

    def _resource(request: Request, user: DirectoryUser, found: Folder) -> dict[str, Any]:
        body = folder_resource(state, found, api_version(request))
        if "childFolders" in expanded(request):
            # "$expand=childFolders" embeds the direct children (one level), as in
            # learn.microsoft.com/graph/api/mailfolder-list-childfolders example 2.
            hidden = request.query_params.get("includeHiddenFolders", "").lower() == "true"
            body["childFolders"] = [
                folder_resource(state, child, api_version(request))
                for child in state.store.children(user.id, found.id, include_hidden=hidden)]
        return body

    def _list(request: Request, user_key: str, user: DirectoryUser, parent: Folder,
              tail: str) -> JSONResponse:
        hidden = request.query_params.get("includeHiddenFolders", "").lower() == "true"
        items = [_resource(request, user, f)
                 for f in state.store.children(user.id, parent.id, include_hidden=hidden)]
        return JSONResponse(page(items, request, state.base_url, state.config.limits.page_size,
                                 context=context_url(request, user_key, tail)))

    async def _create(request: Request, user_key: str, user: DirectoryUser,
                      parent: Folder) -> JSONResponse:
        body = await read_json(request)
        unknown = set(body) - {"displayName", "isHidden", "@odata.type"}
        if unknown:
            raise GraphError(400, "RequestBodyRead",
                             f"The property '{sorted(unknown)[0]}' does not exist on type "
                             "'microsoft.graph.mailFolder'.")
        name = body.get("displayName")
        if not isinstance(name, str) or not name.strip():
            raise GraphError(400, "ErrorInvalidRequest", "The folder name is invalid.")
        hidden = bool(body.get("isHidden", False))
        try:
            created = state.store.create_folder(user.id, parent, name, hidden)
        except FolderExistsError as exc:
            raise GraphError(409, "ErrorFolderExists",
                             "A folder with the specified name already exists.") from exc
        body = {"@odata.context": context_url(request, user_key, "mailFolders/$entity")}
        body.update(folder_resource(state, created, api_version(request)))
        return JSONResponse(body, status_code=201)

    @router.get("/users/{user_key}/mailFolders")
    async def list_root(user_key: str, request: Request) -> JSONResponse:
        user = mailbox(state, user_key)
        return _list(request, user_key, user, folder(state, user, "msgfolderroot"), "mailFolders")

    @router.post("/users/{user_key}/mailFolders")
    async def create_root(user_key: str, request: Request) -> JSONResponse:
        user = mailbox(state, user_key)
        return await _create(request, user_key, user, folder(state, user, "msgfolderroot"))

    @router.get("/users/{user_key}/mailFolders/{folder_key}")
    async def get_folder(user_key: str, folder_key: str, request: Request) -> JSONResponse:
        user = mailbox(state, user_key)
        found = folder(state, user, folder_key)
        body = {"@odata.context": context_url(request, user_key, "mailFolders/$entity")}
        body.update(select(_resource(request, user, found), request))
        return JSONResponse(body)

    @router.get("/users/{user_key}/mailFolders/{folder_key}/childFolders")
    async def list_children(user_key: str, folder_key: str, request: Request) -> JSONResponse:
        user = mailbox(state, user_key)
        return _list(request, user_key, user, folder(state, user, folder_key),
                     f"mailFolders('{folder_key}')/childFolders")

    @router.post("/users/{user_key}/mailFolders/{folder_key}/childFolders")
    async def create_child(user_key: str, folder_key: str, request: Request) -> JSONResponse:
        user = mailbox(state, user_key)
        return await _create(request, user_key, user, folder(state, user, folder_key))

    @router.delete("/users/{user_key}/mailFolders/{folder_key}")
    async def delete_folder(user_key: str, folder_key: str) -> Response:
        user = mailbox(state, user_key)
        found = folder(state, user, folder_key)
        if found.well_known:
            raise GraphError(403, "ErrorDeleteDistinguishedFolder",
                             "Distinguished folders cannot be deleted.")
        state.store.delete_folder(found)
        return Response(status_code=204)

    return router
