"""The Outlook host that receives attachment uploads, apart from the Graph host.

Graph's ``createUploadSession`` answers with an ``uploadUrl`` on Outlook's own REST host,
not on graph.microsoft.com: ``https://outlook.office.com/api/v2.0/Users('{id}@{tenant}')/
Messages('{id}')/AttachmentSessions('{id}')?authtoken=...``. The URL "is pre-authenticated
and contains the appropriate authorization token", so the client must not send its Graph
token there, and the last PUT answers 201 with ``Location: https://outlook.office.com/api/v2.0/
Users('...')/Messages('...')/Attachments('...')`` (learn.microsoft.com/graph/outlook-large-attachments,
steps 1 and 2; learn.microsoft.com/graph/api/resources/uploadsession).

The simulator serves that host on a second port of the same server: ``OutlookFront`` maps
an upload URL onto the gated ``/graph/v1.0/upload/{session}`` route, so uploads count
against the mailbox's limits like any other write (throttling-limits: "150 megabytes (MB)
upload (PATCH, POST, PUT)").
"""

from __future__ import annotations

import hmac
import json
import re
from urllib.parse import parse_qs, quote, unquote

from starlette.types import ASGIApp, Receive, Scope, Send

from mailtrek.sim.errors import graph_error_body
from mailtrek.sim.state import SimState, UploadSession

_SESSION = re.compile(
    r"^/api/v2\.0/Users\('([^']+)'\)/(?:Messages|Events)\('([^']+)'\)/AttachmentSessions"
    r"\('([^']+)'\)$",
    re.IGNORECASE)
FRONT_SCOPE_KEY = "sim.outlook_front"


def upload_url(state: SimState, session: UploadSession) -> str:
    """Return the session's pre-authenticated upload URL on the Outlook host."""
    return (f"{state.front_url}/api/v2.0/Users('{_user(state, session.mailbox)}')/"
            f"{session.item_kind}('{session.message_id}')/AttachmentSessions('{session.id}')"
            f"?authtoken={quote(session.authtoken, safe='')}")


def attachment_location(state: SimState, session: UploadSession, attachment_id: str) -> str:
    """Return the ``Location`` of an uploaded attachment, in Outlook's form."""
    return (f"{state.front_url}/api/v2.0/Users('{_user(state, session.mailbox)}')/"
            f"{session.item_kind}('{session.message_id}')/Attachments('{attachment_id}')")


def _user(state: SimState, mailbox: str) -> str:
    # Outlook names the user as {object id}@{tenant id} in these URLs (docs' example).
    return f"{mailbox}@{state.config.tenant_id}"


class OutlookFront:
    """ASGI app of the Outlook host; hands upload requests to the gated simulator app."""

    def __init__(self, state: SimState) -> None:
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        match = _SESSION.match(unquote(scope.get("path", "")))
        session = self.state.uploads.get(match.group(3)) if match else None
        if session is None:
            await _reply(send, 404, "ErrorItemNotFound", "The upload session was not found or expired.")
            return
        token = parse_qs(scope.get("query_string", b"").decode()).get("authtoken", [""])[0]
        if not hmac.compare_digest(token.encode(), session.authtoken.encode()):
            await _reply(send, 401, "InvalidAuthenticationToken", "The authtoken is not valid.")
            return
        path = f"/graph/v1.0/upload/{session.id}"
        inner = dict(scope, path=path, raw_path=path.encode(), query_string=b"")
        inner[FRONT_SCOPE_KEY] = True
        app: ASGIApp = self.state.asgi_app
        await app(inner, receive, send)


class HostRouter:
    """Serve ``front`` on the Outlook port and ``graph`` on every other one."""

    def __init__(self, graph: ASGIApp, front: ASGIApp, state: SimState) -> None:
        self.graph, self.front, self.state = graph, front, state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        server = scope.get("server") or (None, None)
        if scope["type"] == "http" and server[1] == self.state.front_port:
            await self.front(scope, receive, send)
        else:
            await self.graph(scope, receive, send)


async def _reply(send: Send, status: int, code: str, message: str) -> None:
    body = json.dumps(graph_error_body(code, message)).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
