"""Assemble the simulator's ASGI application from the resource routers."""

from __future__ import annotations

from fastapi import FastAPI, Request
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse

from mailtrek.sim.errors import GraphError, graph_error_response
from mailtrek.sim.gate import GraphGate
from mailtrek.sim.graph_folders import folders_router
from mailtrek.sim.graph_messages import messages_router
from mailtrek.sim.graph_users import users_router
from mailtrek.sim.identity import identity_router
from mailtrek.sim.state import SimState

GRAPH_PREFIXES = {"v1.0": "/graph/v1.0", "beta": "/graph/beta"}


def build_app(state: SimState) -> GraphGate:
    """Return the gated ASGI app serving identity and Graph for ``state``."""
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(GraphError)
    async def on_graph_error(request: Request, exc: GraphError) -> JSONResponse:
        return graph_error_response(exc, request.headers.get("client-request-id"))

    @app.exception_handler(HTTPException)
    async def on_http_error(request: Request, exc: HTTPException) -> JSONResponse:
        # Graph answers unknown paths with 400 BadRequest "Resource not found for the segment".
        if exc.status_code == 404:
            segment = request.url.path.rstrip("/").rsplit("/", 1)[-1]
            error = GraphError(400, "BadRequest", f"Resource not found for the segment '{segment}'.")
        else:
            error = GraphError(exc.status_code, "BadRequest", str(exc.detail))
        return graph_error_response(error, request.headers.get("client-request-id"))

    app.include_router(identity_router(state))

    @app.get("/_sim/stats")
    async def stats() -> dict:
        """Counters for benchmarks and tests (a test-double extra, like moto's /moto-api)."""
        with state.lock:
            users = list(state.users.values())
            statuses = {str(k): v for k, v in state.statuses.items()}
            throttled = dict(state.throttle.throttled)
        apps = {app: {"busy_seconds": busy, "peak_in_flight": state.throttle.peak_in_flight[app]}
                for app, busy in list(state.throttle.busy_seconds.items())}
        return {
            # per app ID: seconds x requests in flight, and the most at once (bench: share of
            # the app-wide ceiling)
            "apps": apps,
            "graph_requests": state.graph_requests,
            "token_requests": state.token_requests,
            "statuses": statuses,
            "users": {u.upn: {"messages": len(state.store.messages(u.id)) if u.has_mailbox else 0,
                              "events": len(state.pim.events(u.id)),
                              "contacts": len(state.pim.contacts(u.id)),
                              "tasks": len(state.pim.tasks(u.id)),
                              "throttled": throttled.get(u.id, 0)} for u in users},
            "invitations_sent": len(state.pim.outbox),
        }
    from mailtrek.sim.graph_attachments import attachments_router
    from mailtrek.sim.graph_batch import batch_router
    from mailtrek.sim.graph_calendar import calendar_router
    from mailtrek.sim.graph_contacts import contacts_router
    from mailtrek.sim.graph_event_attachments import event_attachments_router
    from mailtrek.sim.graph_todo import todo_router

    for version, prefix in GRAPH_PREFIXES.items():
        app.include_router(users_router(state), prefix=prefix)
        app.include_router(folders_router(state), prefix=prefix)
        app.include_router(messages_router(state, beta=version == "beta"), prefix=prefix)
        app.include_router(attachments_router(state), prefix=prefix)
        app.include_router(batch_router(state), prefix=prefix)
        app.include_router(calendar_router(state), prefix=prefix)
        app.include_router(contacts_router(state), prefix=prefix)
        app.include_router(todo_router(state), prefix=prefix)
        app.include_router(event_attachments_router(state), prefix=prefix)
    gated = GraphGate(app, state)
    state.asgi_app = gated
    return gated
