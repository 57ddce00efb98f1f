"""Typed IMAP verbs over ``ImapConnection``: commands built here, answers parsed here.

Two layers. ``Command`` values (``select``, ``uid_fetch``, ``uid_store``, ``status``,
``create``, ``list_all``, ``namespace``, ``noop``, ``unselect``) are ready-to-send lines
with the untagged responses they collect, for callers that pipeline several at once
(``ImapConnection.send_many``); the parsers (``listing``, ``status_values``,
``fetch_responses``, ``namespace_of``) turn a ``Result`` into typed values. The async
verbs (``list_mailboxes``, ``mailbox_status``, ``get_namespace``, ``create_mailbox``)
do one round trip each. Mailbox names arrive encoded (modified UTF-7 or UTF-8) and are
quoted here, never by callers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from mailtrek.errors import ProtocolError, ThrottledError
from mailtrek.stores.imap.connection import THROTTLE_WAIT, ImapConnection, Result
from mailtrek.stores.imap.wire import (
    Response,
    fetch_items,
    number,
    parse_internaldate,
    parse_untagged,
    quote,
)

STATUS_ITEMS = (b"MESSAGES", b"UIDNEXT", b"UIDVALIDITY")
NOT_SELECTABLE = frozenset({b"\\NOSELECT", b"\\NONEXISTENT"})


@dataclass(frozen=True, slots=True)
class Command:
    """One command line and the untagged responses it collects (None: all)."""

    line: bytes
    accepts: tuple[bytes, ...] | None = None

    @property
    def pair(self) -> tuple[bytes, tuple[bytes, ...] | None]:
        """As ``ImapConnection.send_many`` takes it."""
        return self.line, self.accepts


@dataclass(frozen=True, slots=True)
class Mailbox:
    """A ``* LIST`` answer: the encoded name, its attributes (upper case), its delimiter."""

    name: bytes
    attributes: frozenset[bytes]
    delimiter: str | None

    @property
    def selectable(self) -> bool:
        return not (self.attributes & NOT_SELECTABLE)


@dataclass(slots=True)
class Listing:
    """The mailboxes a LIST named, with the STATUS values that came with them."""

    mailboxes: list[Mailbox] = field(default_factory=list)
    statuses: dict[bytes, dict[bytes, int]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Namespace:
    """The first personal namespace: its prefix (``INBOX.``) and delimiter."""

    prefix: bytes
    delimiter: str | None


# -- commands -----------------------------------------------------------------------------
def uid_set(uids: Iterable[int]) -> bytes:
    """Compress UIDs into ranges: [1,2,3,7] -> b"1:3,7"."""
    s = sorted(set(uids))
    out: list[str] = []
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and s[j + 1] == s[j] + 1:
            j += 1
        out.append(str(s[i]) if i == j else f"{s[i]}:{s[j]}")
        i = j + 1
    return ",".join(out).encode()


def select(name: bytes, *, readonly: bool) -> Command:
    """EXAMINE (``readonly``) or SELECT ``name``."""
    return Command((b"EXAMINE " if readonly else b"SELECT ") + quote(name))


def noop() -> Command:
    return Command(b"NOOP", (b"FETCH",))


def unselect(conn: ImapConnection) -> Command:
    """UNSELECT, or CLOSE (which expunges nothing after EXAMINE) where it is missing."""
    return Command(b"UNSELECT" if conn.has("UNSELECT") else b"CLOSE")


def uid_fetch(uids: Sequence[int] | None, items: Sequence[bytes], *,
              changed_since: int | None = None) -> Command:
    """UID FETCH ``items`` of ``uids`` (None: every message), CHANGEDSINCE when given."""
    line = (b"UID FETCH " + (uid_set(uids) if uids is not None else b"1:*")
            + b" (" + b" ".join(items) + b")")
    if changed_since is not None:
        line += b" (CHANGEDSINCE %d)" % changed_since
    return Command(line, (b"FETCH",))


def uid_store(uids: Sequence[int], flags: Iterable[str], *, op: str = "",
              silent: bool = True) -> Command:
    """UID STORE: replace (``op`` "") or add ("+") / remove ("-") ``flags``."""
    if op not in ("", "+", "-"):
        raise ValueError(f"unknown STORE operation {op!r}")
    what = op.encode() + (b"FLAGS.SILENT" if silent else b"FLAGS")
    flag_list = b" ".join(f.encode() for f in flags)
    return Command(b"UID STORE " + uid_set(uids) + b" " + what + b" (" + flag_list + b")",
                   (b"FETCH",))


def status(name: bytes, items: Sequence[bytes] = STATUS_ITEMS) -> Command:
    return Command(b"STATUS " + quote(name) + b" (" + b" ".join(items) + b")", (b"STATUS",))


def create(name: bytes, *, use: str | None = None) -> Command:
    """CREATE ``name``, with ``(USE (\\Sent))`` (RFC 6154) when ``use`` is given."""
    line = b"CREATE " + quote(name)
    if use is not None:
        line += b" (USE (" + use.encode() + b"))"
    return Command(line)


def namespace() -> Command:
    return Command(b"NAMESPACE", (b"NAMESPACE",))


def list_all(conn: ImapConnection, *, status_items: Sequence[bytes] = (),
             special_use: bool = False) -> Command:
    """LIST every mailbox, asking for SPECIAL-USE and STATUS in the answer where the
    server offers it (LIST-EXTENDED, LIST-STATUS)."""
    ret = []
    if special_use and conn.has("SPECIAL-USE"):
        ret.append(b"SPECIAL-USE")
    list_status = bool(status_items) and conn.has("LIST-STATUS")
    if list_status:
        ret.append(b"STATUS (" + b" ".join(status_items) + b")")
    line = b'LIST "" "*"'
    if (ret and conn.has("LIST-EXTENDED")) or list_status:
        line += b" RETURN (" + b" ".join(ret) + b")"
    return Command(line, (b"LIST", b"STATUS"))


# -- answers ------------------------------------------------------------------------------
def listing(res: Result) -> Listing:
    """The mailboxes (and any STATUS) of a LIST answer."""
    out = Listing()
    for u in res.untagged:
        name, vals = parse_untagged(u)
        if name == b"LIST" and len(vals) >= 3:
            raw_attrs = vals[0] if isinstance(vals[0], list) else []
            attrs = frozenset(a.upper() for a in raw_attrs if isinstance(a, bytes))
            delim = vals[1].decode() if isinstance(vals[1], bytes) else None
            mbox = vals[2] if isinstance(vals[2], (bytes, bytearray)) else str(vals[2]).encode()
            out.mailboxes.append(Mailbox(bytes(mbox), attrs, delim))
        elif (name == b"STATUS" and vals and isinstance(vals[0], (bytes, bytearray))
              and len(vals) > 1 and isinstance(vals[1], list)):
            out.statuses[bytes(vals[0])] = _status_map(vals[1])
    return out


def status_values(res: Result) -> dict[bytes, int]:
    """The ``{b"UIDNEXT": 7, ...}`` of a STATUS answer ({} when it had none)."""
    values: dict[bytes, int] = {}
    for u in res.untagged:
        name, vals = parse_untagged(u)
        if name == b"STATUS" and len(vals) > 1 and isinstance(vals[1], list):
            values = _status_map(vals[1])
    return values


def namespace_of(res: Result) -> Namespace | None:
    """The first personal namespace of a NAMESPACE answer, else None."""
    for u in res.untagged:
        name, vals = parse_untagged(u)
        if name == b"NAMESPACE" and vals and isinstance(vals[0], list) and vals[0]:
            first = vals[0][0]
            if isinstance(first, list) and len(first) >= 2:
                delim = first[1].decode() if isinstance(first[1], bytes) else None
                return Namespace(bytes(first[0] or b""), delim)
    return None


def fetch_responses(res: Result) -> list[dict[bytes, Any]]:
    """The items of each ``* n FETCH (...)`` in a UID FETCH/STORE answer."""
    return [fetch_of(u) for u in res.untagged]


def fetch_of(resp: Response) -> dict[bytes, Any]:
    """The items of one ``* n FETCH (...)`` response ({} for anything else)."""
    _, vals = parse_untagged(resp)
    return fetch_items(vals[1:]) if len(vals) > 1 else {}


def fetched_uid(items: dict[bytes, Any]) -> int | None:
    """The UID a FETCH response names, else None (an unsolicited flag update)."""
    uid = items.get(b"UID")
    return int(uid) if isinstance(uid, (bytes, bytearray)) and uid.isdigit() else None


def fetched_number(items: dict[bytes, Any], key: bytes) -> int:
    """A numeric item (``UID``, ``RFC822.SIZE``); ProtocolError when garbled."""
    return number(items[key], key.decode())


def fetched_flags(items: dict[bytes, Any]) -> frozenset[str]:
    value = items.get(b"FLAGS")
    if not isinstance(value, list):
        return frozenset()
    return frozenset(v.decode("utf-8", "replace") for v in value if isinstance(v, bytes))


def fetched_date(items: dict[bytes, Any]) -> datetime | None:
    """INTERNALDATE as a datetime (None when absent); ProtocolError when garbled."""
    value = items.get(b"INTERNALDATE")
    if value is None or value == b"":
        return None
    if not isinstance(value, (bytes, bytearray)):
        raise ProtocolError("INTERNALDATE is not a string")
    return parse_internaldate(bytes(value))


def fetched_header(items: dict[bytes, Any]) -> bytes:
    """The ``BODY[HEADER...]`` block of a FETCH response (b"" when absent)."""
    block = next((v for k, v in items.items() if k.startswith(b"BODY[HEADER")), b"")
    return bytes(block) if isinstance(block, (bytes, bytearray)) else b""


def _status_map(vals: list[Any]) -> dict[bytes, int]:
    out = {}
    for i in range(0, len(vals) - 1, 2):
        k, v = vals[i], vals[i + 1]
        if isinstance(k, bytes) and isinstance(v, bytes) and v.isdigit():
            out[k.upper()] = int(v)
    return out


# -- one round trip each --------------------------------------------------------------------
async def run(conn: ImapConnection, cmd: Command) -> Result:
    """Send ``cmd`` and return its answer."""
    [fut] = await conn.send_many([cmd.pair])
    return await fut


async def list_mailboxes(conn: ImapConnection, *, status_items: Sequence[bytes] = (),
                         special_use: bool = False) -> list[Mailbox]:
    """Every mailbox; ProtocolError when LIST is refused."""
    return (await list_with_status(conn, status_items=status_items,
                                   special_use=special_use)).mailboxes


async def list_with_status(conn: ImapConnection, *, status_items: Sequence[bytes] = (),
                           special_use: bool = False) -> Listing:
    """Every mailbox with ``status_items`` of each selectable one: from LIST-STATUS in the
    same answer where offered, else one STATUS each (pipelined). A name with CR, LF or
    NUL is listed but never sent back: it gets no STATUS. Raises ProtocolError when LIST
    is refused; a throttled STATUS answer comes back as ``ThrottledError`` via ``check``.
    """
    res = await run(conn, list_all(conn, status_items=status_items, special_use=special_use))
    check(res, "LIST")
    found = listing(res)
    if status_items and not conn.has("LIST-STATUS"):
        names = [m.name for m in found.mailboxes if m.selectable
                 and not any(b in m.name for b in b"\r\n\0")]
        answers = await asyncio.gather(*(run(conn, status(n, status_items)) for n in names))
        for n, r in zip(names, answers, strict=True):
            throttle_check(r, "STATUS")
            values = status_values(r)
            if values:
                found.statuses[n] = values
    return found


async def mailbox_status(conn: ImapConnection, name: bytes,
                         items: Sequence[bytes] = STATUS_ITEMS) -> dict[bytes, int]:
    """STATUS of one mailbox; ProtocolError when refused."""
    return status_values(check(await run(conn, status(name, items)), "STATUS"))


async def get_namespace(conn: ImapConnection) -> Namespace | None:
    """The personal namespace, or None when the server has no NAMESPACE."""
    if not conn.has("NAMESPACE"):
        return None
    return namespace_of(await run(conn, namespace()))


async def create_mailbox(conn: ImapConnection, name: bytes, *, use: str | None = None) -> Result:
    """CREATE ``name`` (with its special use where CREATE-SPECIAL-USE is offered; without
    when the server refuses that). Returns the answer: the caller judges a refusal."""
    if use is not None and conn.has("CREATE-SPECIAL-USE"):
        res = await run(conn, create(name, use=use))
        if res.ok:
            return res
    return await run(conn, create(name))


async def create_with_status(conn: ImapConnection, name: bytes, *, use: str | None = None
                             ) -> tuple[Result, dict[bytes, int]]:
    """CREATE ``name`` and STATUS it, pipelined: (CREATE's answer, the STATUS values).

    ``use`` (``\\Sent``) is asked for where CREATE-SPECIAL-USE is offered; when the
    server refuses the name with it, it is created without. A throttled STATUS raises
    ThrottledError; the caller judges the CREATE answer.
    """
    with_use = use is not None and conn.has("CREATE-SPECIAL-USE")
    created, st_fut = await conn.send_many([create(name, use=use if with_use else None).pair,
                                            status(name).pair])
    res = await created
    if not res.ok and with_use:
        st_fut.add_done_callback(lambda f: f.cancelled() or f.exception())
        created, st_fut = await conn.send_many([create(name).pair, status(name).pair])
        res = await created
    return res, status_values(throttle_check(await st_fut, "STATUS"))


def throttle_check(res: Result, what: str) -> Result:
    """Raise ThrottledError (with the server's back-off, if it names one) when throttled."""
    if res.throttled:  # back off and retry (the engine does), do not fail the folder
        raise ThrottledError(f"{what} throttled by the server: {res.describe()}",
                             retry_after=res.retry_after or THROTTLE_WAIT)
    return res


def check(res: Result, what: str) -> Result:
    """``res`` when OK; ThrottledError or ProtocolError otherwise."""
    throttle_check(res, what)
    if not res.ok:
        raise ProtocolError(f"{what} failed: {res.describe()}")
    return res
