"""The FastAPI application: JSON API, server-rendered pages, static files, optional runner.

``create_app(home)`` builds it; ``mailtrek serve`` runs it with uvicorn. With
``run_scheduler`` the orchestrate runner works in the same event loop, exactly as
``mailtrek run`` would.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.middleware.trustedhost import TrustedHostMiddleware

import mailtrek.state.web  # noqa: F401  (adds the web tables before the home is opened)
from mailtrek.errors import MailtrekError
from mailtrek.orchestrate.csvfile import CsvInvalidError
from mailtrek.orchestrate.home import Home
from mailtrek.orchestrate.states import TransitionError
from mailtrek.secrets import redact
from mailtrek.web import admin_api, admin_pages, api, members, pages
from mailtrek.web.auth import LoginLimiter
from mailtrek.web.deps import LoginRequired, api_session
from mailtrek.web.live import SpeedMeter

log = logging.getLogger("mailtrek.web")
HERE = Path(__file__).parent

SECURITY_HEADERS = {
    # No inline scripts or styles anywhere: the pages load /static/app.js and app.css.
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


def error_status(e: MailtrekError) -> int:
    """The HTTP status of an error: its type says it (``http_status``), never its text."""
    if isinstance(e, TransitionError):
        return 409  # the batch or user is in a state that does not allow the action
    if isinstance(e, CsvInvalidError):
        return 422
    return e.http_status


def create_app(home: Home, *, run_scheduler: bool = False, poll_seconds: float = 2.0,
               login_attempts: int = 5, login_window: float = 300.0,
               allowed_hosts: list[str] | None = None) -> FastAPI:
    """Build the app over ``home`` (its database must include the web tables).

    ``allowed_hosts``: the Host header names it answers to (others get 400), so a page
    on another site cannot reach it through DNS rebinding; None accepts any (tests).
    """

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        task = None
        if run_scheduler:
            from mailtrek.orchestrate.runner import Runner

            app.state.runner = Runner(home, poll_seconds=poll_seconds)
            task = asyncio.create_task(app.state.runner.run(), name="mailtrek runner")
            log.info("scheduler running in this process")
        try:
            yield
        finally:
            if task is not None:
                app.state.runner.stop()
                await task

    # The API description and its browser are behind the login like everything else.
    app = FastAPI(title="mailtrek", version="0.1.0", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None,
                  description="Run IMAP to Microsoft 365 migrations: endpoints, tenants, batches, reports. "
                              "Log in with POST /api/login; send the returned token as X-CSRF-Token on changes.")
    app.state.home = home
    app.state.limiter = LoginLimiter(login_attempts, login_window)
    app.state.meter = SpeedMeter()
    app.state.runner = None
    if allowed_hosts is not None:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts)
    app.include_router(members.api)  # fixed per-user paths before /batches/{name}/{action}
    app.include_router(api.router)
    app.include_router(members.pages)
    app.include_router(pages.router)
    app.include_router(admin_pages.router)  # /docs (offline) and /audit
    app.include_router(admin_api.router)  # PATCH endpoints and tenants, GET /api/audit
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    @app.get("/openapi.json", include_in_schema=False, dependencies=[Depends(api_session)])
    def openapi() -> dict[str, Any]:
        return app.openapi()

    @app.middleware("http")
    async def headers(request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        await admin_pages.audit_web_action(request, response)
        for k, v in SECURITY_HEADERS.items():
            response.headers.setdefault(k, v)
        if not request.url.path.startswith("/static"):
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    @app.exception_handler(LoginRequired)
    async def to_login(request: Request, _: LoginRequired) -> Response:
        return RedirectResponse("/login", status_code=303)

    @app.exception_handler(MailtrekError)
    async def mailtrek_error(request: Request, e: MailtrekError) -> Response:
        status = error_status(e)
        if not request.url.path.startswith("/api/"):
            return pages.error_page(request, status, e)
        body: dict[str, Any] = {"detail": redact(e.message), "hint": redact(e.hint) if e.hint else None}
        if isinstance(e, CsvInvalidError):
            body["problems"] = [{"line": p.line, "reason": redact(p.reason)} for p in e.problems]
        return JSONResponse(body, status_code=status)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, e: HTTPException) -> Response:
        if request.url.path.startswith("/api/") or request.url.path.startswith("/static"):
            return JSONResponse({"detail": e.detail}, status_code=e.status_code, headers=e.headers)
        return pages.error_page(request, e.status_code, e.detail,
                               headers=dict(e.headers) if e.headers else None)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, e: RequestValidationError) -> Response:
        # Never echo the input back: it may hold a password.
        errors = [{"loc": list(x.get("loc", ())), "msg": x.get("msg")} for x in e.errors()]
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": errors}, status_code=422)
        return pages.error_page(request, 422, "; ".join(f"{'.'.join(map(str, x['loc'][1:]))}: {x['msg']}"
                                                        for x in errors))

    return app
