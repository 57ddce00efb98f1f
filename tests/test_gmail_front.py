"""Label semantics that need Gmail's extensions, through an X-GM-EXT-1 front on Dovecot.

The front (mailtrek.devtools.gmail_front) advertises X-GM-EXT-1 and answers X-GM-MSGID /
X-GM-LABELS from which folders hold each message; it can hide a label folder from LIST
(Gmail's "Show in IMAP" off) and answer FETCH with ``NO [THROTTLED]``.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from imap_helpers import load, new_user, store
from mailtrek.devtools.dovecot import DovecotInstance
from mailtrek.devtools.gmail_front import GmailFront
from mailtrek.state.db import MailboxState, open_engine
from mailtrek.stores.gmail import GmailSource, Strategy
from mailtrek.stores.gmail.wiring import gmail_view
from mailtrek.sync.engine import copy_mailbox
from mailtrek.sync.options import CopyOptions
from test_gmail_dovecot import (
    ALL,
    EXPECTED,
    INBOX,
    LAYOUT,
    S,
    _dump_names,
    date,
    gmail_like,  # noqa: F401  (the fixture)
    raw,
)

SECRET = ("Secret",)


async def _run(gm: DovecotInstance, dst_inst: DovecotInstance, tmp: Path, *, hidden: bool,
               throttle: int = 0, strategy: str = "auto") -> tuple:  # type: ignore[type-arg]
    login, pw = new_user(gm, "gx")
    items = [(path, raw(m), S, date(m)) for m, paths in LAYOUT.items() for path in paths]
    items += [(SECRET, raw("m8"), S, date("m8")), (SECRET, raw("m4"), S, date("m4"))]
    await load(gm, login, pw, items)
    dst = (dst_inst, *new_user(dst_inst, "gy"))
    async with GmailFront("127.0.0.1", gm.port, login, pw,
                          hidden=["Secret"] if hidden else [], throttle=throttle) as front:
        inner = store(gm, login, pw, port=front.port)
        d = store(*dst, readonly=False)
        await inner.connect()
        await d.connect()
        state = MailboxState(open_engine(tmp / f"{login}.db"), "gx")
        try:
            source = await gmail_view(inner, strategy, done=state.messages_of, atom_keywords=True)
            report = await copy_mailbox(source, d, state, CopyOptions())
            again = await copy_mailbox(source, d, state, CopyOptions())
        finally:
            await inner.close()
            await d.close()
        got = {p: dict(rows) for p, rows in (await _dump_names(*dst)).items() if rows}
        return source, report, again, got, front


def test_x_gm_labels_reveal_hidden_labels_and_msgid_is_the_identity(
        gmail_like: DovecotInstance, dovecot_dst: DovecotInstance, tmp_path: Path) -> None:  # noqa: F811
    source, report, again, got, front = asyncio.run(
        _run(gmail_like, dovecot_dst, tmp_path, hidden=True))
    assert isinstance(source, GmailSource) and source.identity == "x-gm-msgid"
    assert front.gm_fetches > 0
    # Secret is not a folder over IMAP, so it is a keyword on the message's one copy.
    want = {p: dict(v) for p, v in EXPECTED[Strategy.FOLDERS_CATEGORIES].items()}
    want[INBOX]["m8"] = S | {"Secret"}
    want[("Archive",)]["m4"] = S | {"Secret"}
    assert got == want
    assert not report.errors and sum(f.copied for f in again.folders) == 0
    assert source.budget is not None  # real Gmail (X-GM-EXT-1): the daily budget applies
    assert source.budget.used() == sum(f.bytes_copied for f in report.folders)


def test_visible_label_folder_is_a_home_like_any_other(
        gmail_like: DovecotInstance, dovecot_dst: DovecotInstance, tmp_path: Path) -> None:  # noqa: F811
    _source, _report, _again, got, _ = asyncio.run(
        _run(gmail_like, dovecot_dst, tmp_path, hidden=False))
    # m4 was archived but has the Secret label: its home is Secret, not Archive.
    assert got[SECRET] == {"m4": S}
    assert got[INBOX]["m8"] == S | {"Secret"}
    assert ("Archive",) not in got


def test_throttled_answers_back_off_instead_of_failing(
        gmail_like: DovecotInstance, dovecot_dst: DovecotInstance, tmp_path: Path,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Gmail names no figure; mailtrek waits THROTTLE_WAIT (60 s). A second here.
    monkeypatch.setattr("mailtrek.stores.imap.verbs.THROTTLE_WAIT", 1.0)  # the store checks answers there
    started = time.monotonic()
    _source, report, _again, got, front = asyncio.run(
        _run(gmail_like, dovecot_dst, tmp_path, hidden=True, throttle=2, strategy="all-mail"))
    assert front.throttle == 0  # both throttling answers were given
    assert time.monotonic() - started >= 1.0  # it waited as the server asked
    assert not report.errors
    # All Mail, plus Trash and Spam kept as they are (All Mail leaves them out).
    assert set(got) - {ALL} <= {("Trash",), ("Junk",)} and len(got[ALL]) == 6
    assert set(got) - {ALL}


def test_refused_login_on_gmail_names_the_setting(gmail_like: DovecotInstance) -> None:  # noqa: F811
    from mailtrek.errors import AuthenticationError

    login, pw = new_user(gmail_like, "gz")

    async def run() -> str:
        async with GmailFront("127.0.0.1", gmail_like.port, login, pw) as front:
            st = store(gmail_like, login, "wrong-" + pw, port=front.port, connections=1)
            try:
                await st.connect()
            except AuthenticationError as e:
                return str(e)
            finally:
                await st.close()
        return ""

    text = asyncio.run(run())
    assert "app password" in text and "wrong-" not in text
