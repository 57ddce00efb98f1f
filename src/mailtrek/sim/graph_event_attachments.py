"""Graph event attachment routes (file attachments on series masters and single events).

- POST /users/{id}/events/{id}/attachments with a ``#microsoft.graph.fileAttachment``
  (``name`` and base64 ``contentBytes`` required, learn.microsoft.com/graph/api/resources/fileattachment):
  "This operation limits the size of the attachment you can add to under 3 MB"
  (learn.microsoft.com/graph/api/event-post-attachments); 201 with the attachment;
- GET /users/{id}/events/{id}/attachments (event-list-attachments) and
  GET .../attachments/{id} (attachment-get), ``contentBytes`` included.

Adding an attachment sends nothing: only an update of the event would notify attendees
(event-post-attachments: "the organizer can subsequently update the event to send the
attachment").
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse

from mailtrek.sim.errors import GraphError
from mailtrek.sim.graph_common import check_id, item_not_found, mailbox
from mailtrek.sim.mime import now_iso
from mailtrek.sim.odata import page, read_json, select
from mailtrek.sim.pim_data import PimItem
from mailtrek.sim.state import SimState
from mailtrek.sim.store import new_id


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
        a = {"id": new_id("ea"), "name": str(body["name"]),
             "contentType": body.get("contentType") or "application/octet-stream",
             "size": len(content), "isInline": bool(body.get("isInline", False)),
             "lastModifiedDateTime": now_iso(), "content": content}
        with data.lock:
            item.attachments.append(a)
            item.version += 1
        return JSONResponse(_render(a), status_code=201)

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
