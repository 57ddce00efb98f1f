"""A small IMAP front that makes a Dovecot mailbox answer like Exchange Online, for tests.

Dovecot stays the real server: every command it accepts is stored by it. The front only
adds the behaviours Exchange Online's IMAP is documented or reported to have
(research/m365.md, section B; "FAQ" below is imapsync's FAQ.Office365.txt):
- CAPABILITY lists only what outlook.office365.com announces (no MULTIAPPEND, CONDSTORE,
  BINARY, ENABLE...; seen in public client logs);
- ``APPEND`` of a message with a line longer than ``max_line`` octets (about 10,500) is
  answered ``BAD Command Argument Error 11`` (FAQ);
- ``APPEND`` above ``max_size`` (the mailbox's MaxReceiveSize) is answered ``NO Maximum
  size of appendable message has been exceeded`` (FAQ);
- ``CREATE``/``RENAME`` to ``Files`` (any case) is answered ``NO Folder name is
  reserved`` (FAQ: a hidden system folder);
- \\Flagged given with APPEND is dropped ("forgotten by other protocols", FAQ);
- throttling: more than ``throttle_limit`` commands within ``throttle_window`` seconds
  (per mailbox, all connections) is answered ``BAD Request is throttled. Suggested
  Backoff Time: <ms> milliseconds`` and the connection is closed (FAQ); until the
  back-off has passed every command, LOGIN included, gets the same answer and a close
  (an assumption: Microsoft documents neither the thresholds nor this);
- after ``max_errors`` (10) NO/BAD answers on one connection: ``* BYE`` and close
  ("Office365 closes the connection after 10 errors", FAQ);
- ``poison``: an APPEND whose message contains these bytes gets ``BAD Command Argument
  Error 11`` (Exchange's catch-all refusal: too large, over quota, ...), for tests.

One front serves any number of connections to one backend port.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections import deque
from collections.abc import Coroutine
from typing import Any

from mailtrek.devtools.imap_front import ImapFront, unquote
from mailtrek.stores.imap.exchange import longest_line

EXCHANGE_MAX_LINE = 10_500  # "lines over ~10,500 chars" (FAQ)
EXCHANGE_BACKOFF_MS = 299_961  # the FAQ's example answer
EXCHANGE_MAX_ERRORS = 10  # FAQ
# outlook.office365.com after login (IMAP4 IMAP4rev1 AUTH=PLAIN AUTH=XOAUTH2 SASL-IR
# UIDPLUS MOVE ID UNSELECT CHILDREN IDLE NAMESPACE LITERAL+, plus internal names).
_CAPS = {b"IMAP4", b"IMAP4REV1", b"SASL-IR", b"UIDPLUS", b"MOVE", b"ID", b"UNSELECT",
         b"CHILDREN", b"IDLE", b"NAMESPACE", b"LITERAL+", b"STARTTLS", b"LOGINDISABLED"}
_LITERAL = re.compile(rb"\{(\d+)(\+?)\}\r\n$")
_CAPLIST = re.compile(rb"(CAPABILITY )([^\]\r\n]*)", re.I)
_FLAGGED = re.compile(rb"\\Flagged ?", re.I)
_RESERVED = {b"files"}


class ExchangeFront(ImapFront):
    """An asyncio TCP front on 127.0.0.1 before a plain-IMAP Dovecot port."""

    def __init__(self, host: str, port: int, *, max_line: int = EXCHANGE_MAX_LINE,
                 max_size: int | None = None, throttle_limit: int | None = None,
                 throttle_window: float = 60.0, backoff_ms: int = EXCHANGE_BACKOFF_MS,
                 throttle_trips: int | None = None, max_errors: int = EXCHANGE_MAX_ERRORS,
                 poison: bytes | None = None) -> None:
        super().__init__(host, port)
        self.max_line, self.max_size = max_line, max_size
        self.throttle_limit, self.throttle_window = throttle_limit, throttle_window
        self.backoff_ms, self.throttle_trips = backoff_ms, throttle_trips
        self.max_errors, self.poison = max_errors, poison
        # What the front did, for tests to check.
        self.appends = 0  # APPENDs passed to the backend
        self.long_lines = 0  # APPENDs refused for a long line
        self.too_big = 0  # APPENDs refused for size
        self.poisoned = 0
        self.reserved = 0  # CREATE/RENAME refused for a reserved name
        self.flagged_dropped = 0
        self.throttled = 0  # throttling answers (trips and refusals during back-off)
        self.trips = 0
        self.byes = 0  # connections closed for too many errors
        self._recent: deque[float] = deque()
        self._blocked_until = 0.0

    def _relays(self, creader: asyncio.StreamReader, cwriter: asyncio.StreamWriter,
                sreader: asyncio.StreamReader, swriter: asyncio.StreamWriter
                ) -> tuple[Coroutine[Any, Any, None], Coroutine[Any, Any, None]]:
        s = _Session(cwriter)
        return self._client_to_server(creader, swriter, s), self._server_to_client(sreader, s)

    async def _client_to_server(self, reader: asyncio.StreamReader,
                                server: asyncio.StreamWriter, s: _Session) -> None:
        while not s.closed:
            parts = await _read_command(reader, s.client)
            if parts is None:
                return
            head = parts[0]
            words = head.split(b" ", 3)
            if len(words) < 2 or not words[0] or s.closed:  # SASL answer, DONE: not a command
                server.write(b"".join(parts))
                await server.drain()
                continue
            tag, name = words[0], words[1].upper()
            if name != b"LOGOUT" and self._throttle():
                remaining = max(1, int((self._blocked_until - time.monotonic()) * 1000))
                self.throttled += 1
                await s.answer(tag + b" BAD Request is throttled. Suggested Backoff Time: "
                               + str(remaining).encode() + b" milliseconds")
                s.closed = True
                return
            refusal = self._refusal(name, words, parts)
            if refusal is not None:
                await s.answer(tag + b" " + refusal)
                if await self._count_error(s):
                    return
                continue
            if name == b"APPEND":
                self.appends += 1
                flags_end = parts[0].find(b")")
                if flags_end > 0 and _FLAGGED.search(parts[0][:flags_end]):
                    self.flagged_dropped += 1
                    parts[0] = _FLAGGED.sub(b"", parts[0][:flags_end]) + parts[0][flags_end:]
            # Literals were collected (and "+" sent) here: pass them on non-synchronizing.
            server.write(b"".join(_LITERAL.sub(rb"{\1+}\r\n", p) if i % 2 == 0 else p
                                  for i, p in enumerate(parts)))
            await server.drain()

    def _refusal(self, name: bytes, words: list[bytes], parts: list[bytes]) -> bytes | None:
        """Exchange's own answer to a command it refuses, or None to pass it on."""
        if name in (b"CREATE", b"RENAME"):
            target = words[-1] if name == b"CREATE" else words[-1].rsplit(b" ", 1)[-1]
            if unquote(target.rstrip(b"\r\n")).lower() in _RESERVED:
                self.reserved += 1
                return b"NO Folder name is reserved."
        if name != b"APPEND":
            return None
        if len(parts) != 3:  # no MULTIAPPEND on Exchange
            return b"BAD Command Argument Error 11"
        data = parts[1]
        if self.max_size is not None and len(data) > self.max_size:
            self.too_big += 1
            return b"NO Maximum size of appendable message has been exceeded."
        if longest_line(data) > self.max_line:
            self.long_lines += 1
            return b"BAD Command Argument Error 11"
        if self.poison is not None and self.poison in data:
            self.poisoned += 1
            return b"BAD Command Argument Error 11"
        return None

    def _throttle(self) -> bool:
        """Count one command; True when it must get the throttling answer."""
        now = time.monotonic()
        if now < self._blocked_until:
            return True
        if self.throttle_limit is None:
            return False
        if self.throttle_trips is not None and self.trips >= self.throttle_trips:
            return False
        self._recent.append(now)
        while self._recent and self._recent[0] < now - self.throttle_window:
            self._recent.popleft()
        if len(self._recent) <= self.throttle_limit:
            return False
        self.trips += 1
        self._recent.clear()
        self._blocked_until = now + self.backoff_ms / 1000
        return True

    async def _count_error(self, s: _Session) -> bool:
        """Count a NO/BAD answer; at the limit say BYE and end the session (True)."""
        s.errors += 1
        if s.errors < self.max_errors or s.closed:
            return False
        self.byes += 1
        await s.answer(b"* BYE Connection closed after too many errors.")
        s.closed = True
        return True

    async def _server_to_client(self, reader: asyncio.StreamReader, s: _Session) -> None:
        while not s.closed:
            line = await reader.readline()
            if not line:
                return
            parts = [line]
            while (lit := _LITERAL.search(parts[-1])) is not None:
                parts.append(await reader.readexactly(int(lit.group(1))))
                parts.append(await reader.readline())
            whole = b"".join(parts)
            if b"CAPABILITY " in line.upper():
                whole = _CAPLIST.sub(_exchange_caps, line, count=1) + whole[len(line):]
            if s.closed:
                return
            await s.answer(whole.rstrip(b"\r\n"))
            status = line.split(b" ", 2)[1:2]
            if not line.startswith((b"*", b"+")) and status and status[0].upper() in (
                    b"NO", b"BAD") and await self._count_error(s):
                return


class _Session:
    __slots__ = ("client", "closed", "errors")

    def __init__(self, client: asyncio.StreamWriter) -> None:
        self.client = client
        self.errors = 0
        self.closed = False

    async def answer(self, response: bytes) -> None:
        """Send one whole response (CRLF added); never interleaved with another."""
        self.client.write(response + b"\r\n")
        with contextlib.suppress(ConnectionError):
            await self.client.drain()


async def _read_command(reader: asyncio.StreamReader, client: asyncio.StreamWriter
                        ) -> list[bytes] | None:
    """Read one command with its literals: [line, literal, line, literal, ..., line]."""
    line = await reader.readline()
    if not line:
        return None
    parts = [line]
    while (lit := _LITERAL.search(parts[-1])) is not None:
        if not lit.group(2):  # synchronizing literal: Exchange's continuation
            client.write(b"+ Ready for additional command text.\r\n")
            await client.drain()
        parts.append(await reader.readexactly(int(lit.group(1))))
        parts.append(await reader.readline())
    return parts


def _exchange_caps(m: re.Match[bytes]) -> bytes:
    keep = [c for c in m.group(2).split()
            if c.upper() in _CAPS or c.upper().startswith(b"AUTH=")]
    return m.group(1) + b" ".join(keep)

