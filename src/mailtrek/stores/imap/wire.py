"""IMAP wire format: parse server responses, quote command arguments.

A response arrives as a list of chunks: text lines (without CRLF) and the literals
that followed a ``{n}`` or ``~{n}`` marker. ``parse`` turns them into nested Python
values: ``bytes`` for atoms and strings, ``None`` for NIL, ``list`` for parenthesised
lists, ``bytes``/``bytearray`` for literal data (never copied). Atoms keep their ``[section]`` part, so
``BODY[HEADER.FIELDS (DATE)]`` is one atom.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

from mailtrek.errors import ProtocolError
from mailtrek.model import has_line_break

LITERAL_AT_END = re.compile(rb"~?\{(\d+)\+?\}$")


class MalformedResponse(ProtocolError):
    """A response IMAP's grammar does not allow (the store names the server and command)."""


class OversizedLiteral:
    """Stands for a literal that was read past, not kept: it was bigger than allowed.

    ``size`` is how many bytes the server sent. A body FETCH gets one of these instead
    of a message over ``--max-size``, so the message is skipped without being held.
    """

    __slots__ = ("size",)

    def __init__(self, size: int) -> None:
        self.size = size

    def __repr__(self) -> str:
        return f"OversizedLiteral({self.size})"


# A response's pieces: its text lines, and the literals between them (kept or read past).
Chunk = bytes | bytearray | OversizedLiteral


@dataclass(slots=True)
class Response:
    """One complete server response (untagged, continuation or tagged)."""

    chunks: list[Chunk]  # text line, literal, text line, literal, ...

    @property
    def head(self) -> bytes:
        return _text(self.chunks[0])


class _Reader:
    """Cursor over a response's chunks for the parser."""

    __slots__ = ("chunks", "i", "pos", "text")

    def __init__(self, chunks: list[Chunk], start: int = 0) -> None:
        self.chunks = chunks
        self.i = 0
        self.text = _text(chunks[0])
        self.pos = start

    def peek(self) -> int | None:
        if self.pos < len(self.text):
            return self.text[self.pos]
        return None

    def skip_spaces(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] == 0x20:
            self.pos += 1

    def more_chunks(self) -> bool:
        return self.i + 1 < len(self.chunks)

    def next_literal(self) -> object:
        lit = self.chunks[self.i + 1]
        self.i += 2
        self.text = _text(self.chunks[self.i]) if self.i < len(self.chunks) else b""
        self.pos = 0
        return lit

    def quoted(self) -> bytes:
        """Read a quoted string whose opening quote is at ``pos``."""
        t = self.text
        end = len(t)
        pos = self.pos + 1
        buf = bytearray()
        while pos < end:
            ch = t[pos]
            if ch == 0x5C:  # backslash: the next byte is taken as is
                if pos + 1 >= end:
                    break
                buf.append(t[pos + 1])
                pos += 2
                continue
            if ch == 0x22:
                self.pos = pos + 1
                return bytes(buf)
            buf.append(ch)
            pos += 1
        raise MalformedResponse("unterminated quoted string in response")

    def atom(self) -> bytes:
        """Read an atom (keeping a ``[section]`` with its spaces and parentheses)."""
        t = self.text
        start = pos = self.pos
        depth = 0
        while pos < len(t):
            ch = t[pos]
            if ch == 0x5B:  # [
                depth += 1
            elif ch == 0x5D:  # ]
                depth -= 1
            elif depth <= 0 and ch in _ATOM_END:
                break
            pos += 1
        if pos == start:  # no progress: a byte no value can start with
            raise MalformedResponse(f"unexpected byte {t[pos:pos + 1]!r} in response")
        self.pos = pos
        return t[start:pos]


_ATOM_END = b" ()\r\n"
MAX_DEPTH = 256  # nesting of parenthesised lists; IMAP's deepest (BODYSTRUCTURE) stays far below


def _text(chunk: Chunk) -> bytes:
    return b"" if isinstance(chunk, OversizedLiteral) else bytes(chunk)


def parse_values(chunks: list[Chunk], start: int = 0) -> list[object]:
    """Parse every value of a response, from byte ``start`` of its first line.

    Iterative (an explicit stack), so no nesting depth reaches Python's recursion limit;
    lists nested deeper than ``MAX_DEPTH``, unbalanced parentheses, unterminated strings
    and stray bytes raise ProtocolError. Never raises anything else.
    """
    r = _Reader(chunks, start)
    top: list[object] = []
    stack: list[list[object]] = [top]
    while True:
        r.skip_spaces()
        c = r.peek()
        if c is None:
            if len(stack) > 1:
                if r.more_chunks():  # a literal follows the end of this text chunk
                    raise MalformedResponse("unexpected literal position in response")
                raise MalformedResponse("unterminated list in response")
            return top  # (a literal right after a line's end, without marker: rare form)
        if c == 0x28:  # (
            if len(stack) > MAX_DEPTH:
                raise MalformedResponse(f"response nests lists deeper than {MAX_DEPTH} levels")
            r.pos += 1
            inner: list[object] = []
            stack[-1].append(inner)
            stack.append(inner)
        elif c == 0x29:  # )
            if len(stack) == 1:
                raise MalformedResponse("unbalanced ')' in response")
            r.pos += 1
            stack.pop()
        elif c == 0x22:  # "
            stack[-1].append(r.quoted())
        elif c in (0x7B, 0x7E) and _literal_here(r):  # { or ~ : literal marker ends the chunk
            stack[-1].append(r.next_literal())  # bytes or bytearray; never copied (big messages)
        else:
            atom = r.atom()
            stack[-1].append(None if atom.upper() == b"NIL" else atom)


def _literal_here(r: _Reader) -> bool:
    m = LITERAL_AT_END.search(r.text, r.pos)
    return m is not None and m.start() == r.pos and r.more_chunks()


def parse_untagged(resp: Response) -> tuple[bytes, list[object]]:
    """Split ``* NAME args`` or ``* N NAME args`` into (NAME, values).

    For ``* N FETCH (...)`` / ``* N EXISTS`` the number is the first value.
    For status responses (OK/NO/BAD/BYE/PREAUTH) values are ``[code, text]``.
    """
    head = resp.head
    # "* " prefix
    rest = head[2:]
    word, _, tail = rest.partition(b" ")
    if word.isdigit():
        name, _, tail2 = tail.partition(b" ")
        offset = 2 + len(word) + 1 + len(name) + 1
        vals = parse_values(resp.chunks, offset) if tail2 or len(resp.chunks) > 1 else []
        return name.upper(), [int(word), *vals]
    name = word.upper()
    if name in (b"OK", b"NO", b"BAD", b"BYE", b"PREAUTH"):
        code, text = split_code(tail)
        return name, [code, text]
    offset = 2 + len(word) + 1
    if offset > len(head):
        return name, []
    return name, parse_values(resp.chunks, offset)


def split_code(text: bytes) -> tuple[bytes | None, bytes]:
    """Split ``[CODE args] human text`` into (b"CODE args", b"human text")."""
    text = text.strip()
    if text.startswith(b"["):
        end = text.find(b"]")
        if end > 0:
            return text[1:end], text[end + 1 :].strip()
    return None, text


def fetch_items(values: list[object]) -> dict[bytes, object]:
    """Turn a FETCH response's item list into {UPPER-KEY: value}.

    Section keys are normalised: ``BODY[]`` and ``BINARY[]`` keep their section text.
    """
    if not values or not isinstance(values[-1], list):
        raise MalformedResponse("malformed FETCH response")
    items = values[-1]
    out: dict[bytes, object] = {}
    for k in range(0, len(items) - 1, 2):
        key = items[k]
        if isinstance(key, bytes):
            key = key.upper()
            # "BODY[HEADER.FIELDS (X)]<0>" -> strip origin octet
            if key.endswith(b">") and b"<" in key:
                key = key[: key.rindex(b"<")]
            out[key] = items[k + 1]
    return out


# -- encoding ----------------------------------------------------------------

_SAFE_ATOM = re.compile(rb"^[!#$&'+-\[^-z|}~]+$")


def quote(value: bytes) -> bytes:
    """Quote a string argument (mailbox names, dates, search strings).

    Raises ProtocolError for CR, LF or NUL: a quoted string cannot hold them, and sent
    raw they would end the command and start another (a folder named
    ``x\\r\\nA1 DELETE INBOX`` must never reach a server as a line of its own).
    """
    if has_line_break(value):
        raise ProtocolError(f"refusing to send {value[:60]!r} as a quoted string: it holds "
                            "CR, LF or NUL")
    return b'"' + value.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def number(value: object, what: str) -> int:
    """Return ``value`` (an atom from a response) as a non-negative int.

    Raises ProtocolError naming ``what`` when it is not a plain decimal number.
    """
    if isinstance(value, (bytes, bytearray)) and value.isdigit() and len(value) <= 20:
        return int(value)
    shown = repr(value)[:40] if isinstance(value, (bytes, bytearray, type(None))) else "a list"
    raise MalformedResponse(f"{what} is not a number: {shown}")


def needs_literal(value: bytes) -> bool:
    """True when a string cannot travel as a quoted string (CR, LF, 8-bit or NUL)."""
    return any(b in (0, 10, 13) or b > 127 for b in value)


_MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


def format_internaldate(dt: datetime) -> bytes:
    """Format an INTERNALDATE (``"14-Mar-2019 09:26:53 -0500"``) keeping its zone."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    off = dt.utcoffset() or timedelta(0)
    total = int(off.total_seconds()) // 60
    sign = "+" if total >= 0 else "-"
    total = abs(total)
    s = (
        f"{dt.day:02d}-{_MONTHS[dt.month - 1]}-{dt.year:04d} "
        f"{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d} {sign}{total // 60:02d}{total % 60:02d}"
    )
    return s.encode()


def parse_internaldate(value: bytes) -> datetime:
    """Parse an INTERNALDATE string into an aware datetime."""
    try:
        text = value.decode().strip()
        date_part, time_part, zone = text.split()
        day, mon, year = date_part.split("-")
        hh, mm, ss = (int(x) for x in time_part.split(":"))
        sign = -1 if zone[0] == "-" else 1
        off = timedelta(hours=int(zone[1:3]), minutes=int(zone[3:5])) * sign
        return datetime(int(year), _MONTHS.index(mon.capitalize()) + 1, int(day), hh, mm, ss,
                        tzinfo=timezone(off))
    except (ValueError, IndexError, OverflowError) as e:
        raise MalformedResponse(f"bad INTERNALDATE {value[:60]!r}") from e
