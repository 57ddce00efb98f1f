"""The engine between two real Dovecot servers: fidelity, idempotence, adoption, filters."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from imap_helpers import copy, corpus_files, dump, load, new_user, store

FOLDERS = [("INBOX",), ("Projekte", "Übersicht"), ("Почта", "Входящие"), ("日本語フォルダ",),
           ("Team & Partners",), ("Reports.2024",), ("INBOX", "Projects", "Alpha")]
T0 = datetime(2021, 3, 4, 5, 6, 7, tzinfo=timezone(timedelta(hours=-5)))
FLAGSETS = [frozenset({"\\Seen"}), frozenset({"\\Seen", "\\Answered", "$Forwarded"}),
            frozenset({"\\Flagged", "Project_X"}), frozenset(), frozenset({"\\Seen", "$MDNSent"})]


def own_messages() -> list[bytes]:
    """Odd messages of our own, so the suite stands without the shared corpus."""
    long_line = b"x" * 12000
    return [
        b"From: a@example.com\r\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\nMessage-ID: <own1@x>\r\n\r\nHi\r\n",
        "From: ö@example.com\r\nSubject: Übersicht 8-bit\r\n\r\nGrüße aus Köln\r\n".encode(),
        b"Subject: bare LF\nFrom: b@example.com\n\nline one\nline two\n",
        b"Subject: long line\r\n\r\n" + long_line + b"\r\n",
        b"Subject: header only\r\n",
        b"Subject: no message id\r\nFrom: c@example.com\r\n\r\nbody\r\n",
        b"Subject: no message id\r\nFrom: c@example.com\r\n\r\nbody\r\n",  # exact duplicate
        (b"Subject: multipart\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=B\r\n"
         b"\r\n--B\r\nContent-Type: text/plain\r\n\r\ntext\r\n--B\r\nContent-Type: application/"
         b"octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b"QUJD" * 5000 +
         b"\r\n--B--\r\n"),
    ]


def seed_items(corpus_dir: Path | None) -> list[tuple[tuple[str, ...], bytes, frozenset[str], datetime]]:
    raws = own_messages() + [raw for _n, raw, _s in corpus_files(corpus_dir)]
    return [
        (FOLDERS[i % len(FOLDERS)], raw, FLAGSETS[i % len(FLAGSETS)], T0 + timedelta(hours=i))
        for i, raw in enumerate(raws)
    ]


async def test_every_message_round_trips_exactly_and_rerun_adds_nothing(
        dovecot_src, dovecot_dst, corpus_dir, tmp_path: Path) -> None:
    src, dst = new_user(dovecot_src), new_user(dovecot_dst)
    items = seed_items(corpus_dir)
    await load(dovecot_src, *src, items)
    report = await copy((dovecot_src, *src), (dovecot_dst, *dst), tmp_path / "s.db")
    assert report.complete, report.skipped
    assert report.total("copied") == len(items)
    before, after = await dump(dovecot_src, *src), await dump(dovecot_dst, *dst)
    assert before == after  # bytes as served, flags with keywords, INTERNALDATE instants
    # A re-run reads one LIST and writes nothing.
    again = await copy((dovecot_src, *src), (dovecot_dst, *dst), tmp_path / "s.db")
    assert again.total("copied") == 0 and again.total("already") == len(items)
    assert await dump(dovecot_dst, *dst) == after


async def test_lost_state_adopts_instead_of_copying(dovecot_src, dovecot_dst, tmp_path: Path) -> None:
    src, dst = new_user(dovecot_src), new_user(dovecot_dst)
    items = seed_items(None)
    await load(dovecot_src, *src, items)
    await copy((dovecot_src, *src), (dovecot_dst, *dst), tmp_path / "a.db")
    first = await dump(dovecot_dst, *dst)
    report = await copy((dovecot_src, *src), (dovecot_dst, *dst), tmp_path / "other.db")
    assert report.total("copied") == 0
    assert report.total("adopted") == len(items)
    assert await dump(dovecot_dst, *dst) == first


async def test_partial_destination_gets_only_the_rest(dovecot_src, dovecot_dst, tmp_path: Path) -> None:
    """Messages another tool already put there (same bytes) are not copied twice."""
    src, dst = new_user(dovecot_src), new_user(dovecot_dst)
    items = seed_items(None)
    await load(dovecot_src, *src, items)
    await load(dovecot_dst, *dst, items[::2])
    report = await copy((dovecot_src, *src), (dovecot_dst, *dst), tmp_path / "p.db")
    assert report.total("adopted") == len(items[::2])
    assert report.total("copied") == len(items) - len(items[::2])
    assert await dump(dovecot_src, *src) == await dump(dovecot_dst, *dst)


async def test_flag_changes_are_synced_on_rerun(dovecot_src, dovecot_dst, tmp_path: Path) -> None:
    src, dst = new_user(dovecot_src), new_user(dovecot_dst)
    await load(dovecot_src, *src, seed_items(None))
    await copy((dovecot_src, *src), (dovecot_dst, *dst), tmp_path / "f.db")
    rw = store(dovecot_src, *src, readonly=False)
    await rw.connect()
    try:
        inbox = next(f for f in await rw.list_folders() if f.path == ("INBOX",))
        metas = await rw.list_messages(inbox)
        from mailtrek.stores.base import FlagChange

        await rw.set_flags(inbox, [FlagChange(str(metas[0].uid), frozenset({"\\Flagged", "Later"}))])
    finally:
        await rw.close()
    report = await copy((dovecot_src, *src), (dovecot_dst, *dst), tmp_path / "f.db")
    assert report.total("flags_updated") == 1 and report.total("copied") == 0
    assert await dump(dovecot_src, *src) == await dump(dovecot_dst, *dst)


async def test_special_folders_land_in_destination_roles(dovecot_src, dovecot_dst, tmp_path: Path) -> None:
    src, dst = new_user(dovecot_src), new_user(dovecot_dst)
    msg = b"Subject: s\r\n\r\nb\r\n"
    await load(dovecot_src, *src, [(("Gesendete Elemente",), msg, frozenset(), T0),
                                   (("Papierkorb",), msg, frozenset(), T0),
                                   (("Spam",), msg, frozenset(), T0),
                                   (("Drafts",), msg, frozenset({"\\Draft"}), T0)])
    report = await copy((dovecot_src, *src), (dovecot_dst, *dst), tmp_path / "r.db")
    assert report.complete
    d = store(dovecot_dst, *dst)
    await d.connect()
    try:
        roles = {f.special_use: f.path for f in await d.list_folders() if f.messages}
    finally:
        await d.close()
    from mailtrek.model import SpecialUse

    assert roles[SpecialUse.SENT] == ("Sent",)
    assert roles[SpecialUse.TRASH] == ("Trash",)
    assert roles[SpecialUse.JUNK] == ("Junk",)
    assert roles[SpecialUse.DRAFTS] == ("Drafts",)


async def test_filters_and_oversize_items_are_reported(dovecot_src, dovecot_dst, tmp_path: Path) -> None:
    src, dst = new_user(dovecot_src), new_user(dovecot_dst)
    big = b"Subject: the big one\r\n\r\n" + b"y" * 300_000 + b"\r\n"
    small = b"Subject: small\r\n\r\nsmall\r\n"
    old = datetime(2010, 1, 1, tzinfo=UTC)
    await load(dovecot_src, *src, [(("INBOX",), big, frozenset(), T0), (("INBOX",), small, frozenset(), T0),
                                   (("INBOX",), small, frozenset(), old),
                                   (("Archive", "2019"), small, frozenset(), T0),
                                   (("Keep",), small, frozenset(), T0)])
    report = await copy((dovecot_src, *src), (dovecot_dst, *dst), tmp_path / "x.db",
                        max_size=100_000, exclude=["Archive"], since=datetime(2020, 1, 1, tzinfo=UTC))
    assert not report.complete
    assert [(s.subject, s.folder) for s in report.skipped] == [("the big one", "INBOX")]
    assert "limit" in report.skipped[0].reason and report.skipped[0].size > 300_000
    copied = await dump(dovecot_dst, *dst)
    assert sum(len(v) for v in copied.values()) == 2  # INBOX small (new) + Keep
    assert ("Archive", "2019") not in copied


async def test_recreated_source_folder_is_rematched_not_recopied(dovecot_src, dovecot_dst, tmp_path: Path) -> None:
    src, dst = new_user(dovecot_src), new_user(dovecot_dst)
    items = [(("Work",), b"Subject: w%d\r\nMessage-ID: <w%d@x>\r\n\r\nw\r\n" % (i, i), frozenset(), T0)
             for i in range(20)]
    await load(dovecot_src, *src, items)
    await copy((dovecot_src, *src), (dovecot_dst, *dst), tmp_path / "v.db")
    login = src[0]
    dovecot_src.doveadm("mailbox", "delete", "-u", login, "Work")
    await load(dovecot_src, *src, items)  # new UIDVALIDITY, same messages
    report = await copy((dovecot_src, *src), (dovecot_dst, *dst), tmp_path / "v.db")
    assert report.total("copied") == 0 and report.total("adopted") == 20
    assert len((await dump(dovecot_dst, *dst))[("Work",)]) == 20


async def test_many_connections_and_one_connection_give_the_same_result(
        dovecot_src, dovecot_dst, tmp_path: Path) -> None:
    src = new_user(dovecot_src)
    items = seed_items(None) * 3
    await load(dovecot_src, *src, items)
    results = []
    for n in (1, 6):
        dst = new_user(dovecot_dst)
        r = await copy((dovecot_src, *src), (dovecot_dst, *dst), tmp_path / f"c{n}.db", connections=n)
        assert r.complete
        results.append(await dump(dovecot_dst, *dst))
    assert results[0] == results[1] == await dump(dovecot_src, *src)


@pytest.mark.parametrize("n", [1])
async def test_dry_run_writes_nothing(dovecot_src, dovecot_dst, tmp_path: Path, n: int) -> None:
    src, dst = new_user(dovecot_src), new_user(dovecot_dst)
    await load(dovecot_src, *src, seed_items(None))
    report = await copy((dovecot_src, *src), (dovecot_dst, *dst), tmp_path / "d.db", dry_run=True)
    assert report.total("planned") == len(seed_items(None)) and report.total("copied") == 0
    assert sum(len(v) for v in (await dump(dovecot_dst, *dst)).values()) == 0
    _ = asyncio  # the module runs under pytest-asyncio's loop
