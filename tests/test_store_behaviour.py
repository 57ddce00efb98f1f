"""One behaviour suite for every mail store: the same tests, every backend.

The in-memory store is the reference. The same behaviour is asked of Dovecot, Cyrus and
Courier through mailtrek's IMAP store (pipelined connection, mUTF-7 names, APPENDUID,
flags, dates), of Exchange Online's IMAP (``ExchangeImapStore`` through the
Exchange-like front), of a Gmail-like server (the X-GM-EXT-1 front: written through the
IMAP store, read back through the Gmail view, X-GM-MSGID identity), and of Microsoft
Graph on the simulator. Where a store legitimately differs, the test reads what the
store declares (``StoreFeatures``, and whether it is a source at all), never its kind.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from imap_helpers import new_user, store
from mailtrek.fingerprint import fingerprint
from mailtrek.model import Message, MessageMeta, SpecialUse
from mailtrek.stores.base import DestinationStore, FlagChange, SourceStore
from mailtrek.stores.imap.connection import ConnectParams, Credentials
from mailtrek.stores.imap.exchange_store import ExchangeImapStore
from mailtrek.stores.imap.store import ImapSettings
from mailtrek.stores.memory import MemoryStore
from mailtrek.sync.flagsets import comparable_flags
from mailtrek.sync.mapping import guess_special_use

SERVERS = {"dovecot": "dovecot_dst", "cyrus": "cyrus_server", "courier": "courier_server"}
STORES = ["memory", "dovecot", "cyrus", "courier", "exchange", "gmail", "graph"]
DATE = datetime(2019, 3, 14, 9, 26, 53, tzinfo=timezone(timedelta(hours=-5)))
DATE_HEADER = b"Date: Thu, 14 Mar 2019 09:26:53 -0500\r\n"
SIM_CLIENT, SIM_SECRET = "mailtrek-behaviour", "behaviour-" + uuid.uuid4().hex


@dataclass(slots=True)
class Sim:
    """The Microsoft 365 simulator and the tenant settings that reach it."""

    server: Any
    tenant: Any


@pytest.fixture(scope="module")
def graph_sim() -> Iterator[Sim]:
    """One simulator for the module (a user per test)."""
    sim_server = pytest.importorskip("mailtrek.sim.server")
    from mailtrek.sim.config import SimConfig
    from mailtrek.stores.m365 import TenantConfig

    server = sim_server.Simulator(SimConfig(client_secrets={SIM_CLIENT: SIM_SECRET})).start()
    tenant = TenantConfig(tenant_id=server.config.tenant_id, client_id=SIM_CLIENT,
                          client_secret=SIM_SECRET, authority=server.authority(),
                          graph_url=f"{server.base_url}/graph", ca_file=Path(server.ca_file))
    try:
        yield Sim(server, tenant)
    finally:
        server.stop()


@pytest_asyncio.fixture(params=STORES, loop_scope="function")
async def mailbox(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """A connected, empty mailbox on one store (a fresh user on a shared server)."""
    kind = request.param
    if kind == "memory":
        yield MemoryStore()
        return
    if kind == "graph":
        from mailtrek.stores.m365 import open_graph_store

        sim: Sim = request.getfixturevalue("graph_sim")
        upn = f"b{uuid.uuid4().hex[:10]}@contoso.test"
        sim.server.add_user(upn)
        st: Any = open_graph_store(upn, sim.tenant)
        async with _connected(st) as s:
            yield s
        return
    server = request.getfixturevalue(SERVERS.get(kind, "dovecot_dst"))
    login, pw = new_user(server)
    if kind == "exchange":
        from mailtrek.devtools.exchange_front import ExchangeFront

        async with ExchangeFront("127.0.0.1", server.port) as front:
            params = ConnectParams("127.0.0.1", front.port, "none", timeout=15)
            st = ExchangeImapStore(ImapSettings(params, Credentials(login, pw), readonly=False,
                                                exchange=True, disarm_read_receipts=True),
                                   label="exchange")
            async with _connected(st) as s:
                yield s
        return
    if kind == "gmail":
        from mailtrek.devtools.gmail_front import GmailFront
        from mailtrek.stores.gmail import GmailSource
        from mailtrek.stores.gmail.store import has_gmail_extensions

        async with GmailFront("127.0.0.1", server.port, login, pw) as front, _connected(
                store(server, login, pw, readonly=False, port=front.port)) as s:
            assert has_gmail_extensions(s)  # so the view goes by X-GM-MSGID
            yield _ReadThroughGmail(s, GmailSource(s))
        return
    async with _connected(store(server, login, pw, readonly=False)) as s:
        yield s


class _ReadThroughGmail:
    """Gmail: written through the IMAP store, read back through the Gmail view over it
    (X-GM-MSGID identity, labels), as a migration from Gmail reads it."""

    def __init__(self, inner: Any, view: Any) -> None:
        self.inner, self.view = inner, view
        self.features = inner.features
        self.connect, self.close = inner.connect, inner.close
        self.ensure_folder, self.append = inner.ensure_folder, inner.append
        self.set_flags, self.canonical_bytes = inner.set_flags, inner.canonical_bytes

    async def list_folders(self) -> list[Any]:
        return await self.view.list_folders()

    async def list_messages(self, folder: Any, **kw: Any) -> list[MessageMeta]:
        await self.view.list_folders()  # the view follows what was written since
        return await self.view.list_messages(folder, **kw)

    async def fetch(self, folder: Any, uids: Any, sizes: Any = None, **kw: Any) -> AsyncIterator[Message]:
        await self.view.list_folders()
        async for m in self.view.fetch(folder, uids, sizes, **kw):
            yield m


class _connected:
    """``async with``: connect a store, close it afterwards."""

    def __init__(self, st: Any) -> None:
        self.st = st

    async def __aenter__(self) -> Any:
        try:
            await self.st.connect()
        except BaseException:
            await self.st.close()
            raise
        return self.st

    async def __aexit__(self, *exc: object) -> None:
        await self.st.close()


def msg(i: int, **kw: Any) -> Message:
    raw = kw.pop("raw", None) or (b"Subject: m%d\r\nMessage-ID: <m%d@b>\r\n%s\r\nbody %d\r\n"
                                  % (i, i, DATE_HEADER, i))
    return Message(uid=0, raw=raw, flags=kw.pop("flags", frozenset()),
                   internaldate=kw.pop("date", DATE))


def _kept(mailbox: Any, flags: frozenset[str]) -> frozenset[str]:
    """The flags a store declares it keeps, without the session flag \\Recent."""
    return comparable_flags(frozenset(f for f in flags if f != "\\Recent"), mailbox.features)


async def _listing(mailbox: Any, folder: Any, **kw: Any) -> dict[str, MessageMeta]:
    """The folder's messages by the id an append reports (UID as text, or a Graph id)."""
    return {m.store_id or str(m.uid): m for m in await mailbox.list_messages(folder, **kw)}


async def _fresh(mailbox: Any, path: tuple[str, ...]) -> Any:
    return next(x for x in await mailbox.list_folders() if x.path == path)


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


async def test_names_keep_case_where_the_store_says_so(mailbox) -> None:  # type: ignore[no-untyped-def]
    a = await mailbox.ensure_folder(("Kunden",))
    b = await mailbox.ensure_folder(("kunden",))
    assert (await mailbox.ensure_folder(("kunden",))).path == b.path
    listed = [f.path for f in await mailbox.list_folders() if f.path[0].lower() == "kunden"]
    if not mailbox.features.case_insensitive_names:  # two names, two folders
        assert (a.path, b.path) == (("Kunden",), ("kunden",))
        assert sorted(listed) == [("Kunden",), ("kunden",)]
    else:  # the server may fold them into one (the mapping keeps them apart beforehand)
        assert a.path == ("Kunden",) and b.path in (("Kunden",), ("kunden",))
        assert ("Kunden",) in listed


async def test_append_keeps_bytes_flags_keywords_and_date(mailbox) -> None:  # type: ignore[no-untyped-def]
    f = await mailbox.ensure_folder(("Work",))
    raws = [msg(i, flags=frozenset({"\\Seen", "$Forwarded", "Project_X"}) if i % 2 else frozenset())
            for i in range(30)]
    results = await asyncio.gather(*(mailbox.append(f, m) for m in raws))
    assert all(r.ok for r in results), [r.error for r in results if not r.ok]
    ids = [r.dest_id for r in results]
    assert len(set(ids)) == 30 and None not in ids
    f = await _fresh(mailbox, ("Work",))
    assert f.messages == 30
    metas = await _listing(mailbox, f, fingerprints=True)
    assert set(metas) == set(ids)
    tolerance = mailbox.features.date_tolerance_s
    for r, m in zip(results, raws, strict=True):
        meta = metas[r.dest_id]
        assert meta.fingerprint == fingerprint(m.raw)
        assert _kept(mailbox, meta.flags) == _kept(mailbox, m.flags)
        assert meta.internaldate is not None  # the instant, whatever zone comes back
        assert abs((meta.internaldate - DATE).total_seconds()) < tolerance
        if mailbox.features.exact_mime:
            assert meta.size == len(m.raw)
    if isinstance(mailbox, SourceStore):  # a source also says where the next UID goes
        assert f.uidnext == max(int(i) for i in ids) + 1
        got = {str(x.uid): x async for x in mailbox.fetch(f, sorted(int(i) for i in ids))}
        for r, m in zip(results, raws, strict=True):
            assert hashlib.sha256(got[r.dest_id].raw).digest() == hashlib.sha256(m.raw).digest()
            assert got[r.dest_id].internaldate == DATE
            assert _kept(mailbox, got[r.dest_id].flags) == _kept(mailbox, m.flags)


async def test_set_flags_replaces_and_listing_by_uid(mailbox) -> None:  # type: ignore[no-untyped-def]
    f = await mailbox.ensure_folder(("Flags",))
    r = [await mailbox.append(f, msg(i, flags=frozenset({"\\Seen"}))) for i in range(3)]
    await mailbox.set_flags(f, [FlagChange(r[0].dest_id, frozenset({"\\Flagged", "Later"})),
                                FlagChange(r[1].dest_id, frozenset())])
    uid_of = {k: m.uid for k, m in (await _listing(mailbox, f)).items()}
    listed = await _listing(mailbox, f, uids=[uid_of[x.dest_id] for x in r[:2]])
    assert set(listed) == {r[0].dest_id, r[1].dest_id}
    assert _kept(mailbox, listed[r[0].dest_id].flags) == {"\\Flagged", "Later"}
    assert _kept(mailbox, listed[r[1].dest_id].flags) == set()
    untouched = (await _listing(mailbox, f))[r[2].dest_id]
    assert _kept(mailbox, untouched.flags) == {"\\Seen"}


async def test_fetch_leaves_out_unknown_uids_and_handles_big_messages(mailbox) -> None:  # type: ignore[no-untyped-def]
    f = await mailbox.ensure_folder(("Big",))
    big = b"Subject: big\r\n" + DATE_HEADER + b"\r\n" + (b"0123456789" * 102 + b"\r\n") * 3000  # ~3 MB
    r = await mailbox.append(f, msg(1, raw=big))
    assert r.ok, r.error
    [meta] = (await _listing(mailbox, await _fresh(mailbox, ("Big",)), fingerprints=True)).values()
    assert meta.fingerprint == fingerprint(big)
    if not isinstance(mailbox, SourceStore):
        return  # a destination only: nothing is read back whole
    got = [m async for m in mailbox.fetch(f, [int(r.dest_id), 99999])]
    assert len(got) == 1 and bytes(got[0].raw) == big


async def test_special_use_roles(mailbox) -> None:  # type: ignore[no-untyped-def]
    sent = await mailbox.ensure_folder(("Sent",), SpecialUse.SENT)
    again = await mailbox.ensure_folder(("Gesendet",), SpecialUse.SENT)
    assert again.path == sent.path
    if SpecialUse.SENT not in mailbox.features.special_folders:  # made here, by its name
        assert sent.path == ("Sent",)
    # Servers without SPECIAL-USE (Courier) are read by name, as the mapping does.
    roles = {guess_special_use(f) for f in await mailbox.list_folders()}
    assert SpecialUse.SENT in roles and SpecialUse.INBOX in roles


async def test_empty_folder_lists_nothing(mailbox) -> None:  # type: ignore[no-untyped-def]
    f = await mailbox.ensure_folder(("Empty",))
    assert await mailbox.list_messages(f) == []
    if isinstance(mailbox, SourceStore):
        assert [m async for m in mailbox.fetch(f, [])] == []


async def test_every_store_speaks_the_protocol(mailbox) -> None:  # type: ignore[no-untyped-def]
    assert isinstance(mailbox, DestinationStore)
    assert mailbox.canonical_bytes(b"Subject: x\r\n\r\n") == b"Subject: x\r\n\r\n"


async def test_a_copy_read_back_is_canonically_the_message_sent(mailbox) -> None:  # type: ignore[no-untyped-def]
    # Exchange renames the read-receipt request (same length) so Outlook sends none; its
    # canonical_bytes undoes that, and every other store keeps the bytes as they are.
    raw = (b"Subject: receipt\r\nMessage-ID: <r@b>\r\n" + DATE_HEADER
           + b"Disposition-Notification-To: ann@example.org\r\n\r\nread me\r\n")
    f = await mailbox.ensure_folder(("Receipts",))
    r = await mailbox.append(f, msg(1, raw=raw))
    assert r.ok, r.error
    [meta] = (await _listing(mailbox, f, fingerprints=True)).values()
    assert meta.fingerprint == fingerprint(raw)
    if not isinstance(mailbox, SourceStore):
        return
    [got] = [m async for m in mailbox.fetch(f, [int(r.dest_id)])]
    assert len(got.raw) == len(raw) and mailbox.canonical_bytes(bytes(got.raw)) == raw
