"""The Graph destination store against the local Microsoft 365 simulator (real HTTPS, MSAL)."""

from __future__ import annotations

import asyncio
import base64
import os
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

sim_server = pytest.importorskip("mailtrek.sim.server")

from mailtrek.errors import AuthenticationError, ConfigError  # noqa: E402
from mailtrek.fingerprint import fingerprint  # noqa: E402
from mailtrek.model import Message, SpecialUse  # noqa: E402
from mailtrek.pacer import Pacer, PacerLimits  # noqa: E402
from mailtrek.sim.config import SimConfig, UserSpec  # noqa: E402
from mailtrek.stores.base import FlagChange  # noqa: E402
from mailtrek.stores.m365 import (  # noqa: E402
    GraphOptions,
    GraphStore,
    MailboxUnavailableError,
    TenantConfig,
    TokenSource,
    open_graph_store,
)
from mailtrek.stores.m365.auth import GRAPH_SCOPE  # noqa: E402

SECRET = "s3cret-value-" + uuid.uuid4().hex
CLIENT = "mailtrek-test-app"


@pytest.fixture(scope="module")
def sim():
    config = SimConfig(users=[UserSpec("alice@contoso.test"), UserSpec("bob@contoso.test"),
                              UserSpec("nomail@contoso.test", has_mailbox=False)],
                       client_secrets={CLIENT: SECRET})
    server = sim_server.Simulator(config).start()
    yield server
    server.stop()


def tenant_of(sim, **kw) -> TenantConfig:
    values = dict(tenant_id=sim.config.tenant_id, client_id=CLIENT, client_secret=SECRET,
                  authority=sim.authority(), graph_url=f"{sim.base_url}/graph",
                  ca_file=Path(sim.ca_file))
    values.update(kw)
    return TenantConfig(**values)


def new_user(sim) -> str:
    upn = f"u{uuid.uuid4().hex[:10]}@contoso.test"
    sim.add_user(upn)
    return upn


def make_raw(subject: str = "Hello", *, body: str = "Body text\r\n", extra: str = "",
             message_id: str | None = None) -> bytes:
    mid = message_id or f"<{uuid.uuid4().hex}@source.test>"
    return (f"Message-ID: {mid}\r\nDate: Tue, 02 Jan 2024 10:11:12 +0100\r\n"
            f"From: Ann Sender <ann@source.test>\r\nTo: Bob <bob@contoso.test>, carl@x.test\r\n"
            f"Cc: dora@x.test\r\nSubject: {subject}\r\nX-Custom: kept\r\n{extra}"
            f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}"
            ).encode()


def with_attachments(parts: list[tuple[str, bytes]]) -> bytes:
    out = [b"Message-ID: <att-%s@source.test>\r\n" % uuid.uuid4().hex.encode(),
           b"Date: Wed, 03 Jan 2024 08:00:00 +0000\r\nFrom: ann@source.test\r\n"
           b"To: bob@contoso.test\r\nSubject: With files\r\nMIME-Version: 1.0\r\n"
           b"Content-Type: multipart/mixed; boundary=BOUND\r\n\r\n--BOUND\r\n"
           b"Content-Type: text/html; charset=utf-8\r\n\r\n<p>see files</p>\r\n"]
    for name, data in parts:
        b64 = base64.encodebytes(data).replace(b"\n", b"\r\n")
        out.append(b"--BOUND\r\nContent-Type: application/octet-stream\r\n"
                   b"Content-Disposition: attachment; filename=\"" + name.encode() +
                   b"\"\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b64)
    out.append(b"--BOUND--\r\n")
    return b"".join(out)


INTERNALDATE = datetime(2023, 12, 24, 18, 30, 0, tzinfo=UTC)


def msg(raw: bytes, flags: frozenset[str] = frozenset(), uid: int = 1) -> Message:
    return Message(uid=uid, raw=raw, flags=flags, internaldate=INTERNALDATE)


async def open_store(sim, upn: str, **kw) -> GraphStore:
    store = open_graph_store(upn, tenant_of(sim), **kw)
    await store.connect()
    return store


@pytest.fixture(autouse=True)
def reset_sim(sim):
    sim.allow_permission()
    from mailtrek.stores.m365 import graph as graph_module
    graph_module._DENIED_IMPORT_MIME.clear()
    yield


# -- auth -------------------------------------------------------------------------------

async def test_token_via_msal_with_sim_ca_and_cache(sim) -> None:
    assert os.environ.get("REQUESTS_CA_BUNDLE") != str(sim.ca_file)
    tokens = TokenSource(tenant_of(sim))
    t1 = await tokens.get_token(GRAPH_SCOPE)
    t2 = await tokens.get_token(GRAPH_SCOPE)
    assert t1 == t2 and tokens.fetches == 1
    tokens.invalidate(GRAPH_SCOPE, t1)
    t3 = await tokens.get_token(GRAPH_SCOPE)
    assert tokens.fetches == 2 and t3 != t1


async def test_token_renewed_before_expiry(sim) -> None:
    now = [1_000_000.0]
    tokens = TokenSource(tenant_of(sim), clock=lambda: now[0])
    await tokens.get_token(GRAPH_SCOPE)
    now[0] += sim.config.token_lifetime_s - 100  # within the refresh margin
    await tokens.get_token(GRAPH_SCOPE)
    assert tokens.fetches == 2


async def test_bad_secret_is_plain_and_secret_free(sim) -> None:
    wrong = "wrong-" + uuid.uuid4().hex
    tokens = TokenSource(tenant_of(sim, client_secret=wrong))
    with pytest.raises(AuthenticationError) as info:
        await tokens.get_token(GRAPH_SCOPE)
    text = f"{info.value} {info.value.hint} {info.value!r}"
    assert wrong not in text and SECRET not in text
    assert "secret" in text.lower()


async def test_unknown_tenant_is_config_error(sim) -> None:
    # The simulator maps any tenant segment to its tenant (real Entra: AADSTS90002), so an
    # authority whose discovery document does not exist stands in for an unknown tenant.
    tokens = TokenSource(tenant_of(sim, authority=f"{sim.base_url}/no/such-tenant"))
    with pytest.raises(ConfigError) as info:
        await tokens.get_token(GRAPH_SCOPE)
    assert SECRET not in str(info.value)


def test_tenant_config_from_env_and_validation(tmp_path) -> None:
    env = {"MAILTREK_M365_TENANT_ID": "t", "MAILTREK_M365_CLIENT_ID": "c",
           "MAILTREK_M365_CLIENT_SECRET": "xyz"}
    cfg = TenantConfig.from_env(env)
    assert cfg.authority_url == "https://login.microsoftonline.com/t"
    assert "xyz" not in repr(cfg)
    with pytest.raises(ConfigError):
        TenantConfig.from_env({"MAILTREK_M365_TENANT_ID": "t"})
    with pytest.raises(ConfigError):
        TenantConfig("t", "c", client_secret="x", authority="http://plain.test/t")


# -- pre-flight -------------------------------------------------------------------------

async def test_unknown_user_and_no_mailbox_are_clear(sim) -> None:
    with pytest.raises(ConfigError) as info:
        await open_store(sim, "ghost@contoso.test")
    assert "ghost@contoso.test" in str(info.value)
    with pytest.raises(MailboxUnavailableError) as info2:
        await open_store(sim, "nomail@contoso.test")
    assert "licence" in (info2.value.hint or "")


# -- folders ----------------------------------------------------------------------------

async def test_folders_well_known_nested_case_insensitive_reserved(sim) -> None:
    upn = new_user(sim)
    store = await open_store(sim, upn)
    try:
        inbox = await store.ensure_folder(("INBOX",), SpecialUse.INBOX)
        sent = await store.ensure_folder(("Sent Messages",), SpecialUse.SENT)
        trash = await store.ensure_folder(("[Gmail]", "Bin"), SpecialUse.TRASH)
        assert inbox.path == ("INBOX",) and inbox.special_use is SpecialUse.INBOX
        assert sim.state.store.folder(sim.user(upn).id, "sentitems").id == sent.store_id
        assert sim.state.store.folder(sim.user(upn).id, "deleteditems").id == trash.store_id
        deep = await store.ensure_folder(("Projects", "2024", "Q1"))
        assert deep.path == ("Projects", "2024", "Q1")
        assert sim.folder_path(upn, deep.store_id) == "Projects/2024/Q1"
        again = await store.ensure_folder(("projects", "2024", "q1"))
        assert again.store_id == deep.store_id
        sub = await store.ensure_folder(("INBOX", "Lists"))
        assert sim.folder_path(upn, sub.store_id).endswith("/Lists")
        files = await store.ensure_folder(("Files",))
        assert files.path == ("Files (migrated)",)
        slash = await store.ensure_folder(("a/b",))
        assert slash.path == ("a_b",)
        # concurrent ensure of one new path creates it once
        got = await asyncio.gather(*(store.ensure_folder(("Race", "X")) for _ in range(6)))
        assert len({g.store_id for g in got}) == 1
        # a fresh store (new process) finds existing folders, whatever the case
        store2 = await open_store(sim, upn)
        assert (await store2.ensure_folder(("PROJECTS", "2024"))).store_id == \
            sim.state.store.folder(sim.user(upn).id, deep.store_id).parent_id
        listed = {f.display: f for f in await store2.list_folders()}
        assert listed["INBOX"].special_use is SpecialUse.INBOX
        assert "Projects/2024/Q1" in listed and "INBOX/Lists" in listed
        assert any(f.special_use is SpecialUse.SENT for f in listed.values())
        await store2.close()
    finally:
        await store.close()


# -- append: importMime -----------------------------------------------------------------

async def test_import_mime_exact_bytes_flags_fingerprint(sim) -> None:
    upn = new_user(sim)
    store = await open_store(sim, upn)
    try:
        folder = await store.ensure_folder(("Imported",))
        raw = make_raw("Exact bytes")
        res = await store.append(folder, msg(raw, frozenset({"\\Seen", "\\Flagged", "work",
                                                             "$MDNSent"})))
        assert res.ok and res.extra["route"] == "importMime"
        assert sim.message_mime(upn, res.dest_id) == raw
        item = sim.state.store.message(sim.user(upn).id, res.dest_id)
        assert item.props["isDraft"] is False and item.props["isRead"] is True
        assert item.props["flag"]["flagStatus"] == "flagged"
        assert item.props["categories"] == ["work"]  # $MDNSent is not a label
        unread = await store.append(folder, msg(make_raw("Unread one")))
        listed = {m.store_id: m for m in await store.list_messages(folder, fingerprints=True)}
        assert listed[res.dest_id].fingerprint == fingerprint(raw)
        assert listed[res.dest_id].flags == frozenset({"\\Seen", "\\Flagged", "work"})
        assert listed[unread.dest_id].flags == frozenset()
        assert listed[res.dest_id].message_id == raw.split(b"\r\n")[0][12:].decode()
        # later flag changes are patched
        await store.set_flags(folder, [FlagChange(res.dest_id, frozenset({"\\Seen", "home"}))])
        item = sim.state.store.message(sim.user(upn).id, res.dest_id)
        assert item.props["flag"]["flagStatus"] == "notFlagged"
        assert item.props["categories"] == ["home"]
        # replied state rides on the flags PATCH (PidTagLastVerbExecuted) after importMime
        answered = await store.append(folder, msg(make_raw("Answered"),
                                                  frozenset({"\\Seen", "\\Answered"})))
        listed = {m.store_id: m for m in await store.list_messages(folder)}
        assert listed[answered.dest_id].flags == frozenset({"\\Seen", "\\Answered"})
        assert store._verb_patch_ok
    finally:
        await store.close()


# -- append: JSON route -----------------------------------------------------------------

async def test_json_route_when_import_mime_denied(sim) -> None:
    upn = new_user(sim)
    sim.deny_permission()
    store = await open_store(sim, upn)
    try:
        folder = await store.ensure_folder(("Json",))
        raw = make_raw("Über café", extra="Importance: high\r\n")
        res = await store.append(folder, msg(raw, frozenset({"\\Seen", "\\Answered", "blue"})))
        assert res.ok and res.extra["route"] == "json", res
        item = sim.state.store.message(sim.user(upn).id, res.dest_id).props
        assert item["isDraft"] is False and item["isRead"] is True
        assert item["subject"] == "Über café"
        assert item["from"]["emailAddress"]["address"] == "ann@source.test"
        assert [r["emailAddress"]["address"] for r in item["toRecipients"]] == \
            ["bob@contoso.test", "carl@x.test"]
        assert item["ccRecipients"][0]["emailAddress"]["address"] == "dora@x.test"
        assert item["receivedDateTime"].startswith("2023-12-24T18:30:00")
        assert item["sentDateTime"].startswith("2024-01-02T09:11:12")
        assert item["importance"] == "high" and item["categories"] == ["blue"]
        assert {"name": "X-Custom", "value": "kept"} in item["internetMessageHeaders"]
        # second message: importMime not retried (403 remembered per tenant)
        before = sim.status_count(403)
        res2 = await store.append(folder, msg(make_raw("Second")))
        assert res2.extra["route"] == "json" and sim.status_count(403) == before
        listed = {m.store_id: m for m in await store.list_messages(folder, fingerprints=True)}
        assert listed[res.dest_id].flags == frozenset({"\\Seen", "\\Answered", "blue"})
    finally:
        await store.close()


async def test_large_message_json_with_attachments_and_upload_session(sim) -> None:
    upn = new_user(sim)
    store = await open_store(sim, upn)
    try:
        folder = await store.ensure_folder(("Big",))
        small = os.urandom(200_000)
        big = os.urandom(5 * 1024 * 1024 + 123)
        raw = with_attachments([("small.bin", small), ("big.bin", big)])
        res = await store.append(folder, msg(raw, frozenset({"\\Seen"})))
        assert res.ok and res.extra["route"] == "json", res
        assert store.routes["upload_sessions"] == 1
        item = sim.state.store.message(sim.user(upn).id, res.dest_id).props
        assert item["isDraft"] is False and item["subject"] == "With files"
        assert item["body"]["contentType"] == "html"
        got = {a.props["name"]: a.content for a in sim.attachments(res.dest_id)}
        assert got == {"small.bin": small, "big.bin": big}
        assert len(sim.messages(upn, folder.store_id)) == 1
    finally:
        await store.close()


async def test_oversized_message_refused_not_raised(sim) -> None:
    upn = new_user(sim)
    store = await open_store(sim, upn, options=GraphOptions(max_message_size=1024 * 1024))
    try:
        folder = await store.ensure_folder(("X",))
        res = await store.append(folder, msg(make_raw(body="a" * 2_000_000)))
        assert res.error and "exceeds" in res.error and not res.ok
    finally:
        await store.close()


async def test_unparsable_message_still_lands(sim) -> None:
    upn = new_user(sim)
    sim.deny_permission()
    store = await open_store(sim, upn)
    try:
        folder = await store.ensure_folder(("Odd",))
        raw = b"Subject: =?bogus?Q?x?=\r\nFrom: <<<\r\nContent-Type: multipart/mixed\r\n\r\n\xff\xfe"
        res = await store.append(folder, msg(raw))
        assert res.ok, res
    finally:
        await store.close()


# -- failures: in doubt, expiry, throttling ---------------------------------------------

async def test_in_doubt_create_resolved_without_duplicate(sim) -> None:
    upn = new_user(sim)
    store = await open_store(sim, upn)
    try:
        folder = await store.ensure_folder(("Doubt",))
        raw = make_raw("In doubt")
        sim.drop_next_response_after_commit()
        res = await store.append(folder, msg(raw))
        assert res.ok and res.dest_id
        assert len(sim.messages(upn, folder.store_id)) == 1
        ids = await store.find_by_message_id(folder, raw.split(b"\r\n")[0][12:].decode())
        assert ids == [res.dest_id]
        # JSON route too
        sim.deny_permission()
        from mailtrek.stores.m365 import graph as graph_module
        graph_module._DENIED_IMPORT_MIME.clear()
        raw2 = make_raw("In doubt json", message_id="<it's-quoted@source.test>")
        await store.ensure_folder(("Doubt",))
        sim.drop_next_response_after_commit()
        res2 = await store.append(folder, msg(raw2))
        assert res2.ok
        assert len(sim.messages(upn, folder.store_id)) == 2
    finally:
        await store.close()


async def test_expired_token_mid_run_is_refreshed(sim) -> None:
    upn = new_user(sim)
    store = await open_store(sim, upn)
    try:
        folder = await store.ensure_folder(("Exp",))
        await store.append(folder, msg(make_raw("one")))
        fetched = store.client.tokens.fetches
        sim.expire_tokens()
        res = await store.append(folder, msg(make_raw("two")))
        assert res.ok
        assert store.client.tokens.fetches == fetched + 1
        assert store.client.stats["token_refreshes"] == 1
    finally:
        await store.close()


async def test_transient_503_retried(sim) -> None:
    upn = new_user(sim)
    store = await open_store(sim, upn, pacer=Pacer(PacerLimits(backoff_base=0.01)))
    try:
        folder = await store.ensure_folder(("T",))
        sim.fail_next(2, status=503)
        res = await store.append(folder, msg(make_raw("after 503")))
        assert res.ok and len(sim.messages(upn, folder.store_id)) == 1
    finally:
        await store.close()


async def test_listing_reads_size_verb_and_json_fingerprint(sim) -> None:
    upn = new_user(sim)
    store = await open_store(sim, upn)
    try:
        folder = await store.ensure_folder(("Props",))
        raw = make_raw("mime")
        a = await store.append(folder, msg(raw))
        sim.deny_permission()
        raw2 = make_raw("json")
        b = await store.append(folder, msg(raw2, frozenset({"\\Answered"})))
        listed = {m.store_id: m for m in await store.list_messages(folder, fingerprints=True)}
        assert listed[a.dest_id].size == len(raw)
        assert listed[b.dest_id].fingerprint == fingerprint(raw2)
        assert "\\Answered" in listed[b.dest_id].flags
    finally:
        await store.close()


async def test_flag_changes_travel_in_batches_through_throttling_and_vanished_items(sim) -> None:
    """45 flag changes: three $batch round trips, not 45; inner 429s and a 404 handled."""
    from mailtrek.sim.config import Limits

    upn = new_user(sim)
    store = await open_store(sim, upn)
    try:
        folder = await store.ensure_folder(("Batched",))
        ids = [(await store.append(folder, msg(make_raw(f"b{i}"), uid=i + 1))).dest_id
               for i in range(46)]
        gone = ids.pop()
        sim.state.store.delete_message(gone)
        want = {d: frozenset({"\\Seen", f"tag{i % 3}"} | ({"\\Flagged"} if i % 2 else set()))
                for i, d in enumerate(ids)}
        changes = [FlagChange(d, f, frozenset()) for d, f in want.items()]
        changes.append(FlagChange(gone, frozenset({"\\Seen"}), frozenset()))
        # The service's budget is tighter than the pacer knows: inner requests meet 429.
        sim.set_mailbox_limits(upn, Limits(requests_per_window=25, request_window_s=2.0))
        before_http, before_429 = store.client.stats["requests"], sim.throttled_count(upn)
        await store.set_flags(folder, changes)
        sim.set_mailbox_limits(upn, None)
        assert sim.throttled_count(upn) > before_429  # the storm really happened
        assert store.client.stats["requests"] - before_http < len(changes)
        listed = {m.store_id: m.flags for m in await store.list_messages(folder)}
        assert listed == want
        # Without a storm: 45 changes are exactly three round trips (20 + 20 + 5).
        before_http = store.client.stats["requests"]
        await store.set_flags(folder, [FlagChange(d, frozenset(), f) for d, f in want.items()])
        assert store.client.stats["requests"] - before_http == 3
        assert all(f == frozenset() for f in
                   {m.store_id: m.flags for m in await store.list_messages(folder)}.values())
    finally:
        sim.set_mailbox_limits(upn, None)
        await store.close()
