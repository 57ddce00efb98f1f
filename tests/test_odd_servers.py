"""Servers that are not like our default Dovecot: Courier/cPanel namespaces ("INBOX."
prefix, "." separator), no BINARY, a per-message size limit enforced by the server."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from imap_helpers import copy, dump, load, new_user, store
from mailtrek.devtools.dovecot import DovecotInstance
from mailtrek.model import SpecialUse
from mailtrek.state.db import MailboxState, open_engine
from mailtrek.stores.memory import MemoryStore
from mailtrek.sync.engine import copy_mailbox
from mailtrek.sync.options import CopyOptions

T0 = datetime(2020, 1, 1, tzinfo=UTC)
NO_BINARY = ("imap_capability = IMAP4rev1 LITERAL+ SASL-IR LOGIN-REFERRALS ID ENABLE IDLE "
             "SORT MULTIAPPEND UNSELECT CHILDREN NAMESPACE UIDPLUS LIST-EXTENDED I18NLEVEL=1 "
             "CONDSTORE QRESYNC ESEARCH LIST-STATUS SPECIAL-USE MOVE\n")
SIZE_LIMIT = ("mail_plugins = $mail_plugins quota\nplugin {\n  quota = count:User quota\n"
              "  quota_vsizes = yes\n  quota_max_mail_size = 100k\n}\n")


@pytest.fixture(scope="module")
def courier() -> Iterator[DovecotInstance]:
    """A cPanel/Courier-like server: INBOX. prefix, '.' separator, no BINARY, 100k limit."""
    inst = DovecotInstance(Path(tempfile.mkdtemp(prefix="mt-courier-")), name="courier",
                           separator=".", prefix="INBOX.", extra_conf=NO_BINARY + SIZE_LIMIT)
    inst.start()
    try:
        yield inst
    finally:
        inst.remove()


async def test_into_a_dotted_namespace_with_a_size_limit(dovecot_src, courier, tmp_path: Path) -> None:
    src, dst = new_user(dovecot_src), new_user(courier)
    big = b"Subject: big one\r\n\r\n" + b"x" * 200_000 + b"\r\n"
    await load(dovecot_src, *src, [
        (("INBOX",), b"Subject: a\r\n\r\na\r\n", frozenset({"\\Seen"}), T0),
        (("INBOX",), big, frozenset(), T0),
        (("INBOX",), b"Subject: b\r\n\r\nb\r\n", frozenset(), T0),
        (("Reports.2024",), b"Subject: r\r\n\r\nr\r\n", frozenset(), T0),
        (("Projekte", "Übersicht"), b"Subject: p\r\n\r\np\r\n", frozenset(), T0),
    ])
    report = await copy((dovecot_src, *src), (courier, *dst), tmp_path / "s.db", max_size=None)
    # The server refuses the big one inside a MULTIAPPEND batch: only it is skipped.
    assert [(s.subject, s.folder) for s in report.skipped] == [("big one", "INBOX")]
    assert "too large for the destination" in report.skipped[0].reason
    by_src = {f.source: f for f in report.folders}
    assert by_src["Reports.2024"].destination == "Reports_2024"
    assert "separator" in (by_src["Reports.2024"].renamed or "")
    got = await dump(courier, *dst)
    assert {k: len(v) for k, v in got.items()} == {
        ("INBOX",): 2, ("Reports_2024",): 1, ("Projekte", "Übersicht"): 1}
    again = await copy((dovecot_src, *src), (courier, *dst), tmp_path / "s.db", max_size=None)
    assert again.total("copied") == 0 and await dump(courier, *dst) == got


async def test_from_a_dotted_namespace(courier, dovecot_dst, tmp_path: Path) -> None:
    src, dst = new_user(courier), new_user(dovecot_dst)
    await load(courier, *src, [
        (("INBOX",), b"Subject: i\r\n\r\ni\r\n", frozenset(), T0),
        (("Sent",), b"Subject: s\r\n\r\ns\r\n", frozenset({"\\Seen"}), T0),
        (("Projekte", "Übersicht"), b"Subject: p\r\n\r\np\r\n", frozenset(), T0),
    ])
    s = store(courier, *src)
    await s.connect()
    try:
        paths = {f.path: f.special_use for f in await s.list_folders()}
    finally:
        await s.close()
    assert paths[("INBOX",)] == SpecialUse.INBOX and ("Projekte", "Übersicht") in paths
    report = await copy((courier, *src), (dovecot_dst, *dst), tmp_path / "c.db")
    assert report.complete
    assert await dump(courier, *src) == await dump(dovecot_dst, *dst)


async def test_nul_bytes_without_binary_are_skipped_with_a_reason(courier, tmp_path: Path) -> None:
    dst = new_user(courier)
    mem = MemoryStore()
    mem.add(("INBOX",), b"Subject: has nul\r\n\r\na\x00b\r\n", internaldate=T0)
    mem.add(("INBOX",), b"Subject: fine\r\n\r\nfine\r\n", internaldate=T0)
    d = store(courier, *dst, readonly=False)
    await d.connect()
    try:
        report = await copy_mailbox(mem, d, MailboxState(open_engine(tmp_path / "n.db"), "n"),
                                    CopyOptions())
    finally:
        await d.close()
    assert [(s.subject, s.reason) for s in report.skipped] == [
        ("has nul", "message has NUL bytes and the server lacks BINARY")]
    assert report.total("copied") == 1
