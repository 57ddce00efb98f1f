"""verify of a copy into a server that stores messages its own way: Cyrus replaces 8-bit
header bytes with ``X`` (its default ``munge8bit``), Courier makes line ends CRLF and ends
every message with CRLF. Such a copy is paired with its source (it holds exactly that
form of it) and reported as changed by the server, not as one missing plus one extra (or
"content differs"), with or without the copy's state; a copy that differs beyond that is
"different"."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from imap_helpers import copy, load, new_user, store
from mailtrek.model import Message
from mailtrek.state.db import MailboxState, open_engine
from mailtrek.sync.options import CopyOptions
from mailtrek.sync.verify import verify_mailbox
from mailtrek.sync.verify_match import changed_detail

T0 = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)


def message(n: int, subject: str, body: bytes = b"Body") -> bytes:
    """8-bit bytes in the body (kept by Cyrus) and, with a non-ASCII ``subject``, in the
    From and Subject header fields (replaced)."""
    sender = "Jürgen" if not subject.isascii() else "Juergen"
    return (b"Message-ID: <m%d@rewritten.test>\r\nDate: Fri, 01 Mar 2024 09:00:00 +0000\r\n"
            b"From: %s <jue@example.org>\r\nTo: bob@example.org\r\nSubject: %s\r\n"
            b"Content-Type: text/plain; charset=utf-8\r\n\r\n%s \xe2\x9c\x93\r\n"
            % (n, sender.encode(), subject.encode(), body))


async def _verify(src_srv: Any, src: tuple[str, str], dst_srv: Any, dst: tuple[str, str],
                  state: MailboxState | None) -> dict[str, Any]:
    s, d = store(src_srv, *src), store(dst_srv, *dst)
    await s.connect()
    await d.connect()
    try:
        return await verify_mailbox(s, d, CopyOptions(), state)
    finally:
        await s.close()
        await d.close()


async def test_cyrus_8bit_header_rewrite_is_changed_not_missing(
        dovecot_src: Any, cyrus_server: Any, tmp_path: Path) -> None:
    src, dst = new_user(dovecot_src), new_user(cyrus_server)
    munged = message(1, "Grüße aus Köln")
    # Cyrus refuses this one ("invalid header": body text without the empty line), so the
    # copy records its messages but no folder row; verify still uses what it recorded.
    refused = message(4, "refused").replace(b"\r\n\r\n", b"\r\nno field here\r\n\r\n")
    items = [(("INBOX",), munged, frozenset({"\\Seen"}), T0),
             (("INBOX",), message(2, "plain ascii"), frozenset(), T0 + timedelta(hours=1)),
             (("INBOX",), refused, frozenset(), T0)]
    await load(dovecot_src, *src, items)
    report = await copy((dovecot_src, *src), (cyrus_server, *dst), tmp_path / "s.db")
    assert report.total("copied") == 2 and len(report.skipped) == 1, report.skipped
    for state in (None, MailboxState(open_engine(tmp_path / "s.db"), "test")):
        got = await _verify(dovecot_src, src, cyrus_server, dst, state)
        t = got["totals"]
        assert (t["matched"], t["missing"], t["extra"], t["different"],
                t["changed_by_server"]) == (2, 1, 0, 0, 1), got["problems"]
        assert sorted((p["kind"], p["uid"], p["detail"]) for p in got["problems"]) == [
            ("changed", 1, changed_detail("8-bit header bytes replaced")),
            ("missing", 3, None)]
        assert t["matched_by_state"] == (2 if state else 0)

    # A copy holding more than the server's rewrite (another body) is no such pair.
    other = store(cyrus_server, *dst, readonly=False)
    await other.connect()
    try:
        inbox = await other.ensure_folder(("INBOX",))
        res = await other.append(inbox, Message(uid=0, raw=message(
            3, "Grüße aus Köln", b"Other"), internaldate=T0))
        assert res.ok
    finally:
        await other.close()
    await load(dovecot_src, *src, [(("INBOX",), message(3, "Grüße aus Köln"),
                                    frozenset(), T0)])
    got = await _verify(dovecot_src, src, cyrus_server, dst, None)
    t = got["totals"]
    assert (t["different"], t["missing"], t["extra"], t["changed_by_server"]) == (1, 1, 0, 1), \
        got["problems"]  # (the missing one: refused above)


async def test_courier_line_ends_and_final_crlf_are_changed_not_different(
        dovecot_src: Any, courier_server: Any, tmp_path: Path) -> None:
    src, dst = new_user(dovecot_src), new_user(courier_server)
    # (Dovecot serves a bare-LF message with CRLF: Courier's CRLF repair of line ends is
    # held to its definition in test_fingerprint_messy.)
    unended = message(1, "no CRLF at the end").rstrip(b"\r\n")
    items = [(("INBOX",), unended, frozenset(), T0),
             (("INBOX",), message(2, "kept as it is"), frozenset(), T0)]
    await load(dovecot_src, *src, items)
    report = await copy((dovecot_src, *src), (courier_server, *dst), tmp_path / "s.db")
    assert report.complete and report.total("copied") == 2
    for state in (None, MailboxState(open_engine(tmp_path / "s.db"), "test")):
        got = await _verify(dovecot_src, src, courier_server, dst, state)
        t = got["totals"]
        assert got["ok"] and (t["matched"], t["different"], t["missing"], t["extra"],
                              t["changed_by_server"]) == (2, 0, 0, 0, 1), got["problems"]
        assert [(p["uid"], p["detail"]) for p in got["problems"]] == [
            (1, changed_detail("CRLF added at the end"))]
        assert t["matched_by_state"] == (2 if state else 0)
