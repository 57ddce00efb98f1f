"""A small IMAP front that makes a Dovecot mailbox answer like Gmail, for tests.

It passes every byte through, except:
- CAPABILITY answers gain ``X-GM-EXT-1``;
- ``UID FETCH ... X-GM-MSGID/X-GM-LABELS`` is sent on as a harmless header fetch and
  its answers rewritten with a message id and the labels, derived from which folders
  hold the message (same header fingerprint and size), the way Gmail's labels are;
- folders named in ``hidden`` vanish from LIST/STATUS (Gmail's "Show in IMAP" off) but
  still show up in X-GM-LABELS;
- ``throttle`` FETCH commands are answered ``NO [THROTTLED]`` (then passed normally).

One front serves one mailbox, whose login it is given to build its label index.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Coroutine, Iterable
from typing import Any

from imapclient import imap_utf7

from mailtrek.devtools.imap_front import ImapFront, unquote
from mailtrek.model import SpecialUse
from mailtrek.stores.registry import open_store
from mailtrek.stores.spec import ImapSpec

_LITERAL = re.compile(rb"\{(\d+)\+?\}\r\n$")
_GM_FETCH = re.compile(rb"^(\S+) UID FETCH (\S+) \(([^)]*X-GM-[^)]*)\)\r\n$", re.I)
_SELECT = re.compile(rb"^(\S+) (SELECT|EXAMINE) (.+)\r\n$", re.I)
_FETCH = re.compile(rb"^(\S+) (UID )?FETCH ", re.I)
_MARK = re.compile(rb"HEADER\.FIELDS \(X-GM-FRONT-(\w+)\)", re.I)
_UID = re.compile(rb"UID (\d+)", re.I)
_SYSTEM = {SpecialUse.INBOX: "\\Inbox", SpecialUse.SENT: "\\Sent",
           SpecialUse.DRAFTS: "\\Draft", SpecialUse.IMPORTANT: "\\Important",
           SpecialUse.FLAGGED: "\\Starred", SpecialUse.TRASH: "\\Trash",
           SpecialUse.JUNK: "\\Spam"}


class GmailFront(ImapFront):
    """An asyncio TCP front on 127.0.0.1 in front of a plain-IMAP Dovecot port."""

    def __init__(self, host: str, port: int, user: str, password: str, *,
                 hidden: Iterable[str] = (), throttle: int = 0) -> None:
        super().__init__(host, port)
        self.user, self._password = user, password
        self.hidden = {h.encode() for h in hidden}
        self.throttle = throttle
        self.gm_fetches = 0  # X-GM FETCH commands answered
        self._index: dict[tuple[bytes, int], tuple[int, list[str]]] | None = None
        self._index_lock = asyncio.Lock()

    # -- the label index (from the backend, over a side connection) ----------------------
    async def index(self) -> dict[tuple[bytes, int], tuple[int, list[str]]]:
        """(mailbox name, uid) -> (X-GM-MSGID, X-GM-LABELS); built once per front."""
        async with self._index_lock:
            if self._index is None:
                self._index = await self._build_index()
            return self._index

    async def _build_index(self) -> dict[tuple[bytes, int], tuple[int, list[str]]]:
        st = open_store(ImapSpec(host=self.host, port=self.backend_port, security="none",
                                 user=self.user, password=self._password, connections=1,
                                 timeout=15))
        await st.connect()
        try:
            where: dict[tuple[str | None, int, int], list[tuple[bytes, int, str | None]]] = {}
            for f in await st.list_folders():
                if not f.selectable:
                    continue
                name = st.mailbox_name(f.path)
                label = _SYSTEM.get(f.special_use) if f.special_use else None
                if label is None and f.special_use is None:
                    label = "/".join(f.path)
                dup: dict[tuple[str | None, int], int] = {}
                for m in sorted(await st.list_messages(f, fingerprints=True), key=lambda x: x.uid):
                    n = dup.get((m.fingerprint, m.size), 0)
                    dup[(m.fingerprint, m.size)] = n + 1
                    where.setdefault((m.fingerprint, m.size, n), []).append((name, m.uid, label))
        finally:
            await st.close()
        out = {}
        for key, places in where.items():
            msgid = int(hashlib.sha256(repr(key).encode()).hexdigest()[:15], 16)
            labels = sorted({lb for _, _, lb in places if lb})
            for name, uid, _ in places:
                out[(name, uid)] = (msgid, labels)
        return out

    # -- the proxy ------------------------------------------------------------------------
    def _relays(self, creader: asyncio.StreamReader, cwriter: asyncio.StreamWriter,
                sreader: asyncio.StreamReader, swriter: asyncio.StreamWriter
                ) -> tuple[Coroutine[Any, Any, None], Coroutine[Any, Any, None]]:
        state = _Session()
        return (self._client_to_server(creader, swriter, cwriter, state),
                self._server_to_client(sreader, cwriter, state))

    async def _client_to_server(self, reader: asyncio.StreamReader,
                                writer: asyncio.StreamWriter, client: asyncio.StreamWriter,
                                state: _Session) -> None:
        while True:
            line = await reader.readline()
            if not line:
                return
            m = _SELECT.match(line)
            if m:
                state.selected = unquote(m.group(3))
            gm = _GM_FETCH.match(line)
            if self.throttle and _FETCH.match(line):
                self.throttle -= 1
                state.throttled.add(line.split(b" ", 1)[0])
                line = line.split(b" ", 1)[0] + b" NOOP\r\n"
            elif gm:
                tag = gm.group(1)
                state.gm_tags[tag] = state.selected or b""
                line = (tag + b" UID FETCH " + gm.group(2)
                        + b" (UID BODY.PEEK[HEADER.FIELDS (X-GM-FRONT-" + tag + b")])\r\n")
            writer.write(line)
            lit = _LITERAL.search(line)
            if lit:
                writer.write(await reader.readexactly(int(lit.group(1))))
            await writer.drain()

    async def _server_to_client(self, reader: asyncio.StreamReader,
                                writer: asyncio.StreamWriter, state: _Session) -> None:
        while True:
            line = await reader.readline()
            if not line:
                return
            parts = [line]
            while (lit := _LITERAL.search(parts[-1])) is not None:
                parts.append(await reader.readexactly(int(lit.group(1))))
                parts.append(await reader.readline())
            whole = b"".join(parts)
            writer.write(await self._rewrite(whole, state))
            await writer.drain()

    async def _rewrite(self, resp: bytes, state: _Session) -> bytes:
        head = resp.split(b"\r\n", 1)[0]
        upper = head.upper()
        if b"CAPABILITY " in upper and b"X-GM-EXT-1" not in upper:
            i = upper.index(b"CAPABILITY ") + len(b"CAPABILITY")
            end = head.find(b"]", i)
            end = len(head) if end < 0 else end
            return head[:end] + b" X-GM-EXT-1" + head[end:] + resp[len(head):]
        if upper.startswith((b"* LIST ", b"* STATUS ")) and self.hidden:
            name = unquote(head.rsplit(b" ", 1)[-1]) if upper.startswith(b"* LIST ") else (
                unquote(head[9:].split(b" (", 1)[0]))
            if name in self.hidden:
                return b""
        mark = _MARK.search(head)
        if mark and upper.startswith(b"* "):
            tag = mark.group(1)
            uid = _UID.search(head)
            folder = state.gm_tags.get(tag, b"")
            if uid is None:
                return b""
            msgid, labels = (await self.index()).get((folder, int(uid.group(1))), (0, []))
            seq = head.split(b" ")[1]
            quoted = b" ".join(_label_atom(x) for x in labels)
            return (b"* " + seq + b" FETCH (UID " + uid.group(1) + b" X-GM-MSGID "
                    + str(msgid).encode() + b" X-GM-LABELS (" + quoted + b"))\r\n")
        tag = head.split(b" ", 1)[0]
        if tag in state.throttled:
            state.throttled.discard(tag)
            return tag + b" NO [THROTTLED] Account exceeded command or bandwidth limits.\r\n"
        if tag in state.gm_tags:
            state.gm_tags.pop(tag)
            self.gm_fetches += 1
        return resp


class _Session:
    __slots__ = ("gm_tags", "selected", "throttled")

    def __init__(self) -> None:
        self.selected: bytes | None = None
        self.gm_tags: dict[bytes, bytes] = {}
        self.throttled: set[bytes] = set()



def _label_atom(label: str) -> bytes:
    """One X-GM-LABELS entry as Gmail sends it: modified UTF-7, quoted."""
    if label.startswith("\\"):
        return label.encode()
    data = imap_utf7.encode(label)
    return b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
