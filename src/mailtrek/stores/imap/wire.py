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

LITERAL_AT_END = re.compile(rb"~?\{(\d+)\+?\}$")


@dataclass(slots=True)
class Response:
    """One complete server response (untagged, continuation or tagged)."""

    chunks: list[bytes | bytearray]  # text line, literal, text line, literal, ...

    @property
    def head(self) -> bytes:
        return bytes(self.chunks[0])


class _Reader:
    """Cursor over a response's chunks for the recursive-descent parser."""

    __slots__ = ("chunks", "i", "pos", "text")

    def __init__(self, chunks: list[bytes | bytearray], start: int = 0) -> None:
        self.chunks = chunks
        self.i = 0
        self.text = bytes(chunks[0])
        self.pos = start

    def peek(self) -> int | None:
        if self.pos < len(self.text):
            return self.text[self.pos]
        return None

    def skip_spaces(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] == 0x20:
            self.pos += 1

    def at_end(self) -> bool:
        self.skip_spaces()
        return self.pos >= len(self.text) and self.i + 1 >= len(self.chunks)

    def next_literal(self) -> bytes | bytearray:
        lit = self.chunks[self.i + 1]
        self.i += 2
        self.text = bytes(self.chunks[self.i]) if self.i < len(self.chunks) else b""
        self.pos = 0
        return lit


_ATOM_END = b" ()\r\n"


def _parse_value(r: _Reader) -> object:
    r.skip_spaces()
    c = r.peek()
    if c is None:
        if r.i + 1 < len(r.chunks):  # a literal follows the end of this text chunk
            raise ProtocolError("unexpected literal position")
        raise ProtocolError("unexpected end of response")
    if c == 0x28:  # (
        r.pos += 1
        out: list[object] = []
        while True:
            r.skip_spaces()
            c = r.peek()
            if c == 0x29:  # )
                r.pos += 1
                return out
            if c is None and r.i + 1 >= len(r.chunks):
                raise ProtocolError("unterminated list in response")
            out.append(_parse_value(r))
    if c == 0x22:  # "
        r.pos += 1
        buf = bytearray()
        t = r.text
        while r.pos < len(t):
            ch = t[r.pos]
            if ch == 0x5C:  # backslash
                buf.append(t[r.pos + 1])
                r.pos += 2
                continue
            if ch == 0x22:
                r.pos += 1
                return bytes(buf)
            buf.append(ch)
            r.pos += 1
        raise ProtocolError("unterminated quoted string")
    if c in (0x7B, 0x7E):  # { or ~ : literal marker at end of this chunk
        m = LITERAL_AT_END.search(r.text, r.pos)
        if m and m.start() == r.pos:
            return r.next_literal()  # bytes or bytearray; never copied (big messages)
    # atom (may contain [section] with spaces and parens)
    start = r.pos
    t = r.text
    depth = 0
    while r.pos < len(t):
        ch = t[r.pos]
        if ch == 0x5B:  # [
            depth += 1
        elif ch == 0x5D:  # ]
            depth -= 1
        elif depth <= 0 and ch in _ATOM_END:
            break
        r.pos += 1
    atom = t[start : r.pos]
    if atom.upper() == b"NIL":
        return None
    return atom


def parse_values(chunks: list[bytes | bytearray], start: int = 0) -> list[object]:
    """Parse every value of a response, from byte ``start`` of its first line."""
    r = _Reader(chunks, start)
    out = []
    while not r.at_end():
        if r.peek() is None:  # a literal right after a line's end (rare form)
            break
        out.append(_parse_value(r))
    return out


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
        raise ProtocolError("malformed FETCH response")
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
    """Quote a string argument (mailbox names, dates, search strings)."""
    return b'"' + value.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


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
    except (ValueError, IndexError) as e:
        raise ProtocolError(f"bad INTERNALDATE {value!r}") from e
