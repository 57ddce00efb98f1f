"""One behaviour suite for every store that can be both source and destination.

The in-memory store is the reference; real Dovecot must behave the same through
mailtrek's IMAP store (pipelined connection, mUTF-7 names, APPENDUID, flags, dates).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest_asyncio

from imap_helpers import new_user, store
from mailtrek.fingerprint import fingerprint
from mailtrek.model import Message, SpecialUse
from mailtrek.stores.base import FlagChange
from mailtrek.stores.memory import MemoryStore
from mailtrek.sync.mapping import guess_special_use

SERVERS = {"dovecot": "dovecot_dst", "cyrus": "cyrus_server", "courier": "courier_server"}
DATE = datetime(2019, 3, 14, 9, 26, 53, tzinfo=timezone(timedelta(hours=-5)))


@pytest_asyncio.fixture(params=["memory", "dovecot", "cyrus", "courier"], loop_scope="function")
async def mailbox(request) -> AsyncIterator[Any]:  # type: ignore[no-untyped-def]
    if request.param == "memory":
        yield MemoryStore()
        return
    server = request.getfixturevalue(SERVERS[request.param])
    login, pw = new_user(server)
    s = store(server, login, pw, readonly=False)
    await s.connect()
    try:
        yield s
    finally:
        await s.close()


def msg(i: int, **kw: Any) -> Message:
    raw = kw.pop("raw", None) or (b"Subject: m%d\r\nMessage-ID: <m%d@b>\r\n\r\nbody %d\r\n" % (i, i, i))
    return Message(uid=0, raw=raw, flags=kw.pop("flags", frozenset()), internaldate=kw.pop("date", DATE))


async def test_folders_are_created_once_with_unicode_and_nesting(mailbox) -> None:  # type: ignore[no-untyped-def]
    paths = [("Projekte", "Übersicht 2024"), ("Почта", "Входящие"), ("日本語",), ("A & B",),
             ("Reports.2024",)]
    # A name holding the store's separator is renamed by the mapping before it gets here.
    await mailbox.list_folders()  # learns the separator
    paths = [p for p in paths if not any(mailbox.features.delimiter in x for x in p)]
    for p in paths:
        a = await mailbox.ensure_folder(p)
        b = await mailbox.ensure_folder(p)
        assert a.path == b.path == p and a.uidvalidity == b.uidvalidity
    listed = {f.path for f in await mailbox.list_folders()}
    assert set(paths) <= listed


async def test_append_keeps_bytes_flags_keywords_and_date(mailbox) -> None:  # type: ignore[no-untyped-def]
    f = await mailbox.ensure_folder(("Work",))
    raws = [msg(i, flags=frozenset({"\\Seen", "$Forwarded", "Project_X"}) if i % 2 else frozenset())
            for i in range(30)]
    results = await asyncio.gather(*(mailbox.append(f, m) for m in raws))
    assert all(r.ok for r in results)
    ids = [int(r.dest_id) for r in results]
    assert len(set(ids)) == 30
    f = next(x for x in await mailbox.list_folders() if x.path == ("Work",))
    assert f.messages == 30 and f.uidnext == max(ids) + 1
    metas = {m.uid: m for m in await mailbox.list_messages(f, fingerprints=True)}
    got = {m.uid: m async for m in mailbox.fetch(f, sorted(metas))}
    for r, m in zip(results, raws, strict=True):
        uid = int(r.dest_id)
        assert hashlib.sha256(got[uid].raw).digest() == hashlib.sha256(m.raw).digest()
        assert {x for x in got[uid].flags if x != "\\Recent"} == m.flags
        assert got[uid].internaldate == DATE  # the instant, whatever zone comes back
        assert metas[uid].fingerprint == fingerprint(m.raw) and metas[uid].size == len(m.raw)


async def test_set_flags_replaces_and_listing_by_uid(mailbox) -> None:  # type: ignore[no-untyped-def]
    f = await mailbox.ensure_folder(("Flags",))
    r = [await mailbox.append(f, msg(i, flags=frozenset({"\\Seen"}))) for i in range(3)]
    await mailbox.set_flags(f, [FlagChange(r[0].dest_id, frozenset({"\\Flagged", "Later"})),
                                FlagChange(r[1].dest_id, frozenset())])
    listed = {m.uid: m for m in await mailbox.list_messages(f, uids=[int(x.dest_id) for x in r[:2]])}
    assert set(listed) == {int(r[0].dest_id), int(r[1].dest_id)}
    assert {x for x in listed[int(r[0].dest_id)].flags if x != "\\Recent"} == {"\\Flagged", "Later"}
    assert {x for x in listed[int(r[1].dest_id)].flags if x != "\\Recent"} == set()


async def test_fetch_leaves_out_unknown_uids_and_handles_big_messages(mailbox) -> None:  # type: ignore[no-untyped-def]
    f = await mailbox.ensure_folder(("Big",))
    big = b"Subject: big\r\n\r\n" + (b"0123456789" * 102 + b"\r\n") * 3000  # ~3 MB
    r = await mailbox.append(f, msg(1, raw=big))
    got = [m async for m in mailbox.fetch(f, [int(r.dest_id), 99999])]
    assert len(got) == 1 and bytes(got[0].raw) == big


async def test_special_use_roles(mailbox) -> None:  # type: ignore[no-untyped-def]
    sent = await mailbox.ensure_folder(("Sent",), SpecialUse.SENT)
    again = await mailbox.ensure_folder(("Gesendet",), SpecialUse.SENT)
    assert again.path == sent.path == ("Sent",)
    # Servers without SPECIAL-USE (Courier) are read by name, as the mapping does.
    roles = {guess_special_use(f) for f in await mailbox.list_folders()}
    assert SpecialUse.SENT in roles and SpecialUse.INBOX in roles


async def test_empty_folder_lists_nothing(mailbox) -> None:  # type: ignore[no-untyped-def]
    f = await mailbox.ensure_folder(("Empty",))
    assert await mailbox.list_messages(f) == []
    assert [m async for m in mailbox.fetch(f, [])] == []
    _ = UTC
