"""Graph attachment routes: small attachments inline, large ones through upload sessions.

- POST .../messages/{id}/attachments with a fileAttachment and base64 ``contentBytes``
  "if the file size is under 3 MB" (learn.microsoft.com/graph/api/message-post-attachments);
- POST .../attachments/createUploadSession with an ``AttachmentItem`` for 3 MB to 150 MB,
  then PUT byte ranges "up to 4 MB" each with Content-Range to the pre-authenticated
  ``uploadUrl``; ``nextExpectedRanges`` holds one "{start}" value for Outlook attachments;
  the last PUT answers 201 Created with the attachment URL in ``Location``
  (learn.microsoft.com/graph/outlook-large-attachments,
  learn.microsoft.com/graph/api/attachment-createuploadsession,
  learn.microsoft.com/graph/api/resources/uploadsession). A message may reach the mailbox
  limit, 35 MB by default (same page). A session for less than 3 MB is refused with
  ErrorAttachmentSizeShouldNotBeLessThanMinimumSize (same page, "Errors"). The ``uploadUrl``
  and ``Location`` are Outlook REST URLs on another host (outlook_front.py), which hands the
  PUTs to ``/upload/{session}`` here; Graph's own host has no such path.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import re
import secrets
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response

from mailtrek.sim.config import MB
from mailtrek.sim.errors import GraphError
from mailtrek.sim.graph_common import check_id, item_not_found
from mailtrek.sim.graph_common import message as message_of
from mailtrek.sim.messages import VERSION_KEY
from mailtrek.sim.mime import iso, now_iso
from mailtrek.sim.odata import page, read_json
from mailtrek.sim.outlook_front import FRONT_SCOPE_KEY, attachment_location, upload_url
from mailtrek.sim.state import SimState, UploadSession
from mailtrek.sim.store import StoredAttachment, StoredMessage, new_id

_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+)$")
_SESSION_LIFETIME = dt.timedelta(minutes=15)


def _render(attachment: StoredAttachment, with_content: bool) -> dict[str, Any]:
    body = {"@odata.type": "#microsoft.graph.fileAttachment", "id": attachment.id}
    body.update(attachment.props)
    if with_content:
        body["contentBytes"] = base64.b64encode(attachment.content).decode()
    return body


def attachments_router(state: SimState) -> APIRouter:
    """Return the attachment and upload-session routes."""
    router = APIRouter()
    limits = state.config.limits

    def _message(user_key: str, message_id: str) -> StoredMessage:
        return message_of(state, user_key, message_id)

    def _check_total(message: StoredMessage, extra: int) -> None:
        total = int(message.props.get("size", 0)) + extra
        if total > limits.max_message_bytes:
            raise GraphError(413, "ErrorMessageSizeExceeded",
                             f"The message exceeds the maximum supported size of "
                             f"{limits.max_message_bytes // MB} MB.")

    def _attach(message: StoredMessage, props: dict[str, Any], content: bytes) -> StoredAttachment:
        attachment = StoredAttachment(new_id("a"), message.id, props, content)
        state.store.add_attachment(attachment)
        updated = dict(message.props)
        updated["hasAttachments"] = True if not props.get("isInline") else updated.get("hasAttachments", False)
        updated["size"] = int(updated.get("size", 0)) + len(content)
        updated["lastModifiedDateTime"] = now_iso()
        updated[VERSION_KEY] = int(updated.get(VERSION_KEY, 0)) + 1  # a new etag
        if message.mime is not None:
            # The stored MIME no longer describes the item; $value synthesises from now on.
            state.store.drop_mime(message.id)
        state.store.update_props(message.id, updated)
        return attachment

    @router.post("/users/{user_key}/messages/{message_id}/attachments")
    async def add(user_key: str, message_id: str, request: Request) -> JSONResponse:
        message = _message(user_key, message_id)
        body = await read_json(request)
        if body.get("@odata.type") != "#microsoft.graph.fileAttachment":
            raise GraphError(400, "ErrorInvalidRequest",
                             "Only #microsoft.graph.fileAttachment is supported by the simulator.")
        try:
            content = base64.b64decode(str(body.get("contentBytes", "")), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise GraphError(400, "ErrorInvalidRequest", "contentBytes is not valid base64.") from exc
        if not body.get("name"):
            raise GraphError(400, "ErrorInvalidRequest", "The attachment name is required.")
        if len(content) > limits.max_attachment_inline_bytes:
            raise GraphError(413, "ErrorAttachmentSizeLimitExceeded",
                             "Attachments of 3 MB or more need an upload session.")
        _check_total(message, len(content))
        props = {"name": body["name"],
                 "contentType": body.get("contentType") or "application/octet-stream",
                 "size": len(content), "isInline": bool(body.get("isInline", False)),
                 "contentId": body.get("contentId"), "lastModifiedDateTime": now_iso()}
        attachment = _attach(message, props, content)
        return JSONResponse(_render(attachment, True), status_code=201)

    @router.get("/users/{user_key}/messages/{message_id}/attachments")
    async def list_attachments(user_key: str, message_id: str, request: Request) -> JSONResponse:
        message = _message(user_key, message_id)
        items = [_render(a, True) for a in state.store.attachments(message.id)]
        return JSONResponse(page(items, request, state.base_url, 100))

    @router.get("/users/{user_key}/messages/{message_id}/attachments/{attachment_id}")
    async def get_attachment(user_key: str, message_id: str, attachment_id: str) -> JSONResponse:
        message = _message(user_key, message_id)
        check_id(attachment_id)
        for attachment in state.store.attachments(message.id):
            if attachment.id == attachment_id:
                return JSONResponse(_render(attachment, True))
        raise item_not_found()

    @router.post("/users/{user_key}/messages/{message_id}/attachments/createUploadSession")
    async def create_session(user_key: str, message_id: str, request: Request) -> JSONResponse:
        message = _message(user_key, message_id)
        item = (await read_json(request)).get("AttachmentItem")
        if not isinstance(item, dict) or item.get("attachmentType", "file") != "file":
            raise GraphError(400, "ErrorInvalidRequest", "AttachmentItem of attachmentType 'file' is required.")
        size = item.get("size")
        if not isinstance(size, int) or size <= 0 or not item.get("name"):
            raise GraphError(400, "ErrorInvalidRequest", "AttachmentItem needs a name and a positive size.")
        if size < limits.min_upload_session_bytes:
            # outlook-large-attachments, "Errors": "uploadSession was used for a file
            # smaller than 3 MB in size" (microsoftgraph/microsoft-graph-docs PR #7044).
            raise GraphError(400, "ErrorAttachmentSizeShouldNotBeLessThanMinimumSize",
                             "Attachment size must be greater than the minimum size.")
        if size > 150 * MB:
            raise GraphError(413, "ErrorAttachmentSizeLimitExceeded",
                             "Attachments larger than 150 MB are not supported.")
        _check_total(message, size)
        session = UploadSession(
            id=secrets.token_urlsafe(32), app_id=str(request.scope.get("sim.claims", {}).get("appid", "")),
            mailbox=message.mailbox, message_id=message.id, name=str(item["name"]),
            content_type=str(item.get("contentType") or "application/octet-stream"), size=size,
            is_inline=bool(item.get("isInline", False)), content_id=item.get("contentId"),
            authtoken=secrets.token_urlsafe(48),
        )
        state.uploads[session.id] = session
        return JSONResponse({
            "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#microsoft.graph.uploadSession",
            "uploadUrl": upload_url(state, session),
            "expirationDateTime": iso(dt.datetime.now(dt.UTC) + _SESSION_LIFETIME),
            "nextExpectedRanges": ["0"],
        }, status_code=201)

    def _front_only(request: Request) -> None:
        # Uploads go to the Outlook host (outlook_front.py); Graph itself has no such path.
        if not request.scope.get(FRONT_SCOPE_KEY):
            raise GraphError(400, "BadRequest", "Resource not found for the segment 'upload'.")

    @router.put("/upload/{session_id}")
    async def upload(session_id: str, request: Request) -> Response:
        _front_only(request)
        session = state.uploads.get(session_id)
        if session is None:
            raise GraphError(404, "ErrorItemNotFound", "The upload session was not found or expired.")
        if request.headers.get("authorization"):
            # The uploadUrl "is pre-authenticated and contains the appropriate authorization
            # token" (outlook-large-attachments); Graph's upload-session docs warn that an
            # Authorization header on these PUTs may get 401. Refusing it catches client bugs.
            raise GraphError(401, "InvalidAuthenticationToken",
                             "Do not send an Authorization header to the uploadUrl.")
        match = _RANGE.match(request.headers.get("content-range", ""))
        if not match:
            raise GraphError(400, "ErrorInvalidRequest", "A Content-Range header 'bytes a-b/total' is required.")
        start, end, total = (int(g) for g in match.groups())
        chunk = await request.body()
        if total != session.size or end < start or end >= total or len(chunk) != end - start + 1:
            raise GraphError(400, "ErrorInvalidRequest", "Content-Range does not match the body or the session size.")
        if len(chunk) > limits.max_upload_chunk_bytes:
            raise GraphError(413, "RequestEntityTooLarge", "Each upload fragment may carry at most 4 MB.")
        if start != len(session.received):
            raise GraphError(416, "ErrorInvalidRequest",
                             f"Expected the fragment at byte {len(session.received)}.")
        session.received.extend(chunk)
        if len(session.received) < session.size:
            # Shape of the docs' step 2 response: Outlook's PascalCase ExpirationDateTime,
            # and nextExpectedRanges with only the start of the next range ("2097152").
            return JSONResponse({
                "@odata.context": "https://outlook.office.com/api/v2.0/$metadata#Users('"
                                  f"{session.mailbox}%40{state.config.tenant_id}')/Messages('"
                                  f"{session.message_id}')/AttachmentSessions/$entity",
                "ExpirationDateTime": iso(dt.datetime.now(dt.UTC) + _SESSION_LIFETIME),
                "nextExpectedRanges": [str(len(session.received))],
            })
        del state.uploads[session_id]
        if session.item_kind == "Events":  # an event's file (graph_event_attachments)
            from mailtrek.sim.graph_event_attachments import attach_uploaded

            attachment_id = attach_uploaded(state, session)
            return Response(status_code=201, headers={
                "Location": attachment_location(state, session, attachment_id)})
        message = state.store.message(session.mailbox, session.message_id)
        if message is None:
            raise item_not_found()
        props = {"name": session.name, "contentType": session.content_type, "size": session.size,
                 "isInline": session.is_inline, "contentId": session.content_id,
                 "lastModifiedDateTime": now_iso()}
        attachment = _attach(message, props, bytes(session.received))
        location = attachment_location(state, session, attachment.id)
        return Response(status_code=201, headers={"Location": location})

    @router.delete("/upload/{session_id}")
    async def cancel(session_id: str, request: Request) -> Response:
        _front_only(request)
        if state.uploads.pop(session_id, None) is None:
            raise GraphError(404, "ErrorItemNotFound", "The upload session was not found or expired.")
        return Response(status_code=204)

    return router
