"""The sync layer on top of the Exchange handling: throttling back-offs honoured between
passes, messages changed for Exchange reported, and ``mailtrek verify`` that understands
what the Exchange route changes on purpose (and still finds what went wrong).

Real parts only: Dovecot, the Exchange-like front over it (made reachable over TLS, as
``m365+imap`` requires), and the Microsoft 365 simulator for the Graph route.
"""

from __future__ import annotations

import asyncio
import contextlib
import imaplib
import json
import ssl
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from imap_helpers import load, new_user, store
from mailtrek.devtools.dovecot import DovecotInstance
from mailtrek.devtools.exchange_front import ExchangeFront
from mailtrek.errors import ThrottledError, TransientError
from mailtrek.model import Message
from mailtrek.state.db import MailboxState, open_engine
from mailtrek.stores.imap.connection import ConnectParams, Credentials
from mailtrek.stores.imap.exchange_store import ExchangeImapStore
from mailtrek.stores.imap.store import ImapSettings
from mailtrek.sync.engine import BACKOFF, copy_mailbox
from mailtrek.sync.executor import FolderOutcome
from mailtrek.sync.options import ChangedItem, CopyOptions, CopyReport, FolderReport
from mailtrek.sync.report import changes_summary, report_dict, summary_line
from test_cli_copy import mailtrek
from test_copy_m365 import (  # noqa: F401  (fixtures, used by name)
    exchange_imap,
    m365_args,
    m365_env,
    sim,
)

SEEN = frozenset({"\\Seen"})
WHEN = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


def msg(n: str, body: bytes = b"hello\r\n", *, headers: bytes = b"") -> bytes:
    return (b"From: Ann <ann@example.org>\r\nTo: bob@example.org\r\n"
            b"Subject: message " + n.encode() + b"\r\nMessage-ID: <" + n.encode()
            + b"@example.org>\r\nDate: Fri, 1 Mar 2024 12:00:00 +0000\r\n" + headers
            + b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
            b"Content-Transfer-Encoding: 8bit\r\n\r\n" + body)


LONG = msg("long", ("Grüße " * 4000).encode() + b"\r\nsecond line\r\n")  # a 28,000-octet line
LONG_HEADER = msg("longheader", headers=b"X-Blob: " + b"x" * 15000 + b"\r\n")  # lossy
RECEIPT = msg("receipt", headers=b"Disposition-Notification-To: ann@example.org\r\n")
MDN = msg("mdn")
PLAIN = msg("plain")
# Loaded in this order, so source UIDs are 1..5.
SOURCE = [(LONG, SEEN), (LONG_HEADER, SEEN), (RECEIPT, frozenset()),
          (MDN, SEEN | {"$MDNSent", "Project"}), (PLAIN, SEEN | {"\\Flagged"})]


# -- helpers ----------------------------------------------------------------------------
class TlsFront:
    """TLS on 127.0.0.1 in front of a plain port: what ``m365+imap`` insists on."""

    def __init__(self, cert: Path, key: Path, port: int) -> None:
        self.ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ctx.load_cert_chain(str(cert), str(key))
        self.backend = port
        self.port = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> TlsFront:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.ctx)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        with contextlib.suppress(Exception):
            await self._server.wait_closed()

    async def _serve(self, cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        try:
            sr, sw = await asyncio.open_connection("127.0.0.1", self.backend)
        except OSError:
            cw.close()
            return

        async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await r.read(65536):
                    w.write(data)
                    await w.drain()
            with contextlib.suppress(Exception):
                w.close()

        await asyncio.gather(pipe(cr, sw), pipe(sr, cw))


def exchange_store(port: int, login: str, pw: str, connections: int = 4) -> ExchangeImapStore:
    params = ConnectParams("127.0.0.1", port, "none", timeout=15)
    return ExchangeImapStore(ImapSettings(params, Credentials(login, pw), connections=connections,
                                          readonly=False, exchange=True, disarm_read_receipts=True),
                             label="exchange")


async def copy_into_front(src: tuple[DovecotInstance, str, str], front_port: int,
                          dst: tuple[str, str], db: Path, *, connections: int = 4,
                          source_port: int | None = None
                          ) -> tuple[CopyReport, list[tuple[float, str, dict[str, Any]]]]:
    """Copy with the engine into the Exchange front; return the report and its events
    (loop time, kind, fields). ``source_port``: reach the source through that port."""
    events: list[tuple[float, str, dict[str, Any]]] = []
    loop = asyncio.get_running_loop()
    s = store(*src, port=source_port)
    d = exchange_store(front_port, *dst, connections=connections)
    await s.connect()
    await d.connect()
    try:
        state = MailboxState(open_engine(db), "x")
        report = await copy_mailbox(
            s, d, state, CopyOptions(),
            progress=lambda kind, **f: events.append((loop.time(), kind, f)))
        return report, events
    finally:
        await s.close()
        await d.close()


def tamper(port: int, login: str, pw: str) -> None:
    """On the destination: delete the receipt copy, replace the plain one's body."""
    imap = imaplib.IMAP4("127.0.0.1", port)
    imap.login(login, pw)
    imap.select("INBOX")
    for mid in ("receipt", "plain"):
        _, [found] = imap.search(None, "HEADER", "Message-ID", f"{mid}@example.org")
        assert found.split(), mid
        for num in found.split():
            imap.store(num.decode(), "+FLAGS", "\\Deleted")
    imap.expunge()
    changed = msg("plain", b"hello, but not what the source has\r\n")
    imap.append("INBOX", "(\\Seen \\Flagged)", imaplib.Time2Internaldate(WHEN), changed)
    imap.logout()


# -- 2 + 3: through the command line, over TLS into the Exchange front -------------------------
async def test_cli_copy_reports_changes_and_verify_accepts_them_but_not_damage(
        dovecot_src: DovecotInstance, sim: Any, exchange_imap: DovecotInstance,  # noqa: F811
        tmp_path: Path) -> None:
    src = new_user(dovecot_src, "rv")
    await load(dovecot_src, *src, [(("INBOX",), raw, flags, WHEN) for raw, flags in SOURCE])
    user, user_pw = "carol@contoso.test", "unused-carol"
    bundle = tmp_path / "ca-bundle.pem"  # the simulator's CA (tokens) and the IMAP side's
    bundle.write_text(Path(sim.ca_file).read_text() + Path(exchange_imap.ca_file).read_text())
    ssl_dir = exchange_imap.root / "ssl"
    report_file = tmp_path / "r.json"
    async with (ExchangeFront("127.0.0.1", exchange_imap.port) as front,
                TlsFront(ssl_dir / "cert.pem", ssl_dir / "key.pem", front.port) as tls):
        common = [f"imap://{src[0]}@127.0.0.1:{dovecot_src.port}", f"m365+imap://{user}",
                  *m365_args(sim), "--ca-file", str(bundle),
                  "--m365-imap-host", f"127.0.0.1:{tls.port}"]

        def cli(*args: str) -> Any:
            return asyncio.to_thread(mailtrek, *args, env=m365_env(src))

        copy = await cli("copy", *common, "--state", str(tmp_path / "s.db"),
                         "--json-report", str(report_file))
        verified = await cli("verify", *common)
        await asyncio.to_thread(tamper, exchange_imap.port, user, user_pw)
        damaged = await cli("verify", *common, "--json-report", str(tmp_path / "v.json"))
    assert copy.returncode == 0, copy.stdout + copy.stderr
    assert front.long_lines == 0 and front.appends >= len(SOURCE)  # it really went through

    # The JSON report: every old key still there, the changed messages named per folder.
    rep = json.loads(report_file.read_text())
    assert {"source", "destination", "started", "finished", "elapsed_seconds", "dry_run",
            "complete", "totals", "folders", "skipped", "errors"} <= set(rep)
    assert {"selected", "copied", "adopted", "already", "skipped", "failed", "flags_updated",
            "bytes_copied", "planned", "planned_bytes"} <= set(rep["totals"])
    assert rep["totals"]["copied"] == len(SOURCE) and rep["complete"] is True
    [inbox] = [f for f in rep["folders"] if f["source"] == "INBOX"]
    assert {"source", "destination", "copied", "error", "renamed"} <= set(inbox)
    notes = {n["uid"]: n for n in inbox["notes"]}
    assert sorted(notes) == [1, 2, 3]  # long, longheader, receipt; not mdn/plain
    assert notes[1]["subject"] == "message long" and notes[1]["lossy"] is False
    assert "re-encoded" in notes[1]["note"]
    assert notes[2]["lossy"] is True and "X-Blob header wrapped" in notes[2]["note"]
    assert "read receipt request disarmed" in notes[3]["note"] and not notes[3]["lossy"]
    assert rep["totals"]["changed"] == 3
    # The printed summary: one short sentence, not a line per message.
    assert ("3 messages changed for Exchange (long lines re-encoded, read receipts disarmed; "
            "1 with a value that could not be kept exactly); see the report") in copy.stdout
    assert "X-Blob" not in copy.stdout and "message long" not in copy.stdout
    # Keywords the route does not carry are said once, in the report and on the terminal.
    assert "not carried: $MDNSent (1 messages)" in copy.stdout
    assert any("$MDNSent" in w for w in rep["warnings"])

    # verify: stamped copies by origin, the receipt by restored bytes, $MDNSent ignored.
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "5 matched, 0 missing, 0 different, 0 extra" in verified.stdout, verified.stdout

    # ... and damage is still found: a lost message and a changed body.
    assert damaged.returncode == 1, damaged.stdout + damaged.stderr
    res = json.loads((tmp_path / "v.json").read_text())
    problems = {(p["kind"], p.get("uid"), p["detail"]) for p in res["problems"]}
    assert ("missing", 3, None) in problems  # the receipt
    assert ("different", 5, "content differs") in problems  # the plain one
    assert res["totals"]["matched"] == 3 and not res["ok"]


# -- 2: the Graph route's notes (simulator) ----------------------------------------------------
async def test_graph_route_reports_disarmed_read_receipts(
        dovecot_src: DovecotInstance, sim: Any, tmp_path: Path) -> None:  # noqa: F811
    src = new_user(dovecot_src, "gr")
    await load(dovecot_src, *src, [(("INBOX",), raw, SEEN, WHEN)
                                   for raw in (RECEIPT, PLAIN, MDN)])
    report_file = tmp_path / "g.json"
    r = await asyncio.to_thread(
        mailtrek, "copy", f"imap://{src[0]}@127.0.0.1:{dovecot_src.port}",
        "m365://erin@contoso.test", *m365_args(sim), "--ca-file", str(sim.ca_file),
        "--state", str(tmp_path / "g.db"), "--json-report", str(report_file),
        env=m365_env(src))
    assert r.returncode == 0, r.stdout + r.stderr
    rep = json.loads(report_file.read_text())
    notes = [n for f in rep["folders"] for n in f["notes"]]
    assert [(n["uid"], n["subject"], n["note"]) for n in notes] == [
        (1, "message receipt", "read receipt request disarmed")]
    assert "1 message changed for Exchange (read receipts disarmed); see the report" in r.stdout
    # A re-run copies nothing, so it has nothing to report as changed.
    again = await asyncio.to_thread(
        mailtrek, "copy", f"imap://{src[0]}@127.0.0.1:{dovecot_src.port}",
        "m365://erin@contoso.test", *m365_args(sim), "--ca-file", str(sim.ca_file),
        "--state", str(tmp_path / "g.db"), env=m365_env(src))
    assert again.returncode == 0 and "changed for Exchange" not in again.stdout


# -- 1: a throttling answer's back-off is waited before the next pass -------------------------
async def test_a_throttled_pass_is_followed_only_after_the_suggested_back_off(
        dovecot_src: DovecotInstance, dovecot_dst: DovecotInstance, tmp_path: Path) -> None:
    # Throttled APPENDs: the engine keeps the ThrottledError (not a plain "retryable
    # failure") and starts the next pass no earlier than the back-off Exchange named,
    # counted from the answer (the store's connections may have waited part of it already).
    src = (dovecot_src, *new_user(dovecot_src, "th"))
    await load(*src, [(("INBOX",), msg(f"t{i}"), SEEN, WHEN) for i in range(30)])
    dst = new_user(dovecot_dst, "td")
    async with ExchangeFront("127.0.0.1", dovecot_dst.port, throttle_limit=20,
                             backoff_ms=2500, throttle_trips=1) as front:
        report, events = await copy_into_front(src, front.port, dst, tmp_path / "t.db",
                                               connections=2)
    assert front.trips == 1
    retries = [(t, f) for t, kind, f in events if kind == "retry"]
    assert retries, events
    at, first = retries[0]
    assert first["throttled"] is True and "Suggested Backoff Time" in first["reason"]
    # The front's own clock says when the back-off ends (loop time is time.monotonic).
    assert at + first["wait"] >= front._blocked_until - 0.05, (at, first, front._blocked_until)
    assert first["wait"] <= 2.5
    assert not report.errors and report.total("copied") + report.total("adopted") == 30


async def test_other_retryable_failures_keep_the_default_back_off(
        dovecot_src: DovecotInstance, dovecot_dst: DovecotInstance, tmp_path: Path) -> None:
    # Exchange hangs up after 3 errors: APPENDs in flight are lost, not throttled.
    src = (dovecot_src, *new_user(dovecot_src, "bo"))
    items = [msg(f"ok{i}") for i in range(6)] + [
        msg(f"bad{i}", headers=b"X-Poison: yes\r\n") for i in range(4)]
    await load(*src, [(("INBOX",), raw, SEEN, WHEN) for raw in items])
    dst = new_user(dovecot_dst, "bd")
    async with ExchangeFront("127.0.0.1", dovecot_dst.port, max_errors=3,
                             poison=b"X-Poison: yes") as front:
        report, events = await copy_into_front(src, front.port, dst, tmp_path / "b.db",
                                               connections=1)
    assert front.byes >= 1
    retries = [f for _t, kind, f in events if kind == "retry"]
    assert retries and not any(f["throttled"] for f in retries)
    assert retries[0]["wait"] == BACKOFF[0]
    assert len(report.skipped) == 4 and not report.errors


async def test_a_throttling_answer_wins_over_an_earlier_plain_failure() -> None:
    # The front answers "throttled" and hangs up: other APPENDs in flight on that
    # connection fail as plain transient errors, maybe before the throttled one is seen.
    out = FolderOutcome()
    first_cut = TransientError("connection closed")
    throttled = ThrottledError("APPEND throttled", retry_after=3.0)
    out.note_transient(first_cut)
    out.note_transient(throttled)
    out.note_transient(ThrottledError("again", retry_after=1.0))
    out.note_transient(TransientError("later cut"))
    assert out.transient is throttled and out.transient_at is not None


# -- 2: the summary's wording ------------------------------------------------------------
def test_changes_summary_is_short_and_absent_without_changes() -> None:
    report = CopyReport(source="s", destination="d", started=WHEN, finished=WHEN)
    report.folders = [FolderReport(source="INBOX", destination="INBOX", copied=3)]
    assert changes_summary(report) is None
    assert "changed" not in summary_line(report)
    assert report_dict(report)["totals"]["changed"] == 0
    report.folders[0].notes = [
        ChangedItem(1, "a", "changed for Exchange: text/plain part re-encoded as "
                            "quoted-printable (a line had 12,000 octets)"),
        ChangedItem(2, "b", "read receipt request disarmed"),
        ChangedItem(3, None, "importMime refused (bad MIME); sent as JSON"),
        ChangedItem(4, "d", "something new"),
    ]
    line = changes_summary(report)
    assert line == ("4 messages changed for Exchange (long lines re-encoded, read receipts "
                    "disarmed, sent as JSON (MIME not kept exactly), other changes); see the "
                    "report")
    assert summary_line(report).endswith("; " + line)
    assert report_dict(report)["folders"][0]["notes"][2] == {
        "uid": 3, "subject": None, "note": "importMime refused (bad MIME); sent as JSON",
        "lossy": False, "date_source": None, "date_dest": None}


# -- 3: verify at the engine level, without the command line -----------------------------------
async def test_verify_api_sees_a_stamp_that_lies_about_its_size(
        dovecot_src: DovecotInstance, dovecot_dst: DovecotInstance) -> None:
    # A stamped copy is matched by the fingerprint and size it names: one naming a size
    # the source does not have is no match (the stamp is checked, not just present).
    from mailtrek.stores.imap.exchange import prepare
    from mailtrek.sync.verify import verify_mailbox

    src = (dovecot_src, *new_user(dovecot_src, "vs"))
    await load(*src, [(("INBOX",), LONG, SEEN, WHEN), (("INBOX",), RECEIPT, SEEN, WHEN)])
    dst_login, dst_pw = new_user(dovecot_dst, "vd")
    good = prepare(LONG, disarm_read_receipts=True).raw
    lying = good.replace(b"; size=%d" % len(LONG), b"; size=%d" % (len(LONG) + 1), 1)
    assert lying != good
    disarmed = prepare(RECEIPT, disarm_read_receipts=True).raw

    async def check(long_copy: bytes) -> dict[str, Any]:
        d = store(dovecot_dst, dst_login, dst_pw, readonly=False)
        await d.connect()
        try:
            inbox = await d.ensure_folder(("INBOX",))
            for raw in (long_copy, disarmed):
                assert (await d.append(inbox, Message(uid=0, raw=raw, flags=SEEN,
                                                      internaldate=WHEN))).ok
        finally:
            await d.close()
        s = store(*src)
        x = exchange_store(dovecot_dst.port, dst_login, dst_pw)
        await s.connect()
        await x.connect()
        try:
            return await verify_mailbox(s, x, CopyOptions())
        finally:
            await s.close()
            await x.close()
            await asyncio.to_thread(_empty_inbox, dovecot_dst.port, dst_login, dst_pw)

    ok = await check(good)
    assert ok["ok"] and ok["totals"]["matched"] == 2, ok["problems"]
    bad = await check(lying)
    assert not bad["ok"] and bad["totals"]["different"] == 1, bad["problems"]
    # A plain IMAP destination (no Exchange) compares bytes: the same copies differ.
    s, p = store(*src), store(dovecot_dst, dst_login, dst_pw)
    d = store(dovecot_dst, dst_login, dst_pw, readonly=False)
    await d.connect()
    try:
        inbox = await d.ensure_folder(("INBOX",))
        for raw in (good, disarmed):
            await d.append(inbox, Message(uid=0, raw=raw, flags=SEEN, internaldate=WHEN))
    finally:
        await d.close()
    await s.connect()
    await p.connect()
    try:
        plain = await verify_mailbox(s, p, CopyOptions())
    finally:
        await s.close()
        await p.close()
    assert plain["totals"]["different"] == 2 and plain["totals"]["matched"] == 0


def _empty_inbox(port: int, login: str, pw: str) -> None:
    imap = imaplib.IMAP4("127.0.0.1", port)
    imap.login(login, pw)
    imap.select("INBOX")
    imap.store("1:*", "+FLAGS", "\\Deleted")
    imap.expunge()
    imap.logout()
