"""Readers of one IMAP store share a budget of fetched bytes not yet handed on."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime

import pytest

from mailtrek.devtools.dovecot import DovecotInstance
from mailtrek.model import Message
from mailtrek.stores.imap import store as imap_store
from mailtrek.stores.imap.connection import ConnectParams, Credentials
from mailtrek.stores.imap.store import ImapSettings, ImapStore

MB = 1 << 20


def _big(i: int) -> bytes:
    return (b"From: a@example.com\r\nSubject: big %d\r\nMessage-ID: <big%d@t>\r\n\r\n" % (i, i)
            + (b"%d" % i) * (3 * MB // len(b"%d" % i)) + b"\r\n")


async def test_concurrent_readers_hold_at_most_the_budget(
    dovecot_src: DovecotInstance, src_user: tuple[str, str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(imap_store, "FETCHED_BYTES", 4 * MB)
    user, pw = src_user
    params = ConnectParams(dovecot_src.host, dovecot_src.port, "none")
    writer = ImapStore(ImapSettings(params, Credentials(user, pw), connections=2, readonly=False))
    await writer.connect()
    inbox = await writer.ensure_folder(("INBOX",))
    bodies = [_big(i) for i in range(9)]
    for i, raw in enumerate(bodies):
        await writer.append(inbox, Message(0, raw, frozenset(), datetime(2024, 1, 1 + i, tzinfo=UTC)))
    await writer.close()

    st = ImapStore(ImapSettings(params, Credentials(user, pw), connections=3))
    await st.connect()
    try:
        folder = next(f for f in await st.list_folders() if f.path == ("INBOX",))
        metas = await st.list_messages(folder)
        sizes = {m.uid: m.size for m in metas}
        peak = 0
        got: list[bytes] = []

        async def reader(uids: list[int]) -> None:
            nonlocal peak
            async for m in st.fetch(folder, uids, sizes):
                peak = max(peak, st._fetched.used)
                got.append(m.raw)
                await asyncio.sleep(0.05)  # a consumer waiting for room in its window

        uids = [m.uid for m in metas]
        await asyncio.gather(*(reader(uids[k::3]) for k in range(3)))
    finally:
        await st.close()
    assert sorted(hashlib.sha256(b).digest() for b in got) == sorted(
        hashlib.sha256(b).digest() for b in bodies)
    assert 0 < peak <= 4 * MB + max(sizes.values())  # over it only by one command alone
    assert st._fetched.used == 0
