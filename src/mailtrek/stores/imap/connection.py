"""One IMAP connection that pipelines: many commands in flight, answers matched by tag.

``ImapConnection.command`` writes a command at once (LITERAL+ where the server offers
it) and returns when its tagged answer arrives; untagged responses that arrive while
it is the oldest command in flight are handed back with it. One reader task owns the
socket's read side. Lower-layer errors are translated here into mailtrek's errors
(connecting: ``dial.translate``): a lost connection fails every command in flight with
``TransientError``. ``open`` reaches the server through ``dial`` and reports each step
(dns, tcp, tls, and STARTTLS's tls) to ``on_step``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import re
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from mailtrek.errors import (
    AuthenticationError,
    CertificateError,
    ConnectionFailedError,
    LoginUnavailableError,
    ProtocolError,
    ThrottledError,
    TransientError,
)
from mailtrek.stores.imap.dial import DialStep, StepHook, dial, tls_facts, tls_problem, translate
from mailtrek.stores.imap.limits import (
    COMMAND_TIMEOUT_ENV,
    MAX_RESPONSE_BYTES_ENV,
    MAX_RESPONSES_ENV,
    Limits,
)
from mailtrek.stores.imap.wire import (
    LITERAL_AT_END,
    Chunk,
    OversizedLiteral,
    Response,
    parse_untagged,
    quote,
    split_code,
)

log = logging.getLogger("mailtrek.imap")

BIG_LITERAL = 1 << 20  # read literals above this in chunks, the buffer growing as they arrive
BIG_WRITE = 4 << 20  # write messages above this in pieces, draining between them
LOGIN_HINT = "check the user name and password"  # a refused login's hint, unless more is known
THROTTLE_WAIT = 60.0  # seconds to wait after a throttling answer (Gmail gives no figure)
# Exchange Online: "BAD Request is throttled. Suggested Backoff Time: 299961 milliseconds"
# (imapsync FAQ.Office365, research/m365.md B).
_BACKOFF = re.compile(rb"suggested backoff time:\s*(\d{1,12})\s*milli", re.I)


@dataclass(frozen=True, slots=True)
class ConnectParams:
    """Where and how to connect. ``security`` is ``ssl``, ``starttls`` or ``none``."""

    host: str
    port: int
    security: str = "ssl"
    ca_file: str | None = None
    verify: bool = True
    timeout: float = 60.0  # seconds without any answer while commands are in flight
    connect_timeout: float = 20.0
    # Connect to these addresses (in order) instead of resolving ``host``; TLS still
    # checks the certificate against ``host`` (discovery's own resolver decides them).
    addresses: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Credentials:
    """Who logs in. ``mechanism``: ``login``, ``plain``, ``xoauth2`` or ``oauthbearer``.

    ``authzid`` is the mailbox to open with an admin's credentials (SASL PLAIN).
    ``token`` gives a fresh OAuth access token for the OAuth mechanisms.
    """

    user: str
    password: str | None = field(default=None, repr=False)
    mechanism: str = "login"
    authzid: str | None = None
    token: Callable[[], Awaitable[str]] | None = field(default=None, repr=False)


@dataclass(slots=True)
class Result:
    """A tagged answer with the untagged responses that came before it."""

    status: bytes  # OK, NO, BAD
    code: bytes | None
    text: bytes
    untagged: list[Response]

    @property
    def ok(self) -> bool:
        return self.status == b"OK"

    def describe(self) -> str:
        code = f"[{self.code.decode(errors='replace')}] " if self.code else ""
        return f"{self.status.decode()} {code}{self.text.decode(errors='replace')}".strip()

    @property
    def throttled(self) -> bool:
        """True when the server asks us to slow down rather than refusing for good.

        Gmail answers ``NO [THROTTLED]`` or "Account exceeded command or bandwidth
        limits" when a user's IMAP use is over its limits; Exchange Online answers
        ``BAD Request is throttled. Suggested Backoff Time: N milliseconds``.
        """
        if self.ok:
            return False
        code = (self.code or b"").upper()
        text = self.text.lower()
        return (code.startswith(b"THROTTLED") or b"exceeded command or bandwidth" in text
                or b"request is throttled" in text)

    @property
    def retry_after(self) -> float | None:
        """Seconds the server asks us to wait (Exchange names them), else None."""
        m = _BACKOFF.search(self.text)
        return int(m.group(1)) / 1000 if m else None


class _Pending:
    __slots__ = ("accepts", "collected", "count", "deadline", "future", "max_literal", "sent",
                 "tag", "untagged", "what")

    def __init__(
        self, tag: bytes, future: asyncio.Future[Result], accepts: frozenset[bytes] | None,
        what: bytes, sent: float, deadline: float, max_literal: int | None,
    ) -> None:
        self.tag = tag
        self.future = future
        self.accepts = accepts  # untagged response names this command collects; None: all
        self.untagged: list[Response] = []
        self.what = what  # the command's name, for errors
        self.sent = sent  # loop time it was written
        self.deadline = deadline  # loop time by which its tagged answer must have come
        self.max_literal = max_literal  # bigger literals are read past (OversizedLiteral)
        self.count = 0  # untagged responses collected so far
        self.collected = 0  # and their bytes (text and literals)


class ImapConnection:
    """A pipelining IMAP4rev1 client connection."""

    def __init__(self, params: ConnectParams, *, label: str = "imap",
                 limits: Limits | None = None) -> None:
        self.params = params
        self.label = label
        self.limits = limits or Limits.from_env()
        self.capabilities: set[str] = set()
        # The mailbox the server will have selected once every command sent so far has
        # run (send order, not completion order): what pipelined commands may rely on.
        self.selected: bytes | None = None
        self.selected_readonly = True
        self.utf8 = False
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._read_task: asyncio.Task[None] | None = None
        self._watch_task: asyncio.Task[None] | None = None
        self._progress = 0.0  # loop time of the last complete response or drained write
        self._pending: deque[_Pending] = deque()
        self._by_tag: dict[bytes, _Pending] = {}
        self._continuation: asyncio.Future[bytes] | None = None
        self._write_lock = asyncio.Lock()
        self._tagnum = 0
        self._closed_error: Exception | None = None
        self.in_flight_bytes = 0
        self.errors = 0  # tagged NO/BAD answers so far (Exchange hangs up after 10)
        # Called with the seconds to wait when a throttling answer names them (Exchange).
        self.on_throttle: Callable[[float], None] | None = None
        # Told each step of reaching the server (dns, tcp, tls) as it finishes.
        self.on_step: StepHook | None = None
        # Exchange hangs up right after a throttling answer: the commands still pending
        # then fail with this (and its back-off) rather than as a plain lost connection.
        self._throttle_error: ThrottledError | None = None

    # -- lifecycle -------------------------------------------------------------
    async def open(self) -> None:
        """Connect, read the greeting, do STARTTLS when asked, learn capabilities.

        Each step of reaching the server (dns, tcp, tls) is reported to ``on_step``
        when it is set (``endpoint test`` and discovery show them).
        """
        p = self.params
        ctx = self._tls_context() if p.security in ("ssl", "starttls") else None
        self._reader, self._writer = await dial(
            p.host, p.port, security=p.security, ctx=ctx, timeout=p.connect_timeout,
            addresses=p.addresses, on_step=self.on_step)
        greeting = await self._read_greeting()
        self._read_task = asyncio.create_task(self._read_loop(), name=f"{self.label}-reader")
        self._watch_task = asyncio.create_task(self._watch(), name=f"{self.label}-watchdog")
        name, vals = parse_untagged(greeting)
        if name == b"BYE":
            raise ConnectionFailedError(f"{p.host}:{p.port} refused the session: {vals[1]!r}")
        if p.security == "starttls":
            assert ctx is not None
            await self._starttls(ctx)
            return
        code = vals[0] if vals else None
        if name == b"OK" and isinstance(code, bytes) and code.upper().startswith(b"CAPABILITY "):
            self.capabilities = _caps(code[11:])
        if not self.capabilities:
            await self._refresh_capabilities()

    async def _starttls(self, ctx: ssl.SSLContext) -> None:
        """Upgrade to TLS (refusing a server without STARTTLS), then ask CAPABILITY again."""
        p = self.params
        t0 = time.monotonic()
        await self._refresh_capabilities()
        if "STARTTLS" not in self.capabilities:
            err = ConnectionFailedError(
                f"{p.host}:{p.port} does not offer STARTTLS",
                hint="use ssl (port 993) or, only on a trusted network, security none",
            )
            self._report(DialStep("tls", False, time.monotonic() - t0, starttls=True,
                                  problem="no-starttls", error=err))
            raise err
        res = await self.command(b"STARTTLS")
        if not res.ok:
            err = ConnectionFailedError(f"STARTTLS refused: {res.describe()}")
            self._report(DialStep("tls", False, time.monotonic() - t0, starttls=True,
                                  problem="no-starttls", error=err))
            raise err
        assert self._writer is not None
        try:
            await asyncio.wait_for(
                self._writer.start_tls(ctx, server_hostname=p.host), p.connect_timeout
            )
        except BaseException as e:
            failed = translate(e, p.host, p.port, p.connect_timeout)
            self._report(DialStep("tls", False, time.monotonic() - t0, starttls=True,
                                  problem=tls_problem(e), error=failed))
            raise failed from e
        self._report(DialStep("tls", True, time.monotonic() - t0,
                              **tls_facts(self._writer, starttls=True)))
        # What was said in clear may have been forged: ask again (RFC 3501 6.2.1).
        self.capabilities = set()
        await self._refresh_capabilities()

    def _report(self, step: DialStep) -> None:
        if self.on_step is not None:
            self.on_step(step)

    async def close(self) -> None:
        """Log out politely (briefly) and drop the connection. Idempotent."""
        if self._writer is None:
            return
        if self._closed_error is None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.command(b"LOGOUT"), 2)
        self._fail_all(TransientError("connection closed"))
        for task in (self._read_task, self._watch_task):
            if task is not None:
                task.cancel()
        with contextlib.suppress(Exception):
            self._writer.close()
        self._writer = None

    @property
    def alive(self) -> bool:
        return self._writer is not None and self._closed_error is None

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    def has(self, cap: str) -> bool:
        return cap.upper() in self.capabilities

    # -- authentication ------------------------------------------------------------
    async def login(self, creds: Credentials) -> None:
        """Authenticate. Raises AuthenticationError with the server's reason (no secret)."""
        mech = creds.mechanism.lower()
        who = creds.user if not creds.authzid else f"{creds.authzid} (as {creds.user})"
        if mech == "login" and creds.authzid is None and not self.has("LOGINDISABLED"):
            user, pw = creds.user.encode(), (creds.password or "").encode()
            res = await self.command(b"LOGIN", self._string(user), self._string(pw), secret=True)
        elif mech in ("login", "plain"):
            blob = (creds.authzid or "").encode() + b"\0" + creds.user.encode() + b"\0"
            blob += (creds.password or "").encode()
            res = await self._authenticate(b"PLAIN", blob)
        elif mech in ("xoauth2", "oauthbearer"):
            if creds.token is None:
                raise AuthenticationError(f"no OAuth token source for {creds.user}")
            token = await creds.token()
            if mech == "xoauth2":
                blob = f"user={creds.user}\x01auth=Bearer {token}\x01\x01".encode()
                res = await self._authenticate(b"XOAUTH2", blob)
            else:
                blob = (
                    f"n,a={creds.user},\x01host={self.params.host}\x01port={self.params.port}"
                    f"\x01auth=Bearer {token}\x01\x01"
                ).encode()
                res = await self._authenticate(b"OAUTHBEARER", blob)
        else:
            raise AuthenticationError(f"unknown login mechanism {creds.mechanism!r}")
        if res.throttled:
            raise ThrottledError(f"{self.params.host} is throttling {who}: {res.describe()}",
                                 retry_after=res.retry_after or THROTTLE_WAIT)
        if not res.ok:
            text = res.describe()
            hint = LOGIN_HINT
            if res.code and res.code.upper().startswith(b"UNAVAILABLE"):
                raise LoginUnavailableError(
                    f"{self.params.host} refused the login of {who} for now: {text}",
                    hint="the server is temporarily unable to open this mailbox; try later")
            if mech in ("xoauth2", "oauthbearer"):
                hint = "check the app's permissions and that the token is for this mailbox"
            from mailtrek.stores.gmail.advice import google_login_advice, is_google_host

            if is_google_host(self.params.host) or self.has("X-GM-EXT-1"):
                hint = google_login_advice(text) or hint  # name the setting to change
            raise AuthenticationError(
                f"{self.params.host} refused the login of {who}: {text}", hint=hint
            )
        caps = res.code.upper() if res.code else b""
        if caps.startswith(b"CAPABILITY "):
            self.capabilities = _caps(caps[11:])
        else:
            await self._refresh_capabilities()
        if self.has("UTF8=ACCEPT"):
            r = await self.command(b"ENABLE", b"UTF8=ACCEPT")
            self.utf8 = r.ok
        if self.has("CONDSTORE"):
            await self.command(b"ENABLE", b"CONDSTORE")

    async def _authenticate(self, mech: bytes, blob: bytes) -> Result:
        b64 = base64.b64encode(blob)
        if self.has("SASL-IR"):
            fut = self._send([b"AUTHENTICATE ", mech, b" ", b64], secret=True, expect_cont=True)
        else:
            fut = self._send([b"AUTHENTICATE ", mech], expect_cont=True)
            early = await self._wait_continuation(fut)
            if early is not None:
                raise ProtocolError("server answered before the literal was sent: "
                                    f"{early.describe()}")
            self._write_raw(b64 + b"\r\n")
        # A refused token gets a challenge; answer it with an empty line (RFC 7628).
        while True:
            cont = self._continuation
            if cont is None:
                return await fut
            done, _ = await asyncio.wait(_pair(fut, cont), return_when=asyncio.FIRST_COMPLETED)
            if fut in done:
                self._continuation = None
                return fut.result()
            self._continuation = self._loop().create_future()
            self._write_raw(b"\r\n")

    # -- commands --------------------------------------------------------------------
    async def command(
        self, *parts: bytes, secret: bool = False, accepts: tuple[bytes, ...] | None = None
    ) -> Result:
        """Send ``parts`` joined by spaces as one command; return its tagged answer.

        Parts are sent as given: quote strings with ``quote``/``_string`` first.
        ``accepts`` names the untagged responses this command collects (e.g. FETCH);
        the server may run pipelined commands in parallel, so each takes only its own.
        Raises TransientError when the connection is lost before the answer, and
        ProtocolError when the server breaks one of the ``limits``.
        """
        return await self._send(
            [b" ".join(parts)], secret=secret,
            accepts=frozenset(accepts) if accepts is not None else None,
        )

    async def append(
        self, mailbox: bytes, flags: list[bytes], date: bytes | None, data: bytes
    ) -> Result:
        """APPEND ``data`` to ``mailbox`` (already encoded and quoted).

        Uses LITERAL+ (no round trip) when the server offers it, and a literal8
        (``~{n}``) when ``data`` has NUL bytes and the server offers BINARY.
        """
        head = b"APPEND " + mailbox + b" (" + b" ".join(flags) + b")"
        if date:
            head += b" " + quote(date)
        binary = b"\0" in data
        if binary and not self.has("BINARY"):
            raise ProtocolError("message has NUL bytes and the server lacks BINARY")
        plus = self.has("LITERAL+") or (self.has("LITERAL-") and len(data) <= 4096)
        marker = b"~{" if binary else b"{"
        size = str(len(data)).encode()
        if plus and len(data) <= BIG_WRITE:
            return await self._send(
                [head + b" " + marker + size + b"+}\r\n", data], track=len(data),
                accepts=frozenset(),
            )
        if plus:
            # A big message goes out in pieces, waiting for the socket between them, so
            # it is never copied whole into the transport's buffer. The write lock keeps
            # other commands from slipping in between the pieces.
            async with self._write_lock:
                fut = self._send([head + b" " + marker + size + b"+}\r\n"], locked=True,
                                 track=len(data), accepts=frozenset(), raw_tail=True)
                view = memoryview(data)
                for i in range(0, len(data), BIG_WRITE):
                    self._write_raw(view[i : i + BIG_WRITE])
                    await self.drain()
                self._write_raw(b"\r\n")
            return await fut
        async with self._write_lock:
            fut = self._send([head + b" " + marker + size + b"}"], expect_cont=True, locked=True,
                             track=len(data), accepts=frozenset())
            early = await self._wait_continuation(fut)
            if early is not None:  # e.g. Courier: NO Current box is selected READ-ONLY.
                return early
            self._write_raw(data)
            self._write_raw(b"\r\n")
        return await fut

    async def multiappend(
        self, mailbox: bytes, items: list[tuple[list[bytes], bytes | None, bytes]]
    ) -> Result:
        """APPEND several messages in one command (RFC 3502 MULTIAPPEND, LITERAL+).

        The server stores all or none, and commits once: far cheaper than one APPEND
        each. ``items`` are (flags, internaldate, bytes). Needs MULTIAPPEND and LITERAL+.
        """
        parts: list[bytes] = []
        total = 0
        for i, (flags, date, data) in enumerate(items):
            binary = b"\0" in data
            if binary and not self.has("BINARY"):
                raise ProtocolError("message has NUL bytes and the server lacks BINARY")
            seg = (b"APPEND " + mailbox if i == 0 else b"") + b" (" + b" ".join(flags) + b")"
            if date:
                seg += b" " + quote(date)
            seg += (b" ~{" if binary else b" {") + str(len(data)).encode() + b"+}\r\n"
            parts += [seg, data]
            total += len(data)
        return await self._send(parts, track=total, accepts=frozenset())

    async def send_many(
        self, commands: list[tuple[bytes, tuple[bytes, ...] | None]], *,
        max_literal: int | None = None,
    ) -> list[asyncio.Future[Result]]:
        """Send commands back to back, nothing in between; return their answers' futures.

        Each entry is (command, accepted untagged names or None for all). This is what
        makes ``SELECT x`` + ``UID FETCH`` safe to pipeline on a shared connection.
        A literal bigger than ``max_literal`` in an answer is read past, not kept: it
        arrives as an ``OversizedLiteral`` (a body FETCH passes the run's --max-size).
        """
        if self._write_lock.locked():
            async with self._write_lock:
                return [self._send([c], locked=True, max_literal=max_literal,
                                   accepts=frozenset(a) if a is not None else None)
                        for c, a in commands]
        return [self._send([c], max_literal=max_literal,
                           accepts=frozenset(a) if a is not None else None)
                for c, a in commands]

    async def drain(self) -> None:
        """Wait until the socket's write buffer has room again."""
        if self._writer is not None:
            try:
                await self._writer.drain()
            except (ConnectionError, OSError) as e:
                self._fail_all(TransientError(f"connection to {self.params.host} lost: {e}"))
                raise TransientError(f"connection to {self.params.host} lost") from e
            self._progress = self._loop().time()  # a slow link is not an idle server

    def _send(
        self,
        parts: list[bytes],
        *,
        secret: bool = False,
        expect_cont: bool = False,
        locked: bool = False,
        track: int = 0,
        accepts: frozenset[bytes] | None = None,
        raw_tail: bool = False,
        max_literal: int | None = None,
    ) -> asyncio.Future[Result]:
        if self._closed_error is not None or self._writer is None:
            raise TransientError(f"connection to {self.params.host} is closed")
        if not locked and self._write_lock.locked():
            # A synchronizing literal is being sent; queue behind it.
            return asyncio.ensure_future(
                self._send_later(parts, secret, expect_cont, track, accepts, max_literal))
        self._tagnum += 1
        tag = b"T%d" % self._tagnum
        loop = self._loop()
        fut: asyncio.Future[Result] = loop.create_future()
        now = loop.time()
        p = _Pending(tag, fut, accepts, _verb(parts[0]), now, now + self.limits.command_timeout,
                     max_literal)
        self._pending.append(p)
        self._by_tag[tag] = p
        if expect_cont:
            self._continuation = self._loop().create_future()
        if track:
            self.in_flight_bytes += track
            fut.add_done_callback(lambda _f: self._untrack(track))
        first = tag + b" " + parts[0]
        if len(parts) == 1 and not first.endswith(b"\n") and not raw_tail:
            first += b"\r\n"
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s C: %s", self.label, b"<secret>" if secret else first[:200])
        self._write_raw(first)
        for extra in parts[1:]:
            self._write_raw(extra)
        if len(parts) > 1:
            self._write_raw(b"\r\n")
        return fut

    async def _send_later(
        self, parts: list[bytes], secret: bool, expect_cont: bool, track: int,
        accepts: frozenset[bytes] | None, max_literal: int | None,
    ) -> Result:
        async with self._write_lock:
            fut = self._send(parts, secret=secret, expect_cont=expect_cont, locked=True,
                             track=track, accepts=accepts, max_literal=max_literal)
        return await fut

    def _untrack(self, n: int) -> None:
        self.in_flight_bytes -= n

    def _write_raw(self, data: bytes | memoryview) -> None:
        assert self._writer is not None
        self._writer.write(data)

    async def _wait_continuation(self, fut: asyncio.Future[Result]) -> Result | None:
        """Wait for ``+``; return None then, or the command's answer when the server
        answered instead (a refusal, whose text the caller keeps)."""
        cont = self._continuation
        assert cont is not None
        done, _ = await asyncio.wait(_pair(fut, cont), return_when=asyncio.FIRST_COMPLETED)
        if cont in done:
            self._continuation = None
            cont.result()
            return None
        self._continuation = None
        return fut.result()  # raises if the connection failed

    def _string(self, value: bytes) -> bytes:
        """Encode a string argument: quoted, or a LITERAL+ literal when it must be."""
        if (any(b in (0, 10, 13) for b in value) or (
            any(b > 127 for b in value) and not self.utf8
        )) and self.has("LITERAL+"):
            return b"{%d+}\r\n" % len(value) + value
        return quote(value)

    # -- reading --------------------------------------------------------------------
    async def _read_response(self) -> tuple[Response, _Pending | None]:
        """Read one whole response; return it with the command that collects it (if any).

        The collector is known from the first line, before any literal is read, so each
        literal is checked against that command's limits as it arrives.
        """
        assert self._reader is not None
        r = self._reader
        chunks: list[Chunk] = []
        target: _Pending | None = None
        while True:
            line = await r.readuntil(b"\r\n")
            line = line[:-2]
            if not chunks:
                target = self._collector(line)
                if target is not None:
                    target.count += 1
                    if target.count > self.limits.max_responses:
                        raise ProtocolError(
                            f"{self.params.host} sent more than {self.limits.max_responses:,} "
                            f"responses to one {target.what.decode(errors='replace')} command",
                            hint=f"a server that never stops is broken or hostile; {MAX_RESPONSES_ENV} "
                                 "raises the limit")
            chunks.append(line)
            if target is not None:
                self._charge(target, len(line))
            m = LITERAL_AT_END.search(line)
            if not m:
                return Response(chunks), target
            if len(m.group(1)) > 15:
                raise ProtocolError(f"{self.params.host} announced a literal of "
                                    f"{len(m.group(1))} digits")
            chunks.append(await self._read_literal(int(m.group(1)), target))

    async def _read_literal(self, n: int, target: _Pending | None
                            ) -> bytes | bytearray | OversizedLiteral:
        """Read a literal of ``n`` bytes; memory grows with what arrives, never up front."""
        assert self._reader is not None
        r = self._reader
        if n > self.limits.max_literal:
            raise ProtocolError(
                f"{self.params.host} announced a literal of {n:,} bytes; mailtrek reads at "
                f"most {self.limits.max_literal:,} bytes in one",
                hint="the server is broken or hostile; no message that large can be migrated")
        if target is None or (target.max_literal is not None and n > target.max_literal):
            left = n  # nobody keeps it (or it is over the command's limit): read past it
            while left:
                part = await r.read(min(left, BIG_LITERAL))
                if not part:
                    raise asyncio.IncompleteReadError(b"", n)
                left -= len(part)
            return OversizedLiteral(n)
        self._charge(target, n)
        if n <= BIG_LITERAL:
            return await r.readexactly(n)
        # Pieces joined once at the end: growing one buffer re-allocated and copied it
        # at every piece (a 10 MB literal cost ~50 MB of copying and fresh pages).
        parts: list[bytes] = []
        got = 0
        while got < n:
            part = await r.read(min(n - got, BIG_LITERAL))
            if not part:
                raise asyncio.IncompleteReadError(b"", n)
            parts.append(part)
            got += len(part)
        return b"".join(parts)

    def _charge(self, target: _Pending, n: int) -> None:
        """Count ``n`` more bytes collected for ``target``; ProtocolError past its budget."""
        target.collected += n
        budget = self.limits.budget(target.max_literal)
        if target.collected > budget:
            raise ProtocolError(
                f"{self.params.host} sent more than {budget:,} bytes of responses to one "
                f"{target.what.decode(errors='replace')} command",
                hint=f"a server that never stops is broken or hostile; {MAX_RESPONSE_BYTES_ENV} "
                     "raises the limit")

    def _collector(self, line: bytes) -> _Pending | None:
        """The command in flight that collects the untagged response starting ``line``."""
        if not line.startswith(b"* ") or (line[2:6].upper() == b"BYE " and not self._pending):
            return None
        name = _untagged_name(line)
        for waiting in self._pending:
            if waiting.accepts is None or name in waiting.accepts:
                return waiting
        return None

    async def _read_greeting(self) -> Response:
        try:
            resp, _ = await asyncio.wait_for(self._read_response(),
                                             self.params.connect_timeout)
            return resp
        except (asyncio.IncompleteReadError, ConnectionError, OSError, TimeoutError,
                asyncio.LimitOverrunError, ProtocolError) as e:
            raise ConnectionFailedError(
                f"{self.params.host}:{self.params.port} sent no IMAP greeting",
                hint="is this an IMAP port, and is the security setting (ssl/starttls/none) right?",
            ) from e

    async def _read_loop(self) -> None:
        try:
            while True:
                resp, target = await self._read_response()
                self._progress = self._loop().time()
                self._dispatch(resp, target)
        except asyncio.CancelledError:
            raise
        except (asyncio.IncompleteReadError, ConnectionError, OSError, ssl.SSLError) as e:
            self._fail_all(self._throttle_error or TransientError(
                f"connection to {self.params.host} lost: {e.__class__.__name__}"))
        except asyncio.LimitOverrunError as e:
            self._fail_all(ProtocolError(f"{self.params.host} sent an over-long line: {e}"))
        except ProtocolError as e:
            self._fail_all(e)
        except Exception as e:
            self._fail_all(ProtocolError(
                f"cannot understand {self.params.host}: {e.__class__.__name__}: {e}"))
        self._abort()

    async def _watch(self) -> None:
        """End the connection when a command overstays its time.

        Two clocks, checked about once a second: the idle one (``params.timeout`` without
        a complete response, or a drained piece of a big APPEND, while something is in
        flight) and the whole command's
        (``limits.command_timeout`` from sending it, however busily the server talks).
        Commands are timed in send order, so the oldest in flight is due first.
        """
        idle = self.params.timeout
        step = max(0.05, min(1.0, idle / 4, self.limits.command_timeout / 4))
        loop = self._loop()
        while self._closed_error is None:
            await asyncio.sleep(step)
            if not self._pending:
                continue
            oldest, now = self._pending[0], loop.time()
            if now >= oldest.deadline:
                what = oldest.what.decode(errors="replace")
                self._fail_all(ProtocolError(
                    f"{self.params.host} did not finish a {what} command within "
                    f"{self.limits.command_timeout:.0f} s; connection dropped",
                    hint=f"a server that never finishes is broken or hostile; {COMMAND_TIMEOUT_ENV} "
                         "gives commands longer"))
            elif now - max(self._progress, oldest.sent) >= idle:
                self._fail_all(TransientError(
                    f"{self.params.host} did not answer for {idle:.0f} s; connection dropped"))
            else:
                continue
            if self._read_task is not None:
                self._read_task.cancel()
            self._abort()
            return

    def _abort(self) -> None:
        """Drop the transport at once (the connection is already failed)."""
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.transport.abort()

    def _dispatch(self, resp: Response, target: _Pending | None) -> None:
        head = resp.head
        if head.startswith(b"+"):
            cont = self._continuation
            if cont is not None and not cont.done():
                cont.set_result(head[2:])
            return
        if head.startswith(b"* "):
            if target is not None and target.tag in self._by_tag:
                target.untagged.append(resp)
            return
        tag, _, rest = head.partition(b" ")
        if tag not in self._by_tag:
            return
        p = self._by_tag.pop(tag)
        with contextlib.suppress(ValueError):
            self._pending.remove(p)
        status, _, text = rest.partition(b" ")
        code, text = split_code(text)
        res = Result(status.upper(), code, text, p.untagged)
        if not res.ok:
            self.errors += 1
            wait = res.retry_after if res.throttled else None
            if wait and self.on_throttle is not None:  # the server named its back-off
                self.on_throttle(wait)
            if res.throttled:
                self._throttle_error = ThrottledError(
                    f"{self.params.host} is throttling: {res.describe()}", retry_after=wait)
        if not p.future.done():
            p.future.set_result(res)

    def _fail_all(self, err: Exception) -> None:
        if self._closed_error is None:
            self._closed_error = err
        while self._pending:
            p = self._pending.popleft()
            if not p.future.done():
                p.future.set_exception(err)
                p.future.exception()  # mark retrieved: callers may be gone
        self._by_tag.clear()
        if self._continuation is not None and not self._continuation.done():
            self._continuation.set_exception(err)
            self._continuation.exception()

    async def _refresh_capabilities(self) -> None:
        res = await self.command(b"CAPABILITY")
        for u in res.untagged:
            name, vals = parse_untagged(u)
            if name == b"CAPABILITY":
                self.capabilities = {v.decode().upper() for v in vals if isinstance(v, bytes)}

    # -- helpers ---------------------------------------------------------------------
    def _tls_context(self) -> ssl.SSLContext:
        p = self.params
        if not p.verify:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            return ctx
        try:
            return ssl.create_default_context(cafile=p.ca_file) if p.ca_file else (
                ssl.create_default_context())
        except (OSError, ssl.SSLError) as e:
            raise CertificateError(f"cannot read CA file {p.ca_file}: {e}") from e

    @staticmethod
    def _loop() -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()


def _pair(a: asyncio.Future[Any], b: asyncio.Future[Any]) -> set[asyncio.Future[Any]]:
    return {a, b}


def _untagged_name(head: bytes) -> bytes:
    """``* 3 FETCH (...)`` -> FETCH; ``* LIST ...`` -> LIST; ``* OK [...]`` -> OK."""
    parts = head[2:].split(b" ", 2)
    if parts[0].isdigit() and len(parts) > 1:
        return parts[1].upper()
    return parts[0].upper()


def _verb(command: bytes) -> bytes:
    """``UID FETCH 1:* (...)`` -> UID FETCH; ``LIST "" "*"`` -> LIST (for messages)."""
    words = command.split(b" ", 2)
    if words[0].upper() == b"UID" and len(words) > 1:
        return b"UID " + words[1].upper()
    return words[0].upper()[:20]


def _caps(text: bytes) -> set[str]:
    return {c.decode().upper() for c in text.split()}
