"""Test an IMAP endpoint step by step: DNS, TCP, TLS + certificate, capabilities, login.

Each step says what it found; the first failing step says what to do, and the rest are
skipped. The probe logs in with the product's own client (``ImapConnection``), with the
credentials a migration would use, so ``endpoint test`` passes exactly when the
migration's login would: the connection reports its DNS, TCP and TLS steps as they
finish. Synchronous (callers run it in a thread when they are async).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from mailtrek.errors import AuthenticationError, MailtrekError
from mailtrek.orchestrate.endpoints import Endpoint
from mailtrek.secrets import redact, remember
from mailtrek.stores.imap.connection import LOGIN_HINT, ConnectParams, Credentials, ImapConnection
from mailtrek.stores.imap.dial import DialStep
from mailtrek.stores.imap.opener import settings_of
from mailtrek.stores.imap.verbs import list_mailboxes
from mailtrek.stores.spec import ImapSpec

TIMEOUT = 15.0
NOTABLE = ("CONDSTORE", "QRESYNC", "UIDPLUS", "SPECIAL-USE", "IDLE", "MOVE")
PASSWORD_ADVICE = "check UserName and Password; many providers need an app password and IMAP switched on"


@dataclass(slots=True)
class Step:
    name: str
    ok: bool
    detail: str
    advice: str | None = None
    seconds: float = 0.0


@dataclass(slots=True)
class ProbeResult:
    steps: list[Step] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.steps) and all(s.ok for s in self.steps)

    @property
    def failed(self) -> Step | None:
        return next((s for s in self.steps if not s.ok), None)


def probe_endpoint(ep: Endpoint, user: str | None = None, password: str | None = None,
                   *, token: Callable[[], str] | None = None, timeout: float = TIMEOUT,
                   login: ImapSpec | None = None) -> ProbeResult:
    """Run every check against ``ep`` and return the steps (never raises for server trouble).

    With ``token`` (a service-account endpoint) the login step fetches an access token for
    ``user`` first (a "token" step; a MailtrekError from it is that step's failure) and
    logs in over XOAUTH2 instead of with ``password``. ``login``, a migration's spec of
    the mailbox (e.g. ``specs.admin_spec``: an admin logging in for ``user``), replaces
    ``user``/``password``: the probe then logs in with exactly its credentials.
    """
    remember(password)
    credentials = settings_of(login).credentials if login is not None else None
    return asyncio.run(_probe(ep, user, password, token, timeout, credentials))


async def _probe(ep: Endpoint, user: str | None, password: str | None,
                 token: Callable[[], str] | None, timeout: float,
                 credentials: Credentials | None) -> ProbeResult:
    result = ProbeResult()

    def step(name: str, ok: bool, detail: str, advice: str | None = None,
             seconds: float = 0.0) -> bool:
        result.steps.append(Step(name, ok, redact(detail), advice, seconds))
        return ok

    conn = ImapConnection(ConnectParams(ep.host, ep.port, ep.security, ca_file=ep.ca_file,
                                        timeout=timeout, connect_timeout=timeout),
                          label="probe")

    def connect_step(s: DialStep) -> None:
        step(s.name, s.ok, _detail(ep, s), _advice(ep, s), s.seconds)

    conn.on_step = connect_step
    t0 = time.monotonic()
    try:
        try:
            await conn.open()
        except MailtrekError as e:
            if result.failed is None:  # the connection was made; the server did not talk IMAP
                step("capabilities", False, e.message,
                     "check that host and port belong to the IMAP service", time.monotonic() - t0)
            return result
        if ep.security == "none":
            step("tls", True, "no TLS (security none): passwords cross the network in clear")
        t0 = time.monotonic()
        caps = sorted(conn.capabilities)
        if "IMAP4REV1" not in caps:
            step("capabilities", False, f"not an IMAP4rev1 server: {' '.join(caps)}",
                 "check that host and port belong to the IMAP service", time.monotonic() - t0)
            return result
        notable = [c for c in caps if c in NOTABLE or c.startswith("AUTH=")]
        step("capabilities", True, " ".join(notable) or "IMAP4rev1", seconds=time.monotonic() - t0)
        if user is None and credentials is None:
            return result
        creds = credentials
        if creds is None and token is not None:
            assert user is not None
            creds = await _token_credentials(conn, user, token, step)
            if creds is None:
                return result
        t0 = time.monotonic()
        if creds is None:
            assert user is not None
            if password is None:
                step("login", False, "no password given",
                     "set MAILTREK_SOURCE_PASSWORD or pass --password-file", time.monotonic() - t0)
                return result
            creds = Credentials(user, password)
        await _login(conn, creds, step, t0)
        return result
    except MailtrekError as e:
        step("capabilities", False, f"connection dropped: {e.message}", "try again; check server logs",
             time.monotonic() - t0)
        return result
    finally:
        await conn.close()


async def _token_credentials(conn: ImapConnection, user: str, token: Callable[[], str],
                             step: Callable[..., bool]) -> Credentials | None:
    """Fetch a token for ``user`` (a "token" step); return XOAUTH2 credentials, or None."""
    t0 = time.monotonic()
    try:
        access = remember(await asyncio.to_thread(token)) or ""
    except MailtrekError as e:
        step("token", False, e.message, e.hint, time.monotonic() - t0)
        return None
    step("token", True, f"access token issued for {user}", seconds=time.monotonic() - t0)
    if not conn.has("AUTH=XOAUTH2"):
        step("login", False, "the server does not offer AUTH=XOAUTH2",
             "service-account logins need an XOAUTH2 server such as imap.gmail.com")
        return None
    return Credentials(user, mechanism="xoauth2", token=_constant(access))


def _constant(value: str) -> Callable[[], Awaitable[str]]:
    async def get() -> str:
        return value
    return get


async def _login(conn: ImapConnection, creds: Credentials, step: Callable[..., bool],
                 t0: float) -> None:
    """Log in as the migration does, then list the folders (the "login" step)."""
    who = creds.user if not creds.authzid else f"{creds.authzid} (as {creds.user})"
    oauth = creds.mechanism in ("xoauth2", "oauthbearer")
    try:
        await conn.login(creds)
    except AuthenticationError as e:
        if oauth:
            advice = ("check that the user exists, IMAP is on for them, and the delegation grants "
                      "https://mail.google.com/")
        elif conn.has("LOGINDISABLED"):
            advice = "the server refuses passwords on this connection: use --security ssl or starttls"
        else:
            advice = PASSWORD_ADVICE if e.hint in (None, LOGIN_HINT) else e.hint
        step("login", False, f"{'XOAUTH2 ' if oauth else ''}login as {who} refused: {e.message}",
             advice, time.monotonic() - t0)
        return
    except MailtrekError as e:
        step("login", False, f"login as {who} failed: {e.message}", e.hint, time.monotonic() - t0)
        return
    n = len(await list_mailboxes(conn))
    step("login", True, f"logged in as {who}{' over XOAUTH2' if oauth else ''}; {n} folder(s) listed",
         seconds=time.monotonic() - t0)


def _detail(ep: Endpoint, s: DialStep) -> str:
    """What a connect step found, in the words `endpoint test` prints."""
    where = f"{ep.host}:{ep.port}"
    if s.name == "dns":
        return (f"{ep.host} resolves to {', '.join(sorted(s.addresses))}" if s.ok
                else f"{ep.host} does not resolve: {_cause(s.error)}")
    if s.name == "tcp":
        return f"connected to {where}" if s.ok else f"cannot connect to {where}: " + "; ".join(s.failures)
    if s.ok:
        subject = dict(x[0] for x in s.certificate.get("subject", ()))
        found = (f"{s.tls_version}, certificate for {subject.get('commonName', '?')} valid until "
                 f"{s.certificate.get('notAfter', '?')}")
        return "STARTTLS " + found if s.starttls else found
    if s.problem == "certificate" and s.error is not None:
        return f"certificate not trusted: {getattr(s.error.__cause__, 'verify_message', s.error)}"
    if s.problem == "no-starttls":
        return f"STARTTLS failed: {_message(s.error)}"
    return f"TLS failed: {_message(s.error)}"


def _advice(ep: Endpoint, s: DialStep) -> str | None:
    if s.ok:
        return None
    if s.name == "dns":
        return "check the host name (typo?) and this machine's DNS settings"
    if s.name == "tcp":
        return ("check the port (993 for ssl, 143 for starttls/none) and firewalls between here "
                "and the server")
    if s.problem == "certificate":
        return ("pass --ca-file with the server's CA, or fix the server's certificate "
                "(never turn verification off)")
    if ep.security == "ssl":
        return "the port may not speak TLS directly: try --security starttls (port 143)"
    return "the server may not offer STARTTLS: try --security ssl (port 993)"


def _cause(e: Exception | None) -> str:
    cause = e.__cause__ if e is not None else None
    return str(getattr(cause, "strerror", None) or cause or _message(e))


def _message(e: Exception | None) -> str:
    return e.message if isinstance(e, MailtrekError) else str(e)
