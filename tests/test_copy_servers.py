"""The engine against servers nobody here wrote: Cyrus IMAP and Courier-IMAP, both ways.

Each pair copies the same odd messages, runs again (nothing new), gets new mail into folders
that already hold mail (incremental), forgets its state (adoption), and resumes after a cut
connection. What a server changes on its own is reported, never re-copied.
"""

from __future__ import annotations

import contextlib
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from imap_helpers import copy, dump, load, new_user
from mailtrek.devtools.courier import CourierInstance
from test_copy_dovecot import T0, seed_items

SERVERS = {"dovecot-src": "dovecot_src", "dovecot-dst": "dovecot_dst",
           "cyrus": "cyrus_server", "courier": "courier_server"}
PAIRS = [("dovecot-src", "cyrus"), ("dovecot-src", "courier"), ("cyrus", "dovecot-dst"),
         ("courier", "dovecot-dst"), ("cyrus", "courier")]


@pytest.fixture(params=PAIRS, ids=lambda p: f"{p[0].split('-')[0]}-to-{p[1].split('-')[0]}")
def pair(request: pytest.FixtureRequest) -> tuple[Any, Any]:
    src_name, dst_name = request.param
    return request.getfixturevalue(SERVERS[src_name]), request.getfixturevalue(SERVERS[dst_name])


def count(d: dict) -> int:  # type: ignore[type-arg]
    return sum(len(v) for v in d.values())


def changed(report: Any) -> int:
    return sum(len(f.notes) for f in report.folders)


async def test_copy_rerun_incremental_and_adoption(pair: tuple[Any, Any], tmp_path: Path) -> None:
    src_srv, dst_srv = pair
    src, dst = new_user(src_srv), new_user(dst_srv)
    items = seed_items(None)
    await load(src_srv, *src, items)
    first = await copy((src_srv, *src), (dst_srv, *dst), tmp_path / "s.db")
    assert first.complete, (first.errors, first.skipped, [f.error for f in first.folders])
    assert first.total("copied") == len(items)
    dumped = await dump(dst_srv, *dst)
    assert count(dumped) == len(items)
    # Nothing new: nothing copied, nothing reported as failed.
    again = await copy((src_srv, *src), (dst_srv, *dst), tmp_path / "s.db")
    assert again.complete and again.total("copied") == 0
    # Courier sometimes gives a freshly created INBOX a new UIDVALIDITY between sessions
    # (its uid database is rewritten); the recorded ids are then void and mailtrek must
    # adopt what is there instead: still nothing copied twice.
    courier = isinstance(dst_srv, CourierInstance)
    known = again.total("already") + (again.total("adopted") if courier else 0)
    assert known == len(items), [
        (f.source, f.selected, f.already, f.adopted) for f in again.folders]
    assert count(await dump(dst_srv, *dst)) == len(items)
    # New mail in folders that already hold mail (INBOX and a folder under INBOX).
    new = [(path, b"Subject: new %d\r\nMessage-ID: <new%d@x>\r\n\r\nnew\r\n" % (i, i),
            frozenset({"\\Seen"}), T0 + timedelta(days=i))
           for i, path in enumerate([("INBOX",), ("INBOX", "Projects", "Alpha"), ("INBOX",)])]
    await load(src_srv, *src, new)
    inc = await copy((src_srv, *src), (dst_srv, *dst), tmp_path / "s.db")
    assert inc.complete, (inc.errors, [(f.source, f.error) for f in inc.folders if f.error])
    assert inc.total("copied") == len(new)
    assert count(await dump(dst_srv, *dst)) == len(items) + len(new)
    # A fresh state adopts what is there (even what the server rewrote) and copies nothing.
    fresh = await copy((src_srv, *src), (dst_srv, *dst), tmp_path / "fresh.db")
    assert fresh.complete, (fresh.errors, [(f.source, f.error) for f in fresh.folders if f.error])
    assert fresh.total("copied") == 0
    assert fresh.total("adopted") == len(items) + len(new)
    assert count(await dump(dst_srv, *dst)) == len(items) + len(new)


async def test_first_copy_into_a_mailbox_that_already_has_mail(
        pair: tuple[Any, Any], tmp_path: Path) -> None:
    src_srv, dst_srv = pair
    src, dst = new_user(src_srv), new_user(dst_srv)
    items = seed_items(None)
    await load(src_srv, *src, items)
    await load(dst_srv, *dst, [(("INBOX",), b"Subject: already there\r\n\r\nx\r\n", frozenset(), T0)])
    report = await copy((src_srv, *src), (dst_srv, *dst), tmp_path / "p.db")
    assert report.complete, (report.errors, [(f.source, f.error) for f in report.folders])
    assert report.total("copied") == len(items)
    assert count(await dump(dst_srv, *dst)) == len(items) + 1


async def test_resume_after_a_cut_connection(pair: tuple[Any, Any], proxy: Any,
                                             tmp_path: Path) -> None:
    src_srv, dst_srv = pair
    src, dst = new_user(src_srv), new_user(dst_srv)
    items = seed_items(None) * 2
    await load(src_srv, *src, items)
    cut = proxy(dst_srv.host, dst_srv.port, cut_upstream_after=40_000, fault_conns=100)
    with contextlib.suppress(Exception):  # an interrupted run may end either way
        await copy((src_srv, *src), (dst_srv, *dst), tmp_path / "r.db", dst_port=cut.port)
    done = await copy((src_srv, *src), (dst_srv, *dst), tmp_path / "r.db")
    assert done.complete, (done.errors, [(f.source, f.error) for f in done.folders if f.error])
    assert count(await dump(dst_srv, *dst)) == len(items)


def test_terminal_summary_names_every_failure_and_rename() -> None:
    from datetime import UTC, datetime

    from mailtrek.sync.options import ChangedItem, CopyReport, FolderReport
    from mailtrek.sync.report import problem_lines, summary_line

    r = CopyReport("s", "d", datetime(2024, 1, 1, tzinfo=UTC))
    r.folders = [FolderReport("INBOX", "INBOX", failed=55, error="NO Current box is selected READ-ONLY."),
                 FolderReport("Sub", None, error="NO Mailbox already exists"),
                 FolderReport("A.B", "A_B", copied=1, renamed="the destination uses '.'",
                              notes=[ChangedItem(1, "x", "changed by the server: 8-bit header "
                                                 "bytes replaced", True)])]
    line = summary_line(r)
    assert line.startswith("INCOMPLETE") and "55 failed" in line and "2 errors" in line
    assert "(1 renamed)" in line and "1 message changed on the way" in line
    lines = problem_lines(r)
    assert any("INBOX: 55 messages not copied: NO Current box is selected READ-ONLY." in x
               for x in lines)
    assert any("Sub: folder failed: NO Mailbox already exists" in x for x in lines)
    assert any(x.startswith("  renamed: A.B -> A_B") for x in lines)


@pytest.mark.slow  # about 20 s per server: the whole shared corpus, three runs
@pytest.mark.parametrize("dst_name", ["cyrus", "courier"])
async def test_corpus_per_server(dst_name: str, dovecot_src: Any, corpus_rows: Any,
                                 request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """The shared corpus from Dovecot into each server: every message exact, changed by the
    server (and reported), or refused with the server's reason; re-runs copy nothing."""
    dst_srv = request.getfixturevalue(SERVERS[dst_name])
    src, dst = new_user(dovecot_src), new_user(dst_srv)
    items = [(("INBOX",), raw, frozenset({"\\Seen"}), T0 + timedelta(minutes=i))
             for i, (_n, raw, _s) in enumerate(corpus_rows())]
    await load(dovecot_src, *src, items)
    first = await copy((dovecot_src, *src), (dst_srv, *dst), tmp_path / "c.db")
    noted = {n.uid: n.note for f in first.folders for n in f.notes}
    refused = [s.reason for s in first.skipped]
    served = {row[0] for row in (await dump(dovecot_src, *src))[("INBOX",)]}
    stored = (await dump(dst_srv, *dst)).get(("INBOX",), [])
    exact = sum(1 for row in stored if row[0] in served)
    print(f"\n{dst_name}: {len(items)} messages: {exact} exact, {len(noted)} changed by the "
          f"server, {len(refused)} refused {sorted(set(refused))}; notes: "
          f"{sorted(set(noted.values()))}")
    assert exact + len(noted) + len(refused) == len(items)
    assert len(stored) == len(items) - len(refused)
    again = await copy((dovecot_src, *src), (dst_srv, *dst), tmp_path / "c.db")
    assert again.total("copied") == 0 and not again.total("failed")
    fresh = await copy((dovecot_src, *src), (dst_srv, *dst), tmp_path / "fresh.db")
    assert fresh.total("copied") == 0, [f.error for f in fresh.folders]
    assert len((await dump(dst_srv, *dst))[("INBOX",)]) == len(stored)


async def test_verify_finds_every_folder_after_a_copy(pair: tuple[Any, Any], tmp_path: Path) -> None:
    """INBOX/Projects/Alpha lands as INBOX.Projects.Alpha on INBOX.-namespace servers and
    verify looks for it there (it reported all of it missing)."""
    from imap_helpers import store
    from mailtrek.sync.options import CopyOptions
    from mailtrek.sync.verify import verify_mailbox

    src_srv, dst_srv = pair
    src, dst = new_user(src_srv), new_user(dst_srv)
    await load(src_srv, *src, seed_items(None))
    report = await copy((src_srv, *src), (dst_srv, *dst), tmp_path / "v.db")
    assert report.complete
    rewritten = sum(1 for f in report.folders for n in f.notes
                    if n.note.startswith("changed by the server"))
    s, d = store(src_srv, *src), store(dst_srv, *dst)
    await s.connect()
    await d.connect()
    try:
        result = await verify_mailbox(s, d, CopyOptions())
    finally:
        await s.close()
        await d.close()
    # Every folder is found; a message the server stored its own way (8-bit header bytes
    # made "X", a CRLF added; the copy reported it) is paired and listed as changed.
    t = result["totals"]
    assert (t["missing"], t["extra"], t["changed_by_server"]) == (0, 0, rewritten), \
        result["problems"]
