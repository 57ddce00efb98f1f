"""Admin password (argon2id), server-side sessions, CSRF tokens and login rate limiting.

One admin per home. Sessions live in the database (token hashed), so a logout or a new
password ends them at once and several ``serve`` processes share them.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, insert, select

from mailtrek.errors import UsageError
from mailtrek.orchestrate.home import Home, as_utc, utcnow
from mailtrek.state.web import web_admin, web_sessions

MIN_PASSWORD = 10
SESSION_HOURS = 12
_hasher = PasswordHasher()  # argon2id with the library's (RFC 9106 low-memory) parameters


def set_admin_password(home: Home, password: str) -> None:
    """Store the admin password's hash and end every open session; raise UsageError when weak."""
    if len(password) < MIN_PASSWORD:
        raise UsageError(f"the admin password needs at least {MIN_PASSWORD} characters")
    digest = _hasher.hash(password)
    with home.engine.begin() as c:
        c.execute(delete(web_admin))
        c.execute(insert(web_admin).values(id=1, password_hash=digest, updated_at=utcnow()))
        c.execute(delete(web_sessions))


def admin_password_set(home: Home) -> bool:
    with home.engine.connect() as c:
        return c.execute(select(web_admin.c.id)).first() is not None


def check_admin_password(home: Home, password: str) -> bool:
    """Return whether ``password`` is the admin's (False when none is set)."""
    with home.engine.connect() as c:
        digest = c.execute(select(web_admin.c.password_hash)).scalar()
    if digest is None:
        _hasher.hash(password)  # same cost either way: no timing hint that none is set
        return False
    try:
        return _hasher.verify(digest, password)
    except (VerificationError, InvalidHashError):
        return False


@dataclass(frozen=True, slots=True)
class Session:
    token_hash: str
    csrf: str


def _hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_session(home: Home) -> tuple[str, Session]:
    """Open a session; return the cookie value and the session (with its CSRF token)."""
    token = secrets.token_urlsafe(32)
    s = Session(_hash_token(token), secrets.token_urlsafe(32))
    now = utcnow()
    with home.engine.begin() as c:
        c.execute(delete(web_sessions).where(web_sessions.c.expires_at < now))
        c.execute(insert(web_sessions).values(token_hash=s.token_hash, csrf=s.csrf, created_at=now,
                                              expires_at=now + timedelta(hours=SESSION_HOURS)))
    return token, s


def get_session(home: Home, token: str | None) -> Session | None:
    """Return the live session of cookie value ``token``, or None."""
    if not token:
        return None
    with home.engine.connect() as c:
        r = c.execute(select(web_sessions).where(web_sessions.c.token_hash == _hash_token(token))).mappings().first()
    if r is None or as_utc(r["expires_at"]) < utcnow():  # type: ignore[operator]
        return None
    return Session(r["token_hash"], r["csrf"])


def end_session(home: Home, token: str | None) -> None:
    if token:
        with home.engine.begin() as c:
            c.execute(delete(web_sessions).where(web_sessions.c.token_hash == _hash_token(token)))


def csrf_ok(session: Session, given: str | None) -> bool:
    """Constant-time comparison of a submitted CSRF token with the session's."""
    return bool(given) and hmac.compare_digest(session.csrf.encode(), (given or "").encode())


ACCOUNT = "\0account"  # the key of the admin account's own count (no address looks like it)


class LoginLimiter:
    """Allow ``attempts`` failed logins per ``window`` seconds per client address, and
    ``account_attempts`` (default four times as many) for the admin account from anywhere.

    The account's own limit holds when addresses are many (a botnet, or a proxy header an
    attacker can forge); the per-address one keeps a single guesser from using it all up.
    In memory: a restart forgives, which is fine for a tool that listens on loopback.
    """

    def __init__(self, attempts: int = 5, window: float = 300.0,
                 account_attempts: int | None = None) -> None:
        self.attempts = attempts
        self.account_attempts = account_attempts or 4 * attempts
        self.window = window
        self._fails: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def retry_after(self, client: str) -> int:
        """Return seconds to wait before ``client`` may try again (0: may try now)."""
        now = time.monotonic()
        with self._lock:
            return max(self._wait(client, self.attempts, now),
                       self._wait(ACCOUNT, self.account_attempts, now))

    def _wait(self, key: str, limit: int, now: float) -> int:
        q = self._fails.get(key)
        while q and now - q[0] > self.window:
            q.popleft()
        if not q or len(q) < limit:
            return 0
        return max(1, int(self.window - (now - q[0])) + 1)

    def failed(self, client: str) -> None:
        now = time.monotonic()
        with self._lock:
            for key in (client, ACCOUNT):
                self._fails.setdefault(key, deque()).append(now)

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._fails.pop(client, None)
