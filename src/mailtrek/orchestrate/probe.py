"""Test an IMAP endpoint step by step: DNS, TCP, TLS + certificate, capabilities, login.

Each step says what it found; the first failing step says what to do, and the rest are
skipped. Plain blocking sockets (run in a thread by async callers): this is a one-shot
diagnostic, and the standard library shows each step's error most directly.
"""

from __future__ import annotations

import contextlib
import imaplib
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from mailtrek.errors import MailtrekError
from mailtrek.orchestrate.endpoints import Endpoint
from mailtrek.secrets import redact, remember

TIMEOUT = 15.0


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


def tls_context(ca_file: str | None) -> ssl.SSLContext:
    """Return a verifying client context; ``ca_file`` replaces the system roots when given."""
    return ssl.create_default_context(cafile=ca_file) if ca_file else ssl.create_default_context()


def probe_endpoint(ep: Endpoint, user: str | None = None, password: str | None = None,
                   *, token: Callable[[], str] | None = None, timeout: float = TIMEOUT) -> ProbeResult:
    """Run every check against ``ep`` and return the steps (never raises for server trouble).

    With ``token`` (a service-account endpoint) the login step fetches an access token for
    ``user`` first (a "token" step; a MailtrekError from it is that step's failure) and
    logs in over XOAUTH2 instead of with ``password``.
    """
    remember(password)
    result = ProbeResult()

    def step(name: str, ok: bool, detail: str, advice: str | None = None, t0: float = 0.0) -> bool:
        result.steps.append(Step(name, ok, redact(detail), advice, time.monotonic() - t0))
        return ok

    t0 = time.monotonic()
    try:
        infos = socket.getaddrinfo(ep.host, ep.port, type=socket.SOCK_STREAM)
        addrs = sorted({str(i[4][0]) for i in infos})
        step("dns", True, f"{ep.host} resolves to {', '.join(addrs)}", t0=t0)
    except socket.gaierror as e:
        step("dns", False, f"{ep.host} does not resolve: {e.strerror}",
             "check the host name (typo?) and this machine's DNS settings", t0)
        return result

    t0 = time.monotonic()
    try:
        sock = socket.create_connection((ep.host, ep.port), timeout=timeout)
        step("tcp", True, f"connected to {ep.host}:{ep.port}", t0=t0)
    except OSError as e:
        step("tcp", False, f"cannot connect to {ep.host}:{ep.port}: {e.strerror or e}",
             "check the port (993 for ssl, 143 for starttls/none) and firewalls between here and the server", t0)
        return result

    ctx = tls_context(ep.ca_file)
    t0 = time.monotonic()
    imap: imaplib.IMAP4 | None = None
    try:
        if ep.security == "ssl":
            try:
                tls = ctx.wrap_socket(sock, server_hostname=ep.host)
                step("tls", True, _tls_detail(tls), t0=t0)
            finally:
                sock.close()
            imap = imaplib.IMAP4_SSL(ep.host, ep.port, ssl_context=ctx, timeout=timeout)
        else:
            sock.close()
            imap = imaplib.IMAP4(ep.host, ep.port, timeout=timeout)
            if ep.security == "starttls":
                imap.starttls(ssl_context=ctx)
                step("tls", True, "STARTTLS " + _tls_detail(imap.sock), t0=t0)  # type: ignore[arg-type]
            else:
                step("tls", True, "no TLS (security none): passwords cross the network in clear", t0=t0)
    except ssl.SSLCertVerificationError as e:
        step("tls", False, f"certificate not trusted: {e.verify_message}",
             "pass --ca-file with the server's CA, or fix the server's certificate (never turn verification off)", t0)
        return result
    except (ssl.SSLError, OSError, imaplib.IMAP4.error) as e:
        advice = ("the port may not speak TLS directly: try --security starttls (port 143)"
                  if ep.security == "ssl" else "the server may not offer STARTTLS: try --security ssl (port 993)")
        step("tls", False, f"TLS failed: {e}", advice, t0)
        return result

    try:
        t0 = time.monotonic()
        caps = sorted(c.decode() if isinstance(c, bytes) else str(c) for c in imap.capabilities)
        if "IMAP4REV1" not in caps and "IMAP4rev1" not in caps:
            step("capabilities", False, f"not an IMAP4rev1 server: {' '.join(caps)}",
                 "check that host and port belong to the IMAP service", t0)
            return result
        notable = [c for c in caps if c in ("CONDSTORE", "QRESYNC", "UIDPLUS", "SPECIAL-USE", "IDLE", "MOVE")
                   or c.startswith("AUTH=")]
        step("capabilities", True, " ".join(notable) or "IMAP4rev1", t0=t0)
        if user is None:
            return result
        if token is not None:
            _xoauth2_login(imap, user, token, step, caps)
            return result
        t0 = time.monotonic()
        if password is None:
            step("login", False, "no password given",
                 "set MAILTREK_SOURCE_PASSWORD or pass --password-file", t0)
            return result
        if "LOGINDISABLED" in caps:
            step("login", False, "the server refuses LOGIN on this connection (LOGINDISABLED)",
                 "use --security ssl or starttls", t0)
            return result
        try:
            imap.login(user, password)
        except imaplib.IMAP4.error as e:
            text = e.args[0].decode() if e.args and isinstance(e.args[0], bytes) else str(e)
            step("login", False, f"login as {user} refused: {text}",
                 "check UserName and Password; many providers need an app password and IMAP switched on", t0)
            return result
        typ, data = imap.list()
        n = len(data) if typ == "OK" and data and data[0] is not None else 0
        step("login", True, f"logged in as {user}; {n} folder(s) listed", t0=t0)
        return result
    except (OSError, imaplib.IMAP4.abort) as e:
        step("capabilities", False, f"connection dropped: {e}", "try again; check server logs", time.monotonic())
        return result
    finally:
        with contextlib.suppress(OSError, imaplib.IMAP4.error):
            imap.logout()


def _xoauth2_login(imap: imaplib.IMAP4, user: str, token: Callable[[], str],
                   step: Callable[..., bool], caps: list[str]) -> None:
    """Fetch a token for ``user`` and log in with SASL XOAUTH2, recording both steps."""
    t0 = time.monotonic()
    try:
        access = remember(token()) or ""
    except MailtrekError as e:
        step("token", False, e.message, e.hint, t0)
        return
    step("token", True, f"access token issued for {user}", t0=t0)
    t0 = time.monotonic()
    if "AUTH=XOAUTH2" not in caps:
        step("login", False, "the server does not offer AUTH=XOAUTH2",
             "service-account logins need an XOAUTH2 server such as imap.gmail.com", t0)
        return
    answers = iter([f"user={user}\x01auth=Bearer {access}\x01\x01".encode(), b""])

    def respond(_challenge: bytes) -> bytes:
        # A refused token gets a JSON challenge first; an empty line lets the server say NO.
        return next(answers, b"")

    try:
        imap.authenticate("XOAUTH2", respond)
    except imaplib.IMAP4.error as e:
        text = e.args[0].decode() if e.args and isinstance(e.args[0], bytes) else str(e)
        step("login", False, f"XOAUTH2 login as {user} refused: {text}",
             "check that the user exists, IMAP is on for them, and the delegation grants "
             "https://mail.google.com/", t0)
        return
    typ, data = imap.list()
    n = len(data) if typ == "OK" and data and data[0] is not None else 0
    step("login", True, f"logged in as {user} over XOAUTH2; {n} folder(s) listed", t0=t0)


def _tls_detail(tls: ssl.SSLSocket) -> str:
    cert = tls.getpeercert() or {}
    subject = dict(x[0] for x in cert.get("subject", ()))  # type: ignore[misc]
    return f"{tls.version()}, certificate for {subject.get('commonName', '?')} valid until {cert.get('notAfter', '?')}"
