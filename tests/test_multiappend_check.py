"""A server that advertises MULTIAPPEND and loses messages of a batch (as UW-IMAP merges
them): mailtrek notices from APPENDUID, falls back to single APPENDs, and copies all."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from imap_helpers import copy, dump, load, new_user
from mailtrek.devtools.imap_front import ImapFront
from test_copy_dovecot import T0

_APPEND = re.compile(rb"^\S+ APPEND ", re.I)
_LITERAL = re.compile(rb"~?\{(\d+)\+?\}\r\n$")


class LosingMultiappend(ImapFront):
    """Relays to Dovecot, but keeps only the first message of each MULTIAPPEND."""

    lost = 0

    def _relays(self, creader: asyncio.StreamReader, cwriter: asyncio.StreamWriter,
                sreader: asyncio.StreamReader, swriter: asyncio.StreamWriter
                ) -> tuple[Coroutine[Any, Any, None], Coroutine[Any, Any, None]]:
        return self._up(creader, swriter), self._down(sreader, cwriter)

    async def _up(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            lit = _LITERAL.search(line)
            writer.write(line)
            if lit:
                writer.write(await reader.readexactly(int(lit.group(1))))
                if _APPEND.match(line):
                    while (more := await reader.readline()) != b"\r\n":
                        extra = _LITERAL.search(more)
                        if not more or not extra:
                            break
                        await reader.readexactly(int(extra.group(1)))  # dropped
                        LosingMultiappend.lost += 1
                    writer.write(b"\r\n")
            await writer.drain()

    async def _down(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()


async def test_lost_batch_messages_are_noticed_and_copied(dovecot_src, dovecot_dst,
                                                          tmp_path: Path) -> None:
    src, dst = new_user(dovecot_src), new_user(dovecot_dst)
    items = [(("INBOX",), b"Subject: m%d\r\nMessage-ID: <m%d@x>\r\n\r\nbody %d\r\n" % (i, i, i),
              frozenset(), T0) for i in range(40)]
    await load(dovecot_src, *src, items)
    async with LosingMultiappend(dovecot_dst.host, dovecot_dst.port) as front:
        report = await copy((dovecot_src, *src), (dovecot_dst, *dst), tmp_path / "m.db",
                            dst_port=front.port)
    assert LosingMultiappend.lost > 0  # the front did lose messages of a batch
    assert report.complete, (report.errors, [f.error for f in report.folders])
    assert sum(len(v) for v in (await dump(dovecot_dst, *dst)).values()) == len(items)
    assert await dump(dovecot_src, *src) == await dump(dovecot_dst, *dst)
