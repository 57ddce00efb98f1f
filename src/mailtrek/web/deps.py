"""Request plumbing shared by the API and the pages: home, session, CSRF, client address."""

from __future__ import annotations

from fastapi import HTTPException, Request

from mailtrek.orchestrate.home import Home
from mailtrek.web.auth import LoginLimiter, Session, csrf_ok, get_session

COOKIE = "mailtrek_session"
LOGIN_COOKIE = "mailtrek_login"  # double-submit token of the login form (before any session)
CSRF_HEADER = "X-CSRF-Token"


class LoginRequired(Exception):
    """Raised by page dependencies; the app turns it into a redirect to /login."""


def home_of(request: Request) -> Home:
    return request.app.state.home  # type: ignore[no-any-return]


def limiter_of(request: Request) -> LoginLimiter:
    return request.app.state.limiter  # type: ignore[no-any-return]


def client_of(request: Request) -> str:
    return request.client.host if request.client else "?"


def is_tls(request: Request) -> bool:
    return request.url.scheme == "https"


def session_or_none(request: Request) -> Session | None:
    return get_session(home_of(request), request.cookies.get(COOKIE))


def api_session(request: Request) -> Session:
    """API dependency: the caller's session, or 401."""
    s = session_or_none(request)
    if s is None:
        raise HTTPException(401, "log in first: POST /api/login", headers={"WWW-Authenticate": "Cookie"})
    return s


def api_mutation(request: Request) -> Session:
    """API dependency for changes: a session and the X-CSRF-Token header, or 401/403."""
    s = api_session(request)
    if not csrf_ok(s, request.headers.get(CSRF_HEADER)):
        raise HTTPException(403, f"missing or wrong {CSRF_HEADER} header")
    return s


def page_session(request: Request) -> Session:
    """Page dependency: the viewer's session, or a redirect to the login page."""
    s = session_or_none(request)
    if s is None:
        raise LoginRequired()
    return s


def check_form_csrf(session: Session, token: str | None) -> None:
    if not csrf_ok(session, token):
        raise HTTPException(403, "the form's security token is missing or stale: reload the page and try again")
