"""``mailtrek copy`` into Microsoft 365: Graph into the simulator, and IMAP with XOAUTH2
against a real Dovecot that accepts the simulator's app-only tokens."""

from __future__ import annotations

import json
import shutil
import sqlite3
import tempfile
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest

from imap_helpers import corpus_files, dump, load, new_user
from mailtrek.sim import SimConfig, Simulator, UserSpec
from mailtrek.stores.m365.dates import header_date
from test_cli_copy import mailtrek

T0 = datetime(2023, 1, 1, tzinfo=UTC)
USERS = ["alice@contoso.test", "bob@contoso.test", "carol@contoso.test", "dave@contoso.test",
         "erin@contoso.test", "frank@contoso.test", "grace@contoso.test"]


# Each value of each switch Microsoft leaves open (mailtrek sim --concurrency-scope,
# --import-mime-received): the documented app scope with header dates, and the field's
# per-mailbox scope with importMime stamping the time of the import.
MODES = [("app", "headers"), ("mailbox", "now")]


@pytest.fixture(scope="module", params=MODES, ids=["app-headers", "mailbox-now"])
def sim(request: pytest.FixtureRequest) -> Iterator[Simulator]:
    scope, received = request.param
    with Simulator(SimConfig(users=[UserSpec(u) for u in USERS], concurrency_scope=scope,
                             import_mime_received=received)) as running:
        yield running


def dates_kept(sim: Simulator, upn: str, seeded: list,  # type: ignore[type-arg]
               listed: list[dict] | None = None) -> None:  # type: ignore[type-arg]
    """Every message's received date is its own source INTERNALDATE (within 2 s), or the
    report lists it once, with that INTERNALDATE and the received date it has now.

    Compared message by message (a listed entry names its source folder and UID; a fresh
    source user numbers each folder's UIDs from 1 in seeding order), then as sorted lists
    of dates: a date merely equal to *some* source date proves nothing, since corpus
    messages share headers, and one message's header date is another's INTERNALDATE.
    """
    def close(a: datetime, b: datetime) -> bool:
        return abs((a - b).total_seconds()) <= 2

    def when(text: str) -> datetime:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))

    source: dict[tuple[str, int], datetime] = {}
    numbered: Counter[str] = Counter()
    for path, _raw, _flags, date in seeded:
        numbered["/".join(path)] += 1
        source["/".join(path), numbered["/".join(path)]] = date.replace(microsecond=0)
    expected = dict(source)
    for entry in listed or []:
        key = (entry["folder"], entry["uid"])
        assert key in source and expected[key] is source[key], entry  # one entry a message
        assert close(when(entry["source_date"]), source[key]), entry
        assert not close(when(entry["destination_date"]), source[key]), entry
        expected[key] = when(entry["destination_date"])
    got = sorted(when(m.props["receivedDateTime"]) for m in sim.messages(upn))
    want = sorted(expected.values())
    assert len(got) == len(want)
    wrong = [(g, w) for g, w in zip(got, want, strict=True) if not close(g, w)]
    assert not wrong, wrong[:3]


def m365_args(sim: Simulator) -> list[str]:
    return ["--m365-authority", sim.authority(), "--graph-url", f"{sim.base_url}/graph"]


def m365_env(src: tuple[str, str]) -> dict[str, str]:
    return {"MAILTREK_SOURCE_PASSWORD": src[1], "MAILTREK_M365_TENANT_ID": "contoso",
            "MAILTREK_M365_CLIENT_ID": "mailtrek-tests", "MAILTREK_M365_CLIENT_SECRET": "s3cr3t-value"}


def items(n: int, corpus_dir: Path | None) -> list:  # type: ignore[type-arg]
    raws = [raw for _n, raw, _s in corpus_files(corpus_dir)][:n] or [
        b"Subject: m%d\r\nMessage-ID: <m%d@t>\r\nFrom: a@b.c\r\nDate: %s\r\n\r\nbody %d\r\n"
        % (i, i, format_datetime(T0 + timedelta(minutes=i)).encode(), i) for i in range(n)]
    folders = [("INBOX",), ("Sent",), ("Projekte", "Übersicht"), ("Files",)]
    flags = [frozenset({"\\Seen"}), frozenset({"\\Flagged", "Kunde"}), frozenset()]
    # INTERNALDATE as a delivering server stamps it: the topmost Received (else Date)
    # header's time, for every third message a different one (moved or restored mail).
    return [(folders[i % 4], raw, flags[i % 3],
             (header_date(raw) if i % 3 and header_date(raw) else T0 + timedelta(hours=i)))
            for i, raw in enumerate(raws)]


async def test_copy_into_graph_then_rerun_and_verify(dovecot_src, sim: Simulator, corpus_dir,
                                                     tmp_path: Path) -> None:
    src = new_user(dovecot_src)
    seeded = items(60, corpus_dir)
    await load(dovecot_src, *src, seeded)
    args = [f"imap://{src[0]}@127.0.0.1:{dovecot_src.port}", "m365://alice@contoso.test",
            *m365_args(sim), "--ca-file", str(sim.ca_file), "--state", str(tmp_path / "s.db")]
    r = mailtrek("copy", *args, "--json-report", str(tmp_path / "r.json"), env=m365_env(src))
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"copied {len(seeded)} messages" in r.stdout
    stored = sim.messages("alice@contoso.test")
    assert len(stored) == len(seeded)
    assert not any(m.props.get("isDraft") for m in stored)
    report = json.loads((tmp_path / "r.json").read_text())
    dates_kept(sim, "alice@contoso.test", seeded, report["dates_not_kept"])
    if sim.config.import_mime_received == "headers":
        assert sum(m.mime_exact for m in stored) >= len(seeded) // 2  # importMime, exact bytes
    else:  # the tenant learned from its first dated message and remembers it in the state
        # database; a message without Received or Date proves nothing (any importMime dates
        # it now), so one sent before the lesson keeps exact MIME and is listed (above)
        assert all(header_date(m.mime or b"") is None for m in stored if m.mime_exact)
        assert "import_mime_received" in sqlite3.connect(tmp_path / "s.db").execute(
            "SELECT profile FROM tenant_profiles").fetchone()[0]
    names = {sim.folder_path("alice@contoso.test", f.id) for f in sim.folders("alice@contoso.test")
             if sim.messages("alice@contoso.test", f.id)}
    assert "Files (migrated)" in str(names) and "Übersicht" in str(names)
    again = mailtrek("copy", *args, env=m365_env(src))
    assert again.returncode == 0 and "copied 0 messages" in again.stdout
    assert len(sim.messages("alice@contoso.test")) == len(seeded)
    v = mailtrek("verify", *args[:-2], env=m365_env(src))
    assert v.returncode == 0, v.stdout
    for out in (r, again, v):
        assert "s3cr3t-value" not in out.stdout + out.stderr


async def test_lost_answers_and_lost_state_never_duplicate(dovecot_src, sim: Simulator,
                                                           tmp_path: Path) -> None:
    src = new_user(dovecot_src)
    seeded = items(24, None)
    await load(dovecot_src, *src, seeded)
    args = [f"imap://{src[0]}@127.0.0.1:{dovecot_src.port}", "m365://bob@contoso.test",
            *m365_args(sim), "--ca-file", str(sim.ca_file)]
    # Commit some creates but lose their answers, as a dropped link would.
    first = sim.request_count + 1
    sim.drop_response_after_commit(*range(first + 5, first + 60, 7))
    r = mailtrek("copy", *args, "--state", str(tmp_path / "a.db"), env=m365_env(src))
    assert r.returncode == 0, r.stdout + r.stderr
    assert len(sim.messages("bob@contoso.test")) == len(seeded)
    # A new state file: everything is found on the destination, nothing copied again.
    r2 = mailtrek("copy", *args, "--state", str(tmp_path / "b.db"), env=m365_env(src))
    assert r2.returncode == 0, r2.stdout + r2.stderr
    assert "copied 0 messages" in r2.stdout
    assert len(sim.messages("bob@contoso.test")) == len(seeded)


def test_user_without_mailbox_is_a_clear_error(dovecot_src, sim: Simulator, tmp_path: Path) -> None:
    src = new_user(dovecot_src)
    sim.add_user("nomail@contoso.test", has_mailbox=False)
    r = mailtrek("copy", f"imap://{src[0]}@127.0.0.1:{dovecot_src.port}",
                 "m365://nomail@contoso.test", *m365_args(sim), "--ca-file", str(sim.ca_file),
                 "--state", str(tmp_path / "s.db"), env=m365_env(src))
    assert r.returncode != 0
    assert "mailtrek: error:" in r.stderr and "Traceback" not in r.stderr


@pytest.fixture(scope="module")
def exchange_imap(sim: Simulator) -> Iterator[object]:
    """A Dovecot that plays outlook.office365.com: XOAUTH2 with app-only sim tokens."""
    from mailtrek.devtools.dovecot import DovecotInstance, OAuthConfig

    if shutil.which("dovecot") is None:
        pytest.skip("dovecot not installed")
    oauth = OAuthConfig(
        issuer="https://unused.invalid/", scope="unused",
        keys={(sim.token_azp("mailtrek-tests"), sim.jwt_algorithm, sim.jwt_kid):
              sim.jwt_public_key_pem},
        apponly_issuer=sim.imap_oauth_issuer, apponly_scope=sim.imap_oauth_scope,
        apponly_claim=sim.imap_oauth_username_claim,
    )
    inst = DovecotInstance(Path(tempfile.mkdtemp(prefix="mt-exo-")), name="exo", oauth=oauth)
    for u in USERS:
        inst.add_user(u, "unused-" + u.split("@")[0])
    inst.start()
    try:
        yield inst
    finally:
        inst.remove()


async def test_imap_route_with_app_only_xoauth2(dovecot_src, sim: Simulator, exchange_imap,
                                                tmp_path: Path) -> None:
    src = new_user(dovecot_src)
    seeded = items(30, None)
    await load(dovecot_src, *src, seeded)
    bundle = tmp_path / "ca-bundle.pem"  # the simulator's CA and the IMAP server's
    bundle.write_text(Path(sim.ca_file).read_text() + Path(exchange_imap.ca_file).read_text())
    args = [f"imap://{src[0]}@127.0.0.1:{dovecot_src.port}", "m365+imap://carol@contoso.test",
            *m365_args(sim), "--ca-file", str(bundle),
            "--m365-imap-host", f"127.0.0.1:{exchange_imap.ssl_port}"]
    r = mailtrek("copy", *args, "--state", str(tmp_path / "s.db"), env=m365_env(src))
    assert r.returncode == 0, r.stdout + r.stderr
    assert sum(len(v) for v in (await dump(exchange_imap, "carol@contoso.test", "unused-carol")).values()) == len(seeded)
    assert await dump(dovecot_src, *src) == {
        k: v for k, v in (await dump(exchange_imap, "carol@contoso.test", "unused-carol")).items()
        if k[0] != "Files (migrated)"} | {("Files",): (await dump(dovecot_src, *src))[("Files",)]}


async def test_read_receipt_requests_are_disarmed_unless_kept(dovecot_src, sim: Simulator,
                                                              tmp_path: Path) -> None:
    """Outlook would send receipts for old mail: the request is cleared, the MIME kept."""
    src = new_user(dovecot_src)

    def raw(i: int, receipt: bool) -> bytes:
        head = b"Disposition-Notification-To: Sender <s@example.org>\r\n" if receipt else b""
        date = format_datetime(T0 + timedelta(hours=i)).encode()
        return (b"From: Sender <s@example.org>\r\nTo: r@contoso.test\r\nSubject: r%d\r\n"
                b"Date: %s\r\nMessage-ID: <receipt-%d@example.org>\r\n%s\r\nbody %d\r\n"
                % (i, date, i, head, i))

    seeded = [(("INBOX",), raw(i, i < 4), frozenset({"\\Seen"}) if i % 2 else frozenset(),
               T0 + timedelta(hours=i)) for i in range(6)]
    await load(dovecot_src, *src, seeded)
    source = f"imap://{src[0]}@127.0.0.1:{dovecot_src.port}"

    outputs: list[str] = []

    def run(user: str, *extra: str) -> dict[str, tuple[bool, bool, bytes]]:
        r = mailtrek("copy", source, f"m365://{user}", *m365_args(sim), "--ca-file",
                     str(sim.ca_file), "--state", str(tmp_path / f"{user}.db"), *extra,
                     env=m365_env(src))
        assert r.returncode == 0, r.stdout + r.stderr
        outputs.append(r.stdout)
        return {m.props["subject"]: (m.props["isReadReceiptRequested"], m.props["isRead"],
                                     sim.message_mime(user, m.id))
                for m in sim.messages(user)}

    disarmed = run("erin@contoso.test")
    assert len(disarmed) == 6
    assert not any(req for req, _read, _mime in disarmed.values())
    # no --json-report: the changed messages are listed on the terminal
    if sim.config.import_mime_received == "headers":
        assert outputs[0].count("read receipt request disarmed") == 4, outputs[0]
    for i in range(6):  # exact MIME (importMime kept the dates), read state intact
        _req, read, mime = disarmed[f"r{i}"]
        assert read == bool(i % 2)
        assert (mime == seeded[i][1]) == (sim.config.import_mime_received == "headers")
    dates_kept(sim, "erin@contoso.test", seeded)
    kept = run("frank@contoso.test", "--keep-read-receipts")
    assert {s: v[0] for s, v in kept.items()} == {f"r{i}": i < 4 for i in range(6)}
    sim.deny_permission()  # the JSON route (no importMime) clears it at create time
    try:
        json_route = run("grace@contoso.test")
    finally:
        sim.allow_permission()
    assert len(json_route) == 6 and not any(v[0] for v in json_route.values())
