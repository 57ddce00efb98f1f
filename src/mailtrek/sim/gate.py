"""The ASGI layer in front of every Graph route: auth, faults, limits, latency.

Order per request: bearer token (401 InvalidAuthenticationToken, as learn.microsoft.com/graph/errors
lists for missing/invalid credentials) -> injected failure -> body size (413 for write
requests over 4 MB, learn.microsoft.com/graph/use-the-api) -> mailbox exists -> per-app,
per-mailbox throttle (429 + Retry-After, learn.microsoft.com/graph/throttling-limits) ->
service time (asyncio.sleep) -> route. The pre-authenticated upload URLs (served on the
Outlook host, outlook_front.py, and handed in here as /upload/{session}) skip the token
check but count against the mailbox like any other write. A 429 has the body and
Retry-After of learn.microsoft.com/graph/throttling ("Sample response"; errors.py).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mailtrek.sim.config import GRAPH_RESOURCE
from mailtrek.sim.errors import GraphError, graph_error_body, retry_after_value, throttled_body
from mailtrek.sim.graph_common import mailbox_not_enabled
from mailtrek.sim.state import SimState
from mailtrek.sim.tokens import TokenRejected

_WRITES = {"POST", "PUT", "PATCH"}
_PREFIXES = ("/graph/v1.0", "/graph/beta")


class ResponseDropped(Exception):
    """Raised to make the server cut the connection after the work was committed."""


class GraphGate:
    """Wrap the app; only paths under /graph/ are gated."""

    def __init__(self, app: ASGIApp, state: SimState) -> None:
        self.app = app
        self.state = state
        self._fractions = random.Random(state.config.latency.seed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith(_PREFIXES):
            await self.app(scope, receive, send)
            return
        state = self.state
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        client_request_id = headers.get("client-request-id")
        rel = path.split("/", 3)[3] if path.count("/") >= 3 else ""
        segments = rel.split("/")

        async def reply(error: GraphError) -> None:
            shape = (throttled_body(error.message, client_request_id) if error.status == 429
                     else graph_error_body(error.code, error.message, client_request_id))
            body = json.dumps(shape).encode()
            extra = [(k.lower().encode(), v.encode()) for k, v in error.headers.items()]
            with state.lock:
                state.statuses[error.status] += 1
            await send({"type": "http.response.start", "status": error.status,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(body)).encode()), *extra]})
            await send({"type": "http.response.body", "body": body})

        upload = segments[0] == "upload"
        app_id = "upload"
        if upload:
            session = state.uploads.get(segments[1] if len(segments) > 1 else "")
            mailbox_id = session.mailbox if session else None
            app_id = session.app_id if session else app_id
        else:
            token = headers.get("authorization", "")
            if not token.lower().startswith("bearer "):
                await reply(GraphError(401, "InvalidAuthenticationToken",
                                       "Access token is empty."))
                return
            try:
                claims = state.tokens.validate(token[7:].strip(), GRAPH_RESOURCE)
            except TokenRejected as exc:
                await reply(GraphError(401, "InvalidAuthenticationToken", exc.reason))
                return
            scope["sim.claims"] = claims
            app_id = str(claims.get("appid", ""))
            needed = _permission_for(segments, scope["method"])
            roles = set(claims.get("roles", [])) - state.denied
            if needed and not roles & needed:
                await reply(GraphError(403, "ErrorAccessDenied",
                                       "Access is denied. Check credentials and try again."))
                return
            mailbox_id = None
            if len(segments) >= 3 and segments[0] == "users":
                user = state.find_user(segments[1])
                if user is not None and not user.has_mailbox:
                    await reply(mailbox_not_enabled())
                    return
                mailbox_id = user.id if user else None

        number = state.next_graph_request()
        faults = state.config.faults
        if number in faults.fail_requests:
            code = "ServiceUnavailable" if faults.fail_status == 503 else "InternalServerError"
            await reply(GraphError(faults.fail_status, code, "Injected failure.",
                                   {"Retry-After": "1"} if faults.fail_status == 503 else None))
            return

        body = await _read_body(receive)
        method = scope["method"]
        limit = state.config.limits.max_request_bytes
        if method in _WRITES and len(body) > limit and not upload:
            await reply(GraphError(413, "RequestEntityTooLarge",
                                   f"The request exceeds the maximum allowed size of {limit} bytes."))
            return

        key = (app_id, mailbox_id) if mailbox_id else None
        if key:
            refusal = state.throttle.enter(key, len(body) if method in _WRITES else 0)
            if refusal:
                retry_after = retry_after_value(
                    refusal.retry_after_s, state.config.fractional_retry_after,
                    self._fractions.random())
                await reply(GraphError(429, refusal.code, refusal.message,
                                       {"Retry-After": retry_after}))
                return
        left = False

        def leave() -> None:
            nonlocal left
            if key and not left:
                left = True
                state.throttle.leave(key)

        try:
            await state.latency.wait(len(body))
            await self._forward(scope, body, send, leave, drop=number in faults.drop_after_commit)
        finally:
            leave()

    async def _forward(self, scope: Scope, body: bytes, send: Send, leave: Callable[[], None],
                       *, drop: bool) -> None:
        """Run the route, then answer once its service time is over.

        The response is held back until the per-byte time of its body has passed and the
        request has left the mailbox's concurrency count: a client that sends its next
        request the moment an answer arrives must find the slot free, as with the service.
        """
        sent_body = False

        async def replay() -> Message:
            nonlocal sent_body
            if sent_body:
                return {"type": "http.disconnect"}
            sent_body = True
            return {"type": "http.request", "body": body, "more_body": False}

        start: dict[str, Any] = {}
        held: list[Message] = []
        out_bytes = 0

        async def capture(message: Message) -> None:
            nonlocal out_bytes
            if message["type"] == "http.response.start":
                start.update(message)
                with self.state.lock:
                    self.state.statuses[message["status"]] += 1
            elif message["type"] == "http.response.body":
                out_bytes += len(message.get("body", b""))
            held.append(message)

        await self.app(scope, replay, capture)
        if out_bytes:
            await self.state.latency.wait_bytes(out_bytes)
        leave()
        if drop:
            # Status line and headers go out, the body never does: the client sees a broken
            # response after the server has committed the work (an in-doubt write).
            await send(start)
            raise ResponseDropped("injected: response dropped after commit")
        for message in held:
            await send(message)


def _permission_for(segments: list[str], method: str) -> set[str]:
    """Return the application permissions of which one must be granted (empty: none).

    Least-privileged application permissions per the API pages: user-get (User.Read.All),
    domain-list-serviceconfigurationrecords (Domain.Read.All), mail reads and writes
    (Mail.ReadWrite; reads also Mail.Read / Mail.ReadBasic.All); calendars and events
    (Calendars.ReadWrite, reads also Calendars.Read: user-list-calendars, user-post-events),
    contact folders and contacts (Contacts.ReadWrite, reads also Contacts.Read), To Do
    lists and tasks (Tasks.ReadWrite.All, reads also Tasks.Read.All: todo-list-lists).
    """
    if segments[0] == "users":
        if len(segments) <= 2:
            return {"User.Read.All", "User.ReadWrite.All", "Directory.Read.All"}
        if segments[2] == "todo":
            return {"Tasks.ReadWrite.All", "Tasks.Read.All"} if method == "GET" else {
                "Tasks.ReadWrite.All"}
        for area, perm in (({"calendars", "events", "calendar"}, "Calendars"),
                           ({"contactFolders", "contacts"}, "Contacts")):
            if segments[2] in area:
                return {f"{perm}.ReadWrite", f"{perm}.Read"} if method == "GET" else {
                    f"{perm}.ReadWrite"}
        if method == "GET":
            return {"Mail.ReadWrite", "Mail.Read", "Mail.ReadBasic.All"}
        return {"Mail.ReadWrite"}
    if segments[0] == "domains":
        return {"Domain.Read.All", "Domain.ReadWrite.All", "Directory.Read.All"}
    return set()


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    return b"".join(chunks)
