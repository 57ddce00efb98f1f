"""Generated sample mail: statistics, determinism, and seeding a real Dovecot byte-exact."""

from __future__ import annotations

import email
import statistics
from collections import Counter
from datetime import timedelta
from email.utils import parsedate_to_datetime

import pytest
from imapclient import IMAPClient

from mailtrek.devtools.dovecot import DovecotInstance
from mailtrek.devtools.samples import (
    EMPTY_FOLDERS,
    GENERATED_FOLDERS,
    SampleMessage,
    generate_mailbox,
    load_mailbox,
    sample_mailbox,
    tricky_messages,
)


def test_tricky_messages_are_deterministic_and_odd() -> None:
    first, second = tricky_messages(), tricky_messages()
    assert first == second
    by_name = dict(first)
    assert len(by_name) == len(first)  # unique names
    assert b"\x00" in by_name["nul-bytes.eml"]
    assert b"\r\n" not in by_name["bare-lf.eml"]
    assert b"message-id" not in by_name["no-message-id.eml"].lower()
    assert max(len(line) for line in by_name["long-line.eml"].split(b"\r\n")) > 10_000
    assert b"\r\n\r\n" not in by_name["header-only.eml"]
    assert by_name["empty-body.eml"].endswith(b"\r\n\r\n")
    ids = [
        email.message_from_bytes(by_name[n])["Message-ID"]
        for n in ("duplicate-message-id-a.eml", "duplicate-message-id-b.eml")
    ]
    assert ids[0] == ids[1] and by_name["duplicate-message-id-a.eml"] != by_name[
        "duplicate-message-id-b.eml"]
    nested = email.message_from_bytes(by_name["nested-multipart.eml"])
    assert [p.get_content_type() for p in nested.walk()][:4] == [
        "multipart/mixed", "multipart/alternative", "text/plain", "multipart/related"]
    utf8 = by_name["utf8-8bit-headers.eml"]
    assert "日本語".encode() in utf8.split(b"\r\n\r\n")[0]  # raw 8-bit header


def test_generate_mailbox_matches_the_corpus_shape() -> None:
    msgs = generate_mailbox(5000, seed=1)
    sizes = [len(m.raw) for m in msgs]
    assert 200e6 < sum(sizes) < 450e6
    assert 5_000 < statistics.median(sizes) < 15_000
    assert sum(2_000 <= s <= 50_000 for s in sizes) / len(sizes) > 0.88
    assert 0.04 < sum(50_000 < s <= 500_000 for s in sizes) / len(sizes) < 0.10
    assert 10 <= sum(s >= 1_000_000 for s in sizes) <= 70
    flags: Counter[str] = Counter()
    for m in msgs:
        flags.update(m.flags)
    assert 3_300 < flags["\\Seen"] < 4_100
    assert 350 < flags["\\Answered"] < 650
    for keyword in ("$Forwarded", "$MDNSent", "$Junk", "Important", "$label1", "Project_X"):
        assert 20 < flags[keyword] < 250, keyword
    folders = {m.folder for m in msgs}
    assert folders == set(GENERATED_FOLDERS) - set(EMPTY_FOLDERS)
    assert len(GENERATED_FOLDERS) == 19
    no_id = [m for m in msgs if b"\r\nMessage-ID:" not in m.raw.split(b"\r\n\r\n")[0]]
    assert 5 <= len(no_id) <= 45
    seen: Counter[tuple[tuple[str, ...], bytes]] = Counter((m.folder, m.raw) for m in msgs)
    assert 3 <= sum(n - 1 for n in seen.values()) <= 40  # exact duplicates in one folder
    for m in msgs[:500]:
        header_date = parsedate_to_datetime(email.message_from_bytes(m.raw)["Date"])
        lag = m.internaldate - header_date
        assert timedelta(seconds=5) <= lag <= timedelta(hours=3)


def test_generate_mailbox_is_deterministic_and_honours_the_size_hint() -> None:
    a = generate_mailbox(200, seed=9, total_bytes_hint=2_000_000)
    b = generate_mailbox(200, seed=9, total_bytes_hint=2_000_000)
    assert a == b
    assert a != generate_mailbox(200, seed=10, total_bytes_hint=2_000_000)
    assert 1_400_000 < sum(len(m.raw) for m in a) < 2_800_000
    assert generate_mailbox(0, seed=1) == []
    with pytest.raises(ValueError):
        generate_mailbox(-1, seed=1)


def test_sample_mailbox_is_small_and_appendable() -> None:
    msgs = sample_mailbox()
    assert 50 <= len(msgs) <= 70
    assert all(b"\x00" not in m.raw for m in msgs)
    assert any(m.folder == ("Odd Messages",) for m in msgs)


def _fetch_all(inst: DovecotInstance, login: str, password: str, folder: str) -> list[dict]:
    with IMAPClient(inst.host, port=inst.port, ssl=False, timeout=30) as c:
        c.login(login, password)
        c.select_folder(folder, readonly=True)
        uids = c.search("ALL")  # imapclient works with UIDs
        data = c.fetch(uids, ["BODY.PEEK[]", "FLAGS", "INTERNALDATE"]) if uids else {}
        return [data[uid] for uid in sorted(data)]


def test_load_mailbox_round_trips_bytes_flags_and_dates(
    dovecot_dst: DovecotInstance, dst_user: tuple[str, str]
) -> None:
    login, password = dst_user
    generated = generate_mailbox(40, seed=3, total_bytes_hint=400_000)
    odd = [SampleMessage(("Почта", "Входящие"), raw, frozenset({"$label1", "\\Flagged"}),
                         generated[0].internaldate)
           for name, raw in tricky_messages() if name in ("utf8-8bit-headers.eml",
                                                          "long-line.eml")]
    msgs = generated + odd
    uids = load_mailbox(dovecot_dst.host, dovecot_dst.ssl_port, login, password, msgs,
                        connections=3, ssl=True, ca_file=dovecot_dst.ca_file,
                        folders=EMPTY_FOLDERS)
    assert all(uid > 0 for uid in uids)
    status = dovecot_dst.mailbox_status(login)
    assert status["Empty Folder"]["messages"] == 0
    assert status["Old/Unused"]["messages"] == 0
    for folder in {m.folder for m in msgs}:
        expected = [m for m in msgs if m.folder == folder]
        got = _fetch_all(dovecot_dst, login, password, "/".join(folder))
        assert len(got) == len(expected)
        for want, have in zip(expected, got, strict=True):
            assert have[b"BODY[]"] == want.raw
            flags = {f.decode() for f in have[b"FLAGS"]} - {"\\Recent"}
            assert flags == set(want.flags)
            # imapclient normalises INTERNALDATE to naive local time; compare instants.
            got_date = have[b"INTERNALDATE"]
            if got_date.tzinfo is None:
                got_date = got_date.astimezone()
            assert got_date == want.internaldate


def test_plain_append_of_nul_bytes_is_silently_altered_by_dovecot(
    dovecot_dst: DovecotInstance, dst_user: tuple[str, str]
) -> None:
    """Dovecot 2.3 takes NUL in a plain literal but stores 0x80: only BINARY APPEND is exact."""
    login, password = dst_user
    raw = dict(tricky_messages())["nul-bytes.eml"]
    msg = SampleMessage(("INBOX",), raw, frozenset(), generate_mailbox(1, 1)[0].internaldate)
    assert load_mailbox(dovecot_dst.host, dovecot_dst.port, login, password, [msg]) == [1]
    (stored,) = _fetch_all(dovecot_dst, login, password, "INBOX")
    assert stored[b"BODY[]"] != raw
    assert stored[b"BODY[]"] == raw.replace(b"\x00", b"\x80")
