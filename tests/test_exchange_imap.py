"""The m365+imap route against an Exchange-Online-like front on a real Dovecot.

The front (mailtrek.devtools.exchange_front) adds Exchange's reported behaviours to a
real Dovecot: long-line and size refusals, the reserved ``Files``, \\Flagged dropped on
APPEND, throttling with a suggested back-off and a disconnect, BYE after 10 errors. The
copies here must still deliver everything exactly once, also on re-runs that lost state.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import imaplib
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from imap_helpers import load, new_user, store
from mailtrek.devtools.dovecot import DovecotInstance
from mailtrek.devtools.exchange_front import ExchangeFront
from mailtrek.errors import ThrottledError
from mailtrek.fingerprint import fingerprint
from mailtrek.model import Message
from mailtrek.state.db import MailboxState, open_engine
from mailtrek.stores.imap.connection import ConnectParams, Credentials
from mailtrek.stores.imap.exchange import MAX_LINE, longest_line, prepare, restore_disarmed
from mailtrek.stores.imap.exchange_store import ExchangeImapStore
from mailtrek.stores.imap.store import ImapSettings, ImapStore
from mailtrek.stores.m365 import TenantConfig
from mailtrek.stores.registry import open_store
from mailtrek.stores.url import OpenOptions, parse_address, spec_for
from mailtrek.sync.engine import copy_mailbox
from mailtrek.sync.options import CopyOptions, CopyReport

SEEN = frozenset({"\\Seen"})
WHEN = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
BIG_LIMIT = 64 * 1024  # the front's MaxReceiveSize in these tests


def msg(n: str, body: bytes = b"hello\r\n", *, headers: bytes = b"",
        ctype: bytes = b"text/plain; charset=utf-8", cte: bytes = b"8bit") -> bytes:
    return (b"From: Ann <ann@example.org>\r\nTo: bob@example.org\r\n"
            b"Subject: message " + n.encode() + b"\r\nMessage-ID: <" + n.encode()
            + b"@example.org>\r\nDate: Fri, 1 Mar 2024 12:00:00 +0000\r\n" + headers
            + b"MIME-Version: 1.0\r\nContent-Type: " + ctype
            + b"\r\nContent-Transfer-Encoding: " + cte + b"\r\n\r\n" + body)


LONG_TEXT = ("Grüße " * 4000).encode() + b"\r\nsecond line\r\n"  # one 28,000-octet line
LONG = msg("long", LONG_TEXT)
LONG_HTML = msg("longhtml", b"<p>" + b"lorem ipsum " * 2000 + b"</p>\r\n",
               ctype=b"text/html; charset=us-ascii")
LONG_HEADER = msg("longheader", headers=b"X-Blob: " + b"x" * 15000 + b"\r\n")
FLAGGED = msg("flagged")
MDN = msg("mdn")
RECEIPT = msg("receipt", headers=b"Disposition-Notification-To: ann@example.org\r\n")
FILES = msg("files")
OVERSIZE = msg("oversize", b"0123456789abcdef0123456789abcdef\r\n" * 3000)  # ~100 KB
FILLER = [msg(f"filler{i}") for i in range(12)]

LAYOUT: list[tuple[tuple[str, ...], bytes, frozenset[str]]] = [
    (("INBOX",), LONG, SEEN),
    (("INBOX",), LONG_HTML, SEEN),
    (("INBOX",), LONG_HEADER, SEEN),
    (("INBOX",), FLAGGED, SEEN | {"\\Flagged"}),
    (("INBOX",), MDN, SEEN | {"$MDNSent", "Project"}),
    (("INBOX",), RECEIPT, frozenset()),
    (("INBOX",), OVERSIZE, SEEN),
    (("Files",), FILES, SEEN),
    *[(("Archive",), m, SEEN) for m in FILLER],
]


def exchange_store(inst: DovecotInstance, login: str, pw: str, port: int, *,
                   connections: int = 4, disarm: bool = True) -> ExchangeImapStore:
    params = ConnectParams("127.0.0.1", port, "none", timeout=15)
    return ExchangeImapStore(ImapSettings(params, Credentials(login, pw), connections=connections,
                                          readonly=False, exchange=True,
                                          disarm_read_receipts=disarm), label="exchange")


async def run_copy(src: tuple[Any, str, str], dst: tuple[Any, str, str], port: int,
                   db: Path, **kw: Any) -> tuple[CopyReport, ImapStore]:
    s = store(*src)
    d = exchange_store(*dst, port, **kw)
    await s.connect()
    await d.connect()
    try:
        state = MailboxState(open_engine(db), "x")
        return await copy_mailbox(s, d, state, CopyOptions()), d
    finally:
        await s.close()
        await d.close()


async def messages(inst: DovecotInstance, login: str, pw: str
                   ) -> dict[tuple[str, ...], list[tuple[bytes, frozenset[str]]]]:
    """Every folder's messages straight from Dovecot: (bytes, flags)."""
    st = store(inst, login, pw)
    await st.connect()
    out: dict[tuple[str, ...], list[tuple[bytes, frozenset[str]]]] = {}
    try:
        for f in await st.list_folders():
            metas = await st.list_messages(f)
            out[f.path] = [(bytes(m.raw), frozenset(x for x in m.flags if x != "\\Recent"))
                           async for m in st.fetch(f, [x.uid for x in metas])]
    finally:
        await st.close()
    return out


def by_id(rows: list[tuple[bytes, frozenset[str]]]) -> dict[str, list[tuple[bytes, frozenset[str]]]]:
    out: dict[str, list[tuple[bytes, frozenset[str]]]] = {}
    for raw, flags in rows:
        mid = email.message_from_bytes(raw)["Message-ID"].strip("<>").split("@")[0]
        out.setdefault(mid, []).append((raw, flags))
    return out


def leaves(raw: bytes) -> list[bytes]:
    m = email.message_from_bytes(raw, policy=email.policy.compat32)
    return [p.get_payload(decode=True) for p in m.walk() if not p.is_multipart()]


@pytest.fixture
def seeded(dovecot_src: DovecotInstance) -> tuple[DovecotInstance, str, str]:
    login, pw = new_user(dovecot_src, "xs")
    asyncio.run(load(dovecot_src, login, pw, [(p, r, f, WHEN) for p, r, f in LAYOUT]))
    return dovecot_src, login, pw


def test_every_quirk_in_one_throttled_run_then_reruns_add_nothing(
        seeded: tuple[DovecotInstance, str, str], dovecot_dst: DovecotInstance,
        tmp_path: Path) -> None:
    dst = (dovecot_dst, *new_user(dovecot_dst, "xd"))

    async def run() -> tuple[Any, ...]:
        async with ExchangeFront("127.0.0.1", dovecot_dst.port, max_size=BIG_LIMIT,
                                 throttle_limit=25, backoff_ms=1500, throttle_trips=1) as front:
            started = time.monotonic()
            first, d = await run_copy(seeded, dst, front.port, tmp_path / "a.db")
            took = time.monotonic() - started
            refused_in_first = front.too_big
            after_first = await messages(*dst)
            again, _ = await run_copy(seeded, dst, front.port, tmp_path / "a.db")
            fresh, _ = await run_copy(seeded, dst, front.port, tmp_path / "fresh.db")
            return (front, first, d, took, after_first, again, fresh, await messages(*dst),
                    refused_in_first)

    front, first, d, took, after_first, again, fresh, final, refused = asyncio.run(run())
    # Throttled once mid-run, and the run waited the back-off Exchange suggested.
    assert front.trips == 1 and front.throttled >= 1
    assert took >= 1.5
    assert not first.errors, first.errors
    # Only the oversize message is missing, reported with the reason.
    assert [(s.folder, s.reason.split(" (")[0]) for s in first.skipped] == [
        ("INBOX", "too large for the destination mailbox")]
    assert refused == 1  # sent once, even though the throttled pass re-planned it
    # Files became "Files (migrated)", reported as a rename.
    files = next(f for f in first.folders if f.source == "Files")
    assert files.destination == "Files (migrated)" and files.renamed
    assert front.reserved == 0  # mailtrek never asked Exchange for the reserved name
    got = {p: by_id(rows) for p, rows in after_first.items() if rows}
    assert {p: sorted(v) for p, v in got.items()} == {
        ("INBOX",): ["flagged", "long", "longheader", "longhtml", "mdn", "receipt"],
        ("Files (migrated)",): ["files"],
        ("Archive",): sorted(f"filler{i}" for i in range(12)),
    }
    assert all(len(v) == 1 for rows in got.values() for v in rows.values())  # no duplicate
    inbox = {k: v[0] for k, v in got[("INBOX",)].items()}
    # Long lines: re-encoded losslessly (same decoded text), every line now acceptable;
    # mostly non-ASCII text goes as base64, smaller than quoted-printable.
    long_raw, _ = inbox["long"]
    assert len(long_raw) < len(LONG) * 1.5
    assert longest_line(long_raw) <= MAX_LINE and front.long_lines == 0
    assert leaves(long_raw) == leaves(LONG)
    assert fingerprint(long_raw) == fingerprint(LONG)
    assert b"X-Mailtrek-Origin: fp=" + fingerprint(LONG).encode() in long_raw
    html_raw, _ = inbox["longhtml"]
    assert leaves(html_raw) == leaves(LONG_HTML) and longest_line(html_raw) <= 76
    assert b"Content-Transfer-Encoding: quoted-printable" in html_raw
    # An unbreakable 15,000-octet header can only be wrapped: it arrives, and says so.
    head_raw, _ = inbox["longheader"]
    assert longest_line(head_raw) <= MAX_LINE
    assert b"X-Mailtrek-Origin: fp=" + fingerprint(LONG_HEADER).encode() in head_raw
    # (An APPEND cut off by the throttling disconnect got no answer, so no note; the
    # re-plan found it by its origin stamp. Notes are checked where that cannot happen.)
    assert d.rewrites and all(n.folder == "INBOX" for n in d.rewrites)
    # \Flagged is STOREd after the APPEND, never sent with it.
    assert "\\Flagged" in inbox["flagged"][1] and front.flagged_dropped == 0
    # $MDNSent stays behind; a user keyword travels.
    assert "Project" in inbox["mdn"][1] and "$MDNSent" not in inbox["mdn"][1]
    # The read-receipt request is disarmed, with the size unchanged.
    receipt_raw, _ = inbox["receipt"]
    parsed = email.message_from_bytes(receipt_raw)
    assert parsed["Disposition-Notification-To"] is None
    assert parsed["X-Disposition-Notification"].strip() == "ann@example.org"
    # Re-runs (same state, then a lost state database) add nothing.
    assert sum(f.copied for f in again.folders) == 0
    assert sum(f.copied for f in fresh.folders) == 0, [
        (f.source, f.copied, f.adopted) for f in fresh.folders]
    assert sum(f.adopted for f in fresh.folders) == len(LAYOUT) - 1
    assert final == after_first


@pytest.mark.parametrize("after", [4, 14, 30])
def test_throttling_at_any_point_of_a_run_loses_and_duplicates_nothing(
        after: int, seeded: tuple[DovecotInstance, str, str], dovecot_dst: DovecotInstance,
        tmp_path: Path) -> None:
    # The throttling answer lands on a different command each time: login, LIST, STATUS,
    # CREATE, SELECT, APPEND or the STORE of \Flagged.
    dst = (dovecot_dst, *new_user(dovecot_dst, "ta"))

    async def run() -> tuple[Any, ...]:
        async with ExchangeFront("127.0.0.1", dovecot_dst.port, max_size=BIG_LIMIT,
                                 throttle_limit=after, backoff_ms=300,
                                 throttle_trips=1) as front:
            report, _ = await run_copy(seeded, dst, front.port, tmp_path / "t.db")
            return front, report, await messages(*dst)

    front, report, final = asyncio.run(run())
    assert front.trips == 1
    assert not report.errors and len(report.skipped) == 1
    got = {p: by_id(rows) for p, rows in final.items() if rows}
    assert sum(len(v) for rows in got.values() for v in rows.values()) == len(LAYOUT) - 1
    assert all(len(v) == 1 for rows in got.values() for v in rows.values())
    assert "\\Flagged" in got[("INBOX",)]["flagged"][0][1]


def test_changed_messages_say_so_in_their_append_result(
        dovecot_dst: DovecotInstance) -> None:
    login, pw = new_user(dovecot_dst, "nt")

    async def run() -> list[Any]:
        async with ExchangeFront("127.0.0.1", dovecot_dst.port) as front:
            d = exchange_store(dovecot_dst, login, pw, front.port, connections=1)
            await d.connect()
            try:
                inbox = await d.ensure_folder(("INBOX",))
                files = await d.ensure_folder(("files",))
                out = [await d.append(inbox, Message(uid=i, raw=raw, internaldate=WHEN))
                       for i, raw in enumerate((LONG_HEADER, LONG_HTML, RECEIPT, FLAGGED))]
                return [*out, files, d.rewrites]
            finally:
                await d.close()

    header, html, receipt, plain, files, rewrites = asyncio.run(run())
    assert header.ok and header.extra["lossy"] is True
    assert "X-Blob header wrapped without white space" in str(header.extra["note"])
    assert html.ok and html.extra["lossy"] is False
    assert "text/html part re-encoded as quoted-printable" in str(html.extra["note"])
    assert receipt.ok and "read receipt request disarmed" in str(receipt.extra["note"])
    assert plain.ok and not plain.extra
    assert [r.uid for r in rewrites] == [0, 1, 2]
    assert files.path == ("files (migrated)",)  # the Graph route's rule, any case


def test_bye_after_errors_loses_and_duplicates_nothing(
        dovecot_src: DovecotInstance, dovecot_dst: DovecotInstance, tmp_path: Path) -> None:
    # An Exchange that hangs up after 3 errors, below mailtrek's budget of 8: the BYE
    # happens with APPENDs in flight; they are re-planned, refusals are not re-sent.
    login, pw = new_user(dovecot_src, "bs")
    poison = [msg(f"poison{i}", headers=b"X-Poison: yes\r\n") for i in range(5)]
    good = [msg(f"good{i}") for i in range(10)]
    mixed = [r for pair in zip(good, poison, strict=False) for r in pair] + good[5:]
    items = [(("INBOX",), r, SEEN, WHEN) for r in mixed]
    asyncio.run(load(dovecot_src, login, pw, items))
    src = (dovecot_src, login, pw)
    dst = (dovecot_dst, *new_user(dovecot_dst, "bd"))

    async def run() -> tuple[Any, ...]:
        async with ExchangeFront("127.0.0.1", dovecot_dst.port, max_errors=3,
                                 poison=b"X-Poison: yes") as front:
            report, _ = await run_copy(src, dst, front.port, tmp_path / "b.db", connections=1)
            fresh, _ = await run_copy(src, dst, front.port, tmp_path / "fresh.db",
                                      connections=1)
            return front, report, fresh, await messages(*dst)

    front, report, fresh, final = asyncio.run(run())
    assert front.byes >= 1  # the disconnect really happened
    assert not report.errors, report.errors
    assert sorted(s.reason.split(" (")[0] for s in report.skipped) == [
        "Exchange refused the message"] * 5
    got = by_id(final[("INBOX",)])
    assert sorted(got) == sorted(f"good{i}" for i in range(10))
    assert all(len(v) == 1 for v in got.values())
    assert sum(f.copied for f in fresh.folders) == 0


def test_error_budget_keeps_exchange_from_hanging_up(
        dovecot_src: DovecotInstance, dovecot_dst: DovecotInstance, tmp_path: Path) -> None:
    # Twelve refusals on one connection: Exchange would BYE at the tenth. mailtrek keeps
    # errors + APPENDs in flight under 8 and renews the connection, so it never does.
    login, pw = new_user(dovecot_src, "es")
    items = [(("INBOX",), msg(f"p{i}", headers=b"X-Poison: yes\r\n"), SEEN, WHEN)
             for i in range(12)] + [(("INBOX",), msg(f"ok{i}"), SEEN, WHEN) for i in range(6)]
    asyncio.run(load(dovecot_src, login, pw, items))
    dst = (dovecot_dst, *new_user(dovecot_dst, "ed"))

    async def run() -> tuple[Any, ...]:
        async with ExchangeFront("127.0.0.1", dovecot_dst.port,
                                 poison=b"X-Poison: yes") as front:
            report, _ = await run_copy((dovecot_src, login, pw), dst, front.port,
                                       tmp_path / "e.db", connections=1)
            return front, report, await messages(*dst)

    front, report, final = asyncio.run(run())
    assert front.poisoned == 12 and front.byes == 0
    assert len(report.skipped) == 12 and not report.errors
    assert sorted(by_id(final[("INBOX",)])) == sorted(f"ok{i}" for i in range(6))


def test_front_speaks_exchange(dovecot_dst: DovecotInstance) -> None:
    """The double itself: capabilities, reserved Files, long line, BYE, throttling."""
    login, pw = new_user(dovecot_dst, "fr")

    async def run() -> dict[str, Any]:
        out: dict[str, Any] = {}
        async with ExchangeFront("127.0.0.1", dovecot_dst.port, max_errors=3,
                                 throttle_limit=1000, backoff_ms=400) as front:
            def session() -> None:
                imap = imaplib.IMAP4("127.0.0.1", front.port)
                imap.login(login, pw)
                out["caps"] = set(imap.capability()[1][0].decode().upper().split())
                out["create"] = imap.create("files")
                big = b"Subject: x\r\n\r\n" + b"y" * 11_000 + b"\r\n"
                out["append"] = _raw_append(imap, big)
                out["third"] = imap.create("Files")[0]  # the third error: then BYE
                try:
                    imap.noop()
                except imaplib.IMAP4.abort as e:
                    out["bye"] = str(e)
            await asyncio.to_thread(session)
            front.throttle_limit = 0  # the next command trips

            def throttled() -> None:
                for key in ("throttled", "again"):  # the second: still in the back-off
                    try:
                        imaplib.IMAP4("127.0.0.1", front.port).login(login, pw)
                    except (imaplib.IMAP4.error, imaplib.IMAP4.abort) as e:
                        out[key] = str(e)
            await asyncio.to_thread(throttled)
            front.throttle_limit = None
            await asyncio.sleep(0.5)

            def later() -> None:
                imap = imaplib.IMAP4("127.0.0.1", front.port)
                out["later"] = imap.login(login, pw)[0]
                imap.logout()
            await asyncio.to_thread(later)
        return out

    out = asyncio.run(run())
    assert "MULTIAPPEND" not in out["caps"] and "CONDSTORE" not in out["caps"]
    assert {"LITERAL+", "UIDPLUS", "IMAP4REV1"} <= out["caps"]
    assert out["create"] == ("NO", [b"Folder name is reserved."])
    assert out["append"].startswith(b"BAD Command Argument Error 11")
    assert out["third"] == "NO" and "too many errors" in out["bye"]
    assert "Suggested Backoff Time" in out["throttled"]
    assert "Suggested Backoff Time" in out["again"]
    assert out["later"] == "OK"


def _raw_append(imap: imaplib.IMAP4, data: bytes) -> bytes:
    """APPEND with a synchronizing literal; return the tagged answer's text."""
    tag = imap._new_tag()  # type: ignore[attr-defined]
    imap.send(tag + b" APPEND INBOX () {" + str(len(data)).encode() + b"}\r\n")
    assert imap.readline().startswith(b"+")
    imap.send(data + b"\r\n")
    while True:
        line = imap.readline()
        if line.startswith(tag + b" "):
            return line[len(tag) + 1:].strip()


def test_throttled_login_names_exchanges_back_off(dovecot_dst: DovecotInstance) -> None:
    login, pw = new_user(dovecot_dst, "tl")

    async def run() -> ThrottledError:
        async with ExchangeFront("127.0.0.1", dovecot_dst.port, throttle_limit=0,
                                 backoff_ms=2500) as front:
            st = exchange_store(dovecot_dst, login, pw, front.port, connections=1)
            try:
                await st.connect()
            except ThrottledError as e:
                return e
            finally:
                await st.close()
        raise AssertionError("not throttled")

    err = asyncio.run(run())
    assert err.retry_after is not None and 2.0 <= err.retry_after <= 2.5


def test_keep_read_receipts_and_plain_messages_are_left_alone() -> None:
    assert prepare(RECEIPT, disarm_read_receipts=False).raw == RECEIPT
    disarmed = prepare(RECEIPT, disarm_read_receipts=True).raw
    assert len(disarmed) == len(RECEIPT) and b"\nX-Disposition-Notification: " in disarmed
    assert restore_disarmed(disarmed) == RECEIPT  # what verify needs to compare bytes
    plain = prepare(FLAGGED, disarm_read_receipts=True)
    assert plain.raw == FLAGGED and not plain.notes and not plain.stamped
    # base64 with one long line is re-wrapped, same content.
    b64 = msg("b64", b"QUJD" * 5000 + b"\r\n", ctype=b"application/pdf", cte=b"base64")
    out = prepare(b64, disarm_read_receipts=True)
    assert longest_line(out.raw) <= 998 and out.stamped
    assert leaves(out.raw) == leaves(b64) and not out.lossy


def test_opener_marks_the_m365_imap_route_as_exchange() -> None:
    addr = parse_address("m365+imap://dave@contoso.test")
    tenant = TenantConfig(tenant_id="t", client_id="c", client_secret="s")
    opts = OpenOptions(tenant=tenant, readonly=False)
    st = open_store(spec_for(addr, opts))
    assert isinstance(st, ExchangeImapStore)
    assert st.settings.exchange and st.settings.disarm_read_receipts
    assert (st.settings.params.host, st.settings.credentials.mechanism) == ("outlook.office365.com", "xoauth2")
    opts.disarm_read_receipts = False
    assert not open_store(spec_for(addr, opts)).settings.disarm_read_receipts
    plain = open_store(spec_for(parse_address("imap://u@127.0.0.1:1"), OpenOptions(password="p")))
    assert not plain.settings.exchange and not isinstance(plain, ExchangeImapStore)


def test_nested_mime_is_re_encoded_part_by_part_without_loss() -> None:
    inner = msg("inner", b"<b>" + b"z" * 12_000 + b"</b>\r\n", ctype=b"text/html")
    raw = (b"From: a@example.org\r\nSubject: nested\r\nMessage-ID: <n@x>\r\nMIME-Version: 1.0\r\n"
           b"Content-Type: multipart/mixed; boundary=\"OUT\"\r\n\r\npreamble\r\n--OUT\r\n"
           b"Content-Type: text/plain\r\n\r\nshort and untouched\r\n--OUT\r\n"
           b"Content-Type: message/rfc822\r\n\r\n" + inner + b"\r\n--OUT\r\n"
           b"Content-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n\r\n"
           + b"iVBORw0KGgo" * 2000 + b"=\r\n--OUT--\r\nepilogue\r\n")
    out = prepare(raw, disarm_read_receipts=True)
    assert longest_line(out.raw) <= 998 and not out.lossy
    assert leaves(out.raw) == leaves(raw)
    assert b"short and untouched\r\n--OUT\r\n" in out.raw  # untouched parts stay byte-exact
    assert b"preamble\r\n--OUT" in out.raw and out.raw.endswith(b"--OUT--\r\nepilogue\r\n")
    assert len(out.notes) == 2 and fingerprint(out.raw) == fingerprint(raw)


def test_origin_stamp_is_strict_and_only_a_destination_honours_it() -> None:
    from mailtrek.fingerprint import origin_stamp, parse_origin

    fp = fingerprint(LONG)
    line = origin_stamp(fp, 1234)
    assert parse_origin(line.split(b": ", 1)[1]) == (fp, 1234)
    for bad in (b"", b"fp=zz; size=1", b"fp=" + fp.encode() + b"; size=-1",
                b"fp=" + fp.encode() + b"; size=1 extra", None):
        assert parse_origin(bad) is None


def test_a_source_ignores_origin_stamps(dovecot_src: DovecotInstance) -> None:
    # A mailbox migrated once (stamped) and now a source again: it is what it is.
    login, pw = new_user(dovecot_src, "os")
    stamped = prepare(LONG, disarm_read_receipts=False).raw
    asyncio.run(load(dovecot_src, login, pw, [(("INBOX",), stamped, SEEN, WHEN)]))

    async def listing(readonly: bool) -> tuple[str | None, int]:
        st = store(dovecot_src, login, pw, readonly=readonly, connections=1)
        await st.connect()
        try:
            inbox = next(f for f in await st.list_folders() if f.path == ("INBOX",))
            [meta] = await st.list_messages(inbox, fingerprints=True)
            return meta.fingerprint, meta.size
        finally:
            await st.close()

    assert asyncio.run(listing(readonly=True))[1] > len(LONG)  # the real size
    assert asyncio.run(listing(readonly=False)) == (fingerprint(LONG), len(LONG))


def test_flagged_arrives_flagged_however_appends_and_stores_interleave(
        dovecot_src: DovecotInstance, dovecot_dst: DovecotInstance, tmp_path: Path) -> None:
    # The STORE after an APPEND may go out on a connection that selected the folder
    # before the APPEND: UID STORE then silently skips the unseen UID (RFC 3501). mailtrek
    # checks the answer names the UID and syncs (NOOP) and retries when it does not.
    login, pw = new_user(dovecot_src, "fl")
    folders = [("INBOX",), ("Sent",), ("Work",)]
    items = [(folders[i % 3], msg(f"f{i}"), SEEN | {"\\Flagged"} if i % 2 else SEEN, WHEN)
             for i in range(36)]
    asyncio.run(load(dovecot_src, login, pw, items))
    dst = (dovecot_dst, *new_user(dovecot_dst, "fd"))

    async def run() -> tuple[Any, ...]:
        async with ExchangeFront("127.0.0.1", dovecot_dst.port) as front:
            report, _ = await run_copy((dovecot_src, login, pw), dst, front.port,
                                       tmp_path / "f.db")
            return report, await messages(*dst)

    report, final = asyncio.run(run())
    assert not report.errors and not report.skipped
    flagged = {mid for rows in final.values() for mid, [(_, fl)] in by_id(rows).items()
               if "\\Flagged" in fl}
    assert flagged == {f"f{i}" for i in range(36) if i % 2}


def test_commands_cut_off_by_a_throttling_hang_up_carry_its_back_off(
        dovecot_dst: DovecotInstance) -> None:
    """Exchange answers one command "throttled" and hangs up: the others in flight must
    fail as throttled too (with the back-off), not as a plain lost connection."""
    from mailtrek.stores.imap.connection import ImapConnection

    login, pw = new_user(dovecot_dst, "tc")

    async def run() -> list[BaseException | Any]:
        async with ExchangeFront("127.0.0.1", dovecot_dst.port, throttle_limit=4,
                                 backoff_ms=3000) as front:
            conn = ImapConnection(ConnectParams("127.0.0.1", front.port, "none"))
            await conn.open()
            try:
                await conn.login(Credentials(login, pw))
                futures = await conn.send_many([(b"NOOP", None)] * 12)
                return list(await asyncio.gather(*futures, return_exceptions=True))
            finally:
                await conn.close()

    answers = asyncio.run(run())
    failed = [a for a in answers if isinstance(a, BaseException)]
    throttled = [a for a in answers if not isinstance(a, BaseException) and a.throttled]
    assert throttled and failed  # one answer named the throttle, the rest were cut off
    assert all(isinstance(e, ThrottledError) and e.retry_after is not None
               and 2.5 <= e.retry_after <= 3.0 for e in failed), failed
