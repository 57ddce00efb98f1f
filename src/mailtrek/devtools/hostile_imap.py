"""A small IMAP server that misbehaves on purpose: the hostile source of the tests.

It serves one mailbox (INBOX with one short message, plus the folders an attack adds) to
any login, well enough for ``mailtrek copy`` to get to the command an attack spoils:

==================  ==============================================================
attack              what the server does
==================  ==============================================================
``none``            nothing: an honest little server (the control case)
``huge-literal``    announces ``BODY[] {3000000000}`` for the 86-byte message, sends
                    86 bytes and waits
``oversize-body``   lists the message as 86 bytes, then streams ``body_bytes`` for it
``list-flood``      answers LIST with untagged LIST responses that never end
``fetch-flood``     answers the UID FETCH listing with FETCH responses that never end
``drip``            answers the UID FETCH listing with one ``* OK`` line every
                    ``drip_every`` seconds, forever (no idle timeout ever fires)
``deep-parens``     a FETCH response nesting 20,000 parentheses
``bad-quoted``      a LIST response whose line ends inside a quoted name, on a backslash
``bad-uid``         a FETCH response with ``UID abc``
``inject-folder``   a folder named ``Evil\\r\\nX1 DELETE INBOX\\r\\nX2 CREATE pwned``
                    (sent as a literal; UTF8=ACCEPT offered), an empty \\Noselect one
                    named ``Ghost\\r\\nX3 RENAME INBOX pwned2``, and one named ``..``
``no-starttls``     STARTTLS stripped from the capabilities (a man in the middle)
``starttls-caps``   offers STARTTLS; the plaintext greeting's CAPABILITY claims
                    ``X-BEFORE-TLS``, the one after the upgrade ``X-AFTER-TLS``
``echo-login``      refuses every LOGIN with a NO that repeats its arguments (the
                    password too), as careless servers and proxies do
``login-disabled``  plain text with ``LOGINDISABLED AUTH=PLAIN``: refuses LOGIN, accepts
                    AUTHENTICATE PLAIN (RFC 3501 7.2.1 allows a server that)
``serverbug-once``  refuses the first SELECT/EXAMINE with ``NO [SERVERBUG]``, as a
                    loaded Dovecot does when an index lock races; later ones work
``unavailable-once`` refuses the first LOGIN with ``NO [UNAVAILABLE] Temporary
                    authentication failure.`` (a loaded Dovecot's auth process); later
                    ones work
==================  ==============================================================

Every line a client sends is kept in ``lines`` (a smuggled command shows up as a line of
its own), so tests can assert what reached the server. It runs on its own event loop in
a background thread, like ``devtools.proxy``, so blocking tests can drive it too:

    python -m mailtrek.devtools.hostile_imap --attack list-flood
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path

__all__ = ["ATTACKS", "INJECTED", "MESSAGE", "HostileImap", "main"]

MESSAGE = (b"From: a@example.com\r\nTo: b@example.com\r\nSubject: hello\r\n"
           b"Message-ID: <h@example>\r\n\r\nhello\r\n")
INJECTED = b"Evil\r\nX1 DELETE INBOX\r\nX2 CREATE pwned"
INJECTED_NOSELECT = b"Ghost\r\nX3 RENAME INBOX pwned2"  # a \Noselect parent without children
ATTACKS = ("none", "huge-literal", "oversize-body", "list-flood", "fetch-flood", "drip",
           "deep-parens", "bad-quoted", "bad-uid", "inject-folder", "no-starttls",
           "starttls-caps", "echo-login", "login-disabled", "serverbug-once",
           "unavailable-once")
_DATE = b'"01-Jan-2024 10:00:00 +0000"'
_LITERAL = re.compile(rb"\{(\d+)(\+?)\}$")


class HostileImap:
    """Serve ``attack`` on a free port of 127.0.0.1 (``start()`` sets ``port``).

    ``cert``/``key`` (PEM paths) enable STARTTLS; ``body_bytes`` sizes ``oversize-body``.
    """

    def __init__(self, attack: str = "none", *, cert: Path | None = None,
                 key: Path | None = None, body_bytes: int = 60 << 20,
                 drip_every: float = 0.5) -> None:
        if attack not in ATTACKS:
            raise ValueError(f"unknown attack {attack!r}; one of {', '.join(ATTACKS)}")
        self.attack = attack
        self.body_bytes = body_bytes
        self.drip_every = drip_every
        self.tls: ssl.SSLContext | None = None
        if cert is not None and key is not None:
            self.tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self.tls.load_cert_chain(str(cert), str(key))
        self.port = 0
        self.lines: list[bytes] = []  # every command line received, in order
        self.connections = 0
        self.refused_selects = 0
        self.refused_logins = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stopping: asyncio.Event | None = None

    # -- life cycle ---------------------------------------------------------------------
    def start(self) -> HostileImap:
        """Listen on a free port; return self once ready."""
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()),
                                        name="hostile-imap", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("hostile IMAP server did not start")
        return self

    def stop(self) -> None:
        """Stop listening and drop every client; safe to call twice."""
        if self._loop is not None and self._stopping is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._stopping.set)
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None

    def __enter__(self) -> HostileImap:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def saw(self, text: bytes) -> bool:
        """True when some received line starts with ``text`` (after its tag, or whole)."""
        return any(line.startswith(text) or line.partition(b" ")[2].startswith(text)
                   for line in self.lines)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        clients: set[asyncio.Task[None]] = set()

        async def serve(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            clients.add(task)
            try:
                await _Session(self, r, w).run()
            except (ConnectionError, OSError, asyncio.IncompleteReadError, ssl.SSLError,
                    asyncio.CancelledError):
                pass  # the client left, or the server stops
            finally:
                clients.discard(task)
                with contextlib.suppress(Exception):
                    w.close()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        await self._stopping.wait()
        server.close()
        for t in list(clients):
            t.cancel()
        await asyncio.gather(*clients, return_exceptions=True)


class _Session:
    """One client connection."""

    def __init__(self, server: HostileImap, r: asyncio.StreamReader,
                 w: asyncio.StreamWriter) -> None:
        self.s, self.r, self.w = server, r, w
        self.attack = server.attack

    def caps(self, tls: bool) -> bytes:
        caps = b"IMAP4rev1 LITERAL+ UIDPLUS ENABLE"
        if self.attack == "inject-folder":
            caps += b" UTF8=ACCEPT"
        if self.s.tls is not None and not tls and self.attack != "no-starttls":
            caps += b" STARTTLS"
        if self.attack == "starttls-caps":
            caps += b" X-AFTER-TLS" if tls else b" X-BEFORE-TLS"
        if self.attack == "login-disabled":
            caps += b" LOGINDISABLED AUTH=PLAIN"
        return caps

    def send(self, *parts: bytes) -> None:
        self.w.write(b"".join(parts))

    async def run(self) -> None:
        self.s.connections += 1
        tls = False
        self.send(b"* OK [CAPABILITY ", self.caps(tls), b"] hostile IMAP ready\r\n")
        await self.w.drain()
        while True:
            line = await self.read_command()
            if line is None:
                return
            tag, _, rest = line.partition(b" ")
            verb = rest.split(b" ", 1)[0].upper()
            args = rest[len(verb) + 1:]
            if verb == b"UID":
                verb = b"UID " + args.split(b" ", 1)[0].upper()
                args = args.split(b" ", 1)[1] if b" " in args else b""
            if verb == b"LOGOUT":
                self.send(b"* BYE bye\r\n", tag, b" OK LOGOUT done\r\n")
                await self.w.drain()
                return
            if verb == b"STARTTLS" and self.s.tls is not None and not tls:
                self.send(tag, b" OK begin TLS\r\n")
                await self.w.drain()
                await self.w.start_tls(self.s.tls)
                tls = True
                continue
            if verb == b"LOGIN" and self.s.attack == "echo-login":
                self.send(tag, b" NO [AUTHENTICATIONFAILED] LOGIN ", args, b" rejected\r\n")
                await self.w.drain()
                continue
            if verb == b"LOGIN" and self.s.attack == "unavailable-once" and not self.s.refused_logins:
                self.s.refused_logins += 1
                self.send(tag, b" NO [UNAVAILABLE] Temporary authentication failure.\r\n")
                await self.w.drain()
                continue
            if self.s.attack == "login-disabled" and verb in (b"LOGIN", b"AUTHENTICATE"):
                await self.login_disabled(tag, verb, args)
                continue
            if verb == b"CAPABILITY":
                self.send(b"* CAPABILITY ", self.caps(tls), b"\r\n")
            elif verb == b"LIST" and await self.list():
                return
            elif verb == b"STATUS":
                name = args.rsplit(b" (", 1)[0]
                self.send(b"* STATUS ", name, b" (MESSAGES 1 UIDNEXT 2 UIDVALIDITY 7)\r\n")
            elif verb in (b"EXAMINE", b"SELECT") and self.s.attack == "serverbug-once" \
                    and not self.s.refused_selects:
                self.s.refused_selects += 1
                self.send(tag, b" NO [SERVERBUG] Internal error occurred. Refer to server log "
                          b"for more information.\r\n")
                await self.w.drain()
                continue
            elif verb in (b"EXAMINE", b"SELECT"):
                self.send(b"* 1 EXISTS\r\n* OK [UIDVALIDITY 7] ok\r\n* OK [UIDNEXT 2] ok\r\n")
            elif verb == b"ENABLE":
                self.send(b"* ENABLED ", args, b"\r\n")
            elif verb == b"UID FETCH" and await self.fetch(args):
                return
            self.send(tag, b" OK ", verb, b" done\r\n")
            await self.w.drain()

    async def login_disabled(self, tag: bytes, verb: bytes, args: bytes) -> None:
        """Refuse LOGIN; accept AUTHENTICATE PLAIN (asking for the response if not sent)."""
        if verb == b"LOGIN":
            self.send(tag, b" NO [PRIVACYREQUIRED] LOGIN is disabled on this connection\r\n")
        elif args.upper().split(b" ")[0] != b"PLAIN":
            self.send(tag, b" NO [CANNOT] only PLAIN\r\n")
        else:
            if b" " not in args.strip():  # no initial response: ask for it
                self.send(b"+ \r\n")
                await self.w.drain()
                self.s.lines.append((await self.r.readline()).rstrip(b"\r\n"))
            self.send(tag, b" OK authenticated\r\n")
        await self.w.drain()

    async def read_command(self) -> bytes | None:
        """One command line (literals inlined as they came); None at the end."""
        line = await self.r.readline()
        if not line:
            return None
        whole = line.rstrip(b"\r\n")
        self.s.lines.append(whole)
        while (m := _LITERAL.search(whole)) is not None:
            if not m.group(2):
                self.send(b"+ go on\r\n")
                await self.w.drain()
            data = await self.r.readexactly(int(m.group(1)))
            rest = (await self.r.readline()).rstrip(b"\r\n")
            self.s.lines.append(rest)
            whole = whole + data + rest
        return whole

    async def list(self) -> bool:
        """Answer LIST; True when the attack keeps the connection busy for good."""
        a = self.attack
        if a == "list-flood":
            await self.flood(lambda n: b'* LIST () "/" f%d\r\n' % n)
            return True
        self.send(b'* LIST (\\HasNoChildren) "/" INBOX\r\n')
        if a == "bad-quoted":
            self.send(b'* LIST () "/" "Broken\\\r\n')  # the line ends inside an escape
        if a == "inject-folder":
            self.send(b'* LIST () "/" {%d}\r\n' % len(INJECTED), INJECTED, b"\r\n")
            self.send(b'* LIST (\\Noselect) "/" {%d}\r\n' % len(INJECTED_NOSELECT),
                      INJECTED_NOSELECT, b"\r\n")
            self.send(b'* LIST () "/" ..\r\n')
        return False

    async def fetch(self, args: bytes) -> bool:
        """Answer UID FETCH; True when the attack keeps the connection busy for good."""
        a = self.attack
        size = len(MESSAGE)
        if b"BODY.PEEK[]" in args.upper():
            if a == "huge-literal":
                self.send(b"* 1 FETCH (UID 1 BODY[] {3000000000}\r\n", MESSAGE)
                await self.w.drain()
                await asyncio.sleep(3600)
                return True
            if a == "oversize-body":
                n = self.s.body_bytes
                self.send(b"* 1 FETCH (UID 1 FLAGS () INTERNALDATE ", _DATE,
                          b" BODY[] {%d}\r\n" % n)
                chunk = MESSAGE + b"x" * (65536 - len(MESSAGE))
                sent = 0
                while sent < n:
                    part = chunk[: min(len(chunk), n - sent)]
                    self.send(part)
                    sent += len(part)
                    await self.w.drain()
                self.send(b")\r\n")
                return False
            self.send(b"* 1 FETCH (UID 1 FLAGS () INTERNALDATE ", _DATE,
                      b" BODY[] {%d}\r\n" % size, MESSAGE, b")\r\n")
            return False
        if b"HEADER.FIELDS" in args.upper():
            head = MESSAGE.split(b"\r\n\r\n")[0] + b"\r\n\r\n"
            self.send(b"* 1 FETCH (UID 1 BODY[HEADER.FIELDS (SUBJECT)] {%d}\r\n" % len(head),
                      head, b")\r\n")
            return False
        if a == "fetch-flood":
            await self.flood(lambda n: b"* %d FETCH (UID %d RFC822.SIZE 86 FLAGS ())\r\n"
                             % (n, n))
            return True
        if a == "drip":
            while True:
                self.send(b"* OK still counting\r\n")
                await self.w.drain()
                await asyncio.sleep(self.s.drip_every)
        if a == "deep-parens":
            self.send(b"* 1 FETCH (UID 1 FLAGS ", b"(" * 20000, b")" * 20000, b")\r\n")
            return False
        uid = b"abc" if a == "bad-uid" else b"1"
        self.send(b"* 1 FETCH (UID ", uid, b" RFC822.SIZE %d FLAGS () INTERNALDATE " % size,
                  _DATE, b")\r\n")
        return False

    async def flood(self, line: Callable[[int], bytes]) -> None:
        """Send untagged lines made by ``line(n)`` until the client goes away."""
        n = 1
        while True:
            self.send(b"".join(line(i) for i in range(n, n + 1000)))
            n += 1000
            await self.w.drain()


def main(argv: list[str] | None = None) -> None:
    """Run one hostile server until interrupted; print its port."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--attack", choices=ATTACKS, default="none")
    ap.add_argument("--cert", type=Path)
    ap.add_argument("--key", type=Path)
    args = ap.parse_args(argv)
    with HostileImap(args.attack, cert=args.cert, key=args.key) as srv:
        print(f"hostile IMAP ({args.attack}) on 127.0.0.1:{srv.port}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(3600)


if __name__ == "__main__":
    main()
