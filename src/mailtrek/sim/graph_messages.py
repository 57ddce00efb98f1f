"""Graph message routes: create (JSON or MIME), importMime (beta), list, get, $value, PATCH.

Pages followed: learn.microsoft.com/graph/api/user-post-messages,
learn.microsoft.com/graph/api/mailfolder-post-messages,
learn.microsoft.com/graph/api/mailfolder-importmime?view=graph-rest-beta,
learn.microsoft.com/graph/api/user-list-messages, learn.microsoft.com/graph/api/message-get
(incl. "Get MIME content", GET .../$value), learn.microsoft.com/graph/api/message-update.
Semantics are in ``messages.py``.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response

from mailtrek.sim import messages as msgs
from mailtrek.sim.config import MB
from mailtrek.sim.errors import GraphError
from mailtrek.sim.graph_common import (
    api_version,
    context_url,
    folder,
    mailbox,
    require_role,
)
from mailtrek.sim.graph_common import message as message_of
from mailtrek.sim.mime import synthesise_mime
from mailtrek.sim.odata import page, read_json, select
from mailtrek.sim.state import DirectoryUser, SimState
from mailtrek.sim.store import StoredMessage

_IMID_FILTER = re.compile(r"^\s*internetMessageId\s+eq\s+'((?:[^']|'')*)'\s*$", re.IGNORECASE)


def _is_mime(request: Request) -> bool:
    return request.headers.get("content-type", "").split(";")[0].strip().lower() == "text/plain"


def _filter(request: Request) -> str | None:
    raw = request.query_params.get("$filter")
    if raw is None:
        return None
    match = _IMID_FILTER.match(raw)
    if not match:
        raise GraphError(400, "ErrorInvalidUrlQueryFilter",
                         "The simulator supports only $filter=internetMessageId eq '...'.")
    return match.group(1).replace("''", "'")


def _with_expand(message: StoredMessage, request: Request, version: str) -> dict[str, Any]:
    body = msgs.render(message, version)
    expand = request.query_params.get("$expand", "")
    if "singlevalueextendedproperties" in expand.lower():
        wanted = re.findall(r"'([^']+)'", expand)
        stored = message.props.get("extendedProperties", {})
        values = [{"id": i, "value": stored[" ".join(i.split()).lower()]}
                  for i in wanted if " ".join(i.split()).lower() in stored]
        if any("0x0e08" in i.lower() for i in wanted):
            values.append(msgs.size_property(message))
        body["singleValueExtendedProperties"] = values
    return body


def message_mime(state: SimState, message: StoredMessage) -> bytes:
    """Return the MIME served by $value: stored bytes, or synthesised for JSON items."""
    if message.mime is not None:
        return message.mime
    attachments = [(a.props, a.content) for a in state.store.attachments(message.id)]
    return synthesise_mime(message.props, attachments)


def messages_router(state: SimState, *, beta: bool) -> APIRouter:
    """Return the message routes; importMime only when ``beta``."""
    router = APIRouter()
    limits = state.config.limits

    def _entity(request: Request, user_key: str, message: StoredMessage) -> dict[str, Any]:
        body = {"@odata.context": context_url(request, user_key, "messages/$entity")}
        body.update(msgs.render(message, api_version(request)))
        return body

    async def _create(request: Request, user_key: str, user: DirectoryUser,
                      folder_key: str | None) -> JSONResponse:
        if _is_mime(request):
            if folder_key is not None and not state.config.mime_create_in_folder:
                raise GraphError(400, "ErrorInvalidRequest",
                                 "MIME content is accepted only on /messages.")
            raw = msgs.decode_mime(await request.body())
            target = folder(state, user, folder_key or "drafts")
            message = msgs.from_mime(user.id, target.id, raw, imported=False)
        else:
            target = folder(state, user, folder_key or "drafts")
            message = msgs.from_json(user.id, target.id, await read_json(request))
        state.store.add_message(message)
        return JSONResponse(_entity(request, user_key, message), status_code=201)

    @router.post("/users/{user_key}/messages")
    async def create(user_key: str, request: Request) -> JSONResponse:
        return await _create(request, user_key, mailbox(state, user_key), None)

    @router.post("/users/{user_key}/mailFolders/{folder_key}/messages")
    async def create_in_folder(user_key: str, folder_key: str, request: Request) -> JSONResponse:
        return await _create(request, user_key, mailbox(state, user_key), folder_key)

    if beta:
        @router.post("/users/{user_key}/mailFolders/{folder_key}/importMime")
        async def import_mime(user_key: str, folder_key: str, request: Request) -> JSONResponse:
            user = mailbox(state, user_key)
            require_role(state, request, "Mail-Advanced.ReadWrite.All")
            target = folder(state, user, folder_key)
            if not _is_mime(request):
                raise GraphError(415, "UnsupportedMediaType",
                                 "importMime expects Content-Type: text/plain with base64 MIME.")
            raw = msgs.decode_mime(await request.body())
            if len(raw) > limits.max_message_bytes:
                raise GraphError(413, "ErrorMessageSizeExceeded",
                                 f"The message exceeds the maximum size of {limits.max_message_bytes // MB} MB.")
            message = msgs.from_mime(
                user.id, target.id, raw, imported=True,
                received_now=state.config.import_mime_received == "now")
            state.store.add_message(message)
            return JSONResponse(_entity(request, user_key, message), status_code=201)

    def _list(request: Request, user: DirectoryUser, folder_id: str | None,
              context: str) -> JSONResponse:
        wanted = _filter(request)
        found = state.store.messages(user.id, folder_id, internet_message_id=wanted)
        # Graph's default order for message lists is receivedDateTime descending.
        found.sort(key=lambda m: m.props.get("receivedDateTime") or "", reverse=True)
        version = api_version(request)
        items = [_with_expand(m, request, version) for m in found]
        return JSONResponse(page(items, request, state.base_url, limits.page_size,
                                 context=context))

    @router.get("/users/{user_key}/messages")
    async def list_all(user_key: str, request: Request) -> JSONResponse:
        return _list(request, mailbox(state, user_key), None,
                     context_url(request, user_key, "messages"))

    @router.get("/users/{user_key}/mailFolders/{folder_key}/messages")
    async def list_folder(user_key: str, folder_key: str, request: Request) -> JSONResponse:
        user = mailbox(state, user_key)
        return _list(request, user, folder(state, user, folder_key).id,
                     context_url(request, user_key, f"mailFolders('{folder_key}')/messages"))

    def _message(user_key: str, message_id: str) -> StoredMessage:
        return message_of(state, user_key, message_id)

    @router.get("/users/{user_key}/messages/{message_id}")
    @router.get("/users/{user_key}/mailFolders/{folder_key}/messages/{message_id}")
    async def get(user_key: str, message_id: str, request: Request) -> JSONResponse:
        message = _message(user_key, message_id)
        body = {"@odata.context": context_url(request, user_key, "messages/$entity")}
        body.update(select(_with_expand(message, request, api_version(request)), request))
        return JSONResponse(body)

    @router.get("/users/{user_key}/messages/{message_id}/$value")
    @router.get("/users/{user_key}/mailFolders/{folder_key}/messages/{message_id}/$value")
    async def get_value(user_key: str, message_id: str) -> Response:
        message = _message(user_key, message_id)
        return Response(message_mime(state, message), media_type="text/plain")

    @router.patch("/users/{user_key}/messages/{message_id}")
    async def update(user_key: str, message_id: str, request: Request) -> JSONResponse:
        message = _message(user_key, message_id)
        msgs.check_if_match(message, request.headers.get("if-match"))
        body = await read_json(request)
        props = msgs.apply_patch(message, body)
        if set(body) & msgs.DRAFT_UPDATABLE and message.mime is not None:
            # Exchange re-renders MIME once the item's content changes.
            state.store.drop_mime(message.id)
        state.store.update_props(message.id, props)
        message.props = props
        return JSONResponse(_entity(request, user_key, message))

    @router.delete("/users/{user_key}/messages/{message_id}")
    async def delete(user_key: str, message_id: str, request: Request) -> Response:
        # learn.microsoft.com/graph/api/message-delete: 204 No Content. The item leaves the
        # visible folders (the simulator does not model Recoverable Items).
        message = _message(user_key, message_id)
        msgs.check_if_match(message, request.headers.get("if-match"))
        state.store.delete_message(message.id)
        return Response(status_code=204)

    @router.post("/users/{user_key}/messages/{message_id}/move")
    async def move(user_key: str, message_id: str, request: Request) -> JSONResponse:
        # learn.microsoft.com/graph/api/message-move: "destinationId" (folder id or
        # well-known name); 201 with the moved message, which has a new id.
        message = _message(user_key, message_id)
        destination = (await read_json(request)).get("destinationId")
        if not isinstance(destination, str):
            raise GraphError(400, "ErrorInvalidRequest", "destinationId is required.")
        target = folder(state, mailbox(state, user_key), destination)
        new_id = state.store.move_message(message.id, target.id)
        moved = state.store.message(message.mailbox, new_id)
        assert moved is not None
        return JSONResponse(msgs.render(moved, api_version(request)), status_code=201)

    return router
