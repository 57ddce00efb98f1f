"""Graph event attachment routes (file attachments on series masters and single events).

- POST /users/{id}/events/{id}/attachments with a ``#microsoft.graph.fileAttachment``
  (``name`` and base64 ``contentBytes`` required, learn.microsoft.com/graph/api/resources/fileattachment):
  "This operation limits the size of the attachment you can add to under 3 MB"
  (learn.microsoft.com/graph/api/event-post-attachments); 201 with the attachment;
- POST /users/{id}/events/{id}/attachments/createUploadSession for 3 MB to 150 MB: "The
  item can be a message or event" (learn.microsoft.com/graph/api/attachment-createuploadsession);
  the byte ranges go to the Outlook host like a message's (graph_attachments,
  outlook_front), and the last one adds the file to the event (``attach_uploaded``);
- GET /users/{id}/events/{id}/attachments (event-list-attachments) and
  GET .../attachments/{id} (attachment-get), ``contentBytes`` included.

Adding an attachment sends nothing: only an update of the event would notify attendees
(event-post-attachments: "the organizer can subsequently update the event to send the
attachment").
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import secrets
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse

from mailtrek.sim.config import MB
from mailtrek.sim.errors import GraphError
from mailtrek.sim.graph_common import check_id, item_not_found, mailbox
from mailtrek.sim.mime import iso, now_iso
from mailtrek.sim.odata import page, read_json, select
from mailtrek.sim.outlook_front import upload_url
from mailtrek.sim.pim_data import PimItem
from mailtrek.sim.state import SimState, UploadSession
from mailtrek.sim.store import new_id

SESSION_LIFETIME = dt.timedelta(minutes=15)


def _new(name: str, content_type: str, content: bytes,
         inline: bool = False) -> dict[str, Any]:
    return {"id": new_id("ea"), "name": name, "contentType": content_type,
            "size": len(content), "isInline": inline, "lastModifiedDateTime": now_iso(),
            "content": content}


def attach_uploaded(state: SimState, session: UploadSession) -> str:
    """Add a finished upload session's bytes to its event; the attachment id."""
    item = state.pim.item(session.mailbox, session.message_id)
    if item is None or item.kind != "event":
        raise item_not_found()
    a = _new(session.name, session.content_type, bytes(session.received),
             session.is_inline)
    with state.pim.lock:
        item.attachments.append(a)
        item.version += 1
    return str(a["id"])


def _render(a: dict[str, Any]) -> dict[str, Any]:
    out = {"@odata.type": "#microsoft.graph.fileAttachment", **a}
    out["contentBytes"] = base64.b64encode(a["content"]).decode()
    out.pop("content")
    return out


def event_attachments_router(state: SimState) -> APIRouter:
    """Return the event attachment routes."""
    router = APIRouter()
    data = state.pim
    limit = state.config.limits.max_attachment_inline_bytes

    def event(user_key: str, key: str) -> PimItem:
        user = mailbox(state, user_key)
        check_id(key)
        found = data.item(user.id, key)
        if found is None or found.kind != "event":
            raise item_not_found()
        return found

    @router.post("/users/{user_key}/events/{event_key}/attachments")
    async def add(user_key: str, event_key: str, request: Request) -> JSONResponse:
        item = event(user_key, event_key)
        body = await read_json(request)
        if body.get("@odata.type") != "#microsoft.graph.fileAttachment":
            raise GraphError(400, "ErrorInvalidRequest",
                             "Only #microsoft.graph.fileAttachment is supported by the simulator.")
        if not body.get("name"):
            raise GraphError(400, "ErrorInvalidRequest", "The attachment name is required.")
        try:
            content = base64.b64decode(str(body.get("contentBytes", "")), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise GraphError(400, "ErrorInvalidRequest",
                             "contentBytes is not valid base64.") from exc
        if len(content) > limit:
            raise GraphError(413, "ErrorAttachmentSizeLimitExceeded",
                             "Attachments of 3 MB or more need an upload session.")
        a = _new(str(body["name"]), body.get("contentType") or "application/octet-stream",
                 content, bool(body.get("isInline", False)))
        with data.lock:
            item.attachments.append(a)
            item.version += 1
        return JSONResponse(_render(a), status_code=201)

    @router.post("/users/{user_key}/events/{event_key}/attachments/createUploadSession")
    async def create_session(user_key: str, event_key: str, request: Request) -> JSONResponse:
        item = event(user_key, event_key)
        spec = (await read_json(request)).get("AttachmentItem")
        if not isinstance(spec, dict) or spec.get("attachmentType", "file") != "file":
            raise GraphError(400, "ErrorInvalidRequest",
                             "AttachmentItem of attachmentType 'file' is required.")
        size = spec.get("size")
        if not isinstance(size, int) or size <= 0 or not spec.get("name"):
            raise GraphError(400, "ErrorInvalidRequest",
                             "AttachmentItem needs a name and a positive size.")
        if size < state.config.limits.min_upload_session_bytes:
            raise GraphError(400, "ErrorAttachmentSizeShouldNotBeLessThanMinimumSize",
                             "Attachment size must be greater than the minimum size.")
        if size > 150 * MB:
            raise GraphError(413, "ErrorAttachmentSizeLimitExceeded",
                             "Attachments larger than 150 MB are not supported.")
        session = UploadSession(
            id=secrets.token_urlsafe(32),
            app_id=str(request.scope.get("sim.claims", {}).get("appid", "")),
            mailbox=item.mailbox, message_id=item.id, name=str(spec["name"]),
            content_type=str(spec.get("contentType") or "application/octet-stream"),
            size=size, is_inline=bool(spec.get("isInline", False)), content_id=None,
            authtoken=secrets.token_urlsafe(48), item_kind="Events")
        state.uploads[session.id] = session
        return JSONResponse({
            "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#microsoft.graph."
                              "uploadSession",
            "uploadUrl": upload_url(state, session),
            "expirationDateTime": iso(dt.datetime.now(dt.UTC) + SESSION_LIFETIME),
            "nextExpectedRanges": ["0"]}, status_code=201)

    @router.get("/users/{user_key}/events/{event_key}/attachments")
    async def list_attachments(user_key: str, event_key: str,
                               request: Request) -> JSONResponse:
        item = event(user_key, event_key)
        return JSONResponse(page([_render(a) for a in item.attachments], request,
                                 state.base_url, 100))

    @router.get("/users/{user_key}/events/{event_key}/attachments/{attachment_key}")
    async def get_attachment(user_key: str, event_key: str, attachment_key: str,
                             request: Request) -> JSONResponse:
        item = event(user_key, event_key)
        check_id(attachment_key)
        for a in item.attachments:
            if a["id"] == attachment_key:
                return JSONResponse(select(_render(a), request))
        raise item_not_found()

    return router
