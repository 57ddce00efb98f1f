"""``verify`` of copies made from Gmail-like sources, for every label strategy (issue 12, 5).

The Gmail-like Dovecot of ``test_gmail_dovecot`` gets two more things that broke before:
non-ASCII labels (which used to collapse into one keyword) and two messages that share
Message-ID, Date, From, Subject and size but arrived at different times, with different
labels and flags (which used to be merged). verify, given the same strategy and the
copy's state, must find nothing missing, different or extra.
"""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from imapclient import imap_utf7

from imap_helpers import dump, load, new_user, store
from mailtrek.devtools.dovecot import DovecotInstance
from mailtrek.state.db import MailboxState, open_engine
from mailtrek.stores.gmail import GmailSource, Strategy
from mailtrek.sync.options import CopyOptions
from mailtrek.sync.verify import verify_mailbox
from test_gmail_dovecot import ALL, INBOX, LAYOUT, WORK, by_subject, date, gmail_copy, raw
from test_gmail_dovecot import gmail_like as gmail_like

CLIENTS, PARTNER = ("Клиенты",), ("Партнёр",)
TWIN = raw("twin")


@pytest.fixture
def seeded_messy(gmail_like: DovecotInstance) -> tuple[DovecotInstance, str, str]:
    login, pw = new_user(gmail_like, "gv")
    items = [(path, raw(m), frozenset({"\\Seen"}), date(m))
             for m, paths in LAYOUT.items() for path in paths]
    items += [(p, raw("m9"), frozenset(), date("m9")) for p in (INBOX, CLIENTS, ALL)]
    items += [(p, raw("m10"), frozenset(), date("m10")) for p in (INBOX, PARTNER, ALL)]
    first, second = datetime(2024, 2, 1, 9, tzinfo=UTC), datetime(2024, 2, 2, 9, tzinfo=UTC)
    items += [(p, TWIN, frozenset({"\\Seen"}), first) for p in (INBOX, ALL)]
    items += [(p, TWIN, frozenset({"\\Flagged"}), second) for p in (WORK, ALL)]
    asyncio.run(load(gmail_like, login, pw, items))
    return gmail_like, login, pw


async def _verify(src: tuple[Any, str, str], dst: tuple[Any, str, str], state_path: Path,
                  strategy: Strategy) -> dict[str, Any]:
    inner, d = store(*src), store(*dst)
    await asyncio.gather(inner.connect(), d.connect())
    state = MailboxState(open_engine(state_path), "gmail")
    try:
        view = GmailSource(inner, strategy, done=state.messages_of, imap_safe_keywords=True)
        return await verify_mailbox(view, d, CopyOptions(), state)
    finally:
        await asyncio.gather(inner.close(), d.close())


@pytest.mark.parametrize("strategy", list(Strategy))
def test_verify_after_a_gmail_copy_finds_nothing_wrong(
        seeded_messy: tuple[DovecotInstance, str, str], dovecot_dst: DovecotInstance,
        tmp_path: Path, strategy: Strategy) -> None:
    dst = (dovecot_dst, *new_user(dovecot_dst, "gvd"))
    report, source = asyncio.run(gmail_copy(seeded_messy, dst, tmp_path / "s.db", strategy,
                                            imap_safe_keywords=True))
    assert not report.errors and not report.skipped and not source.warnings
    result = asyncio.run(_verify(seeded_messy, dst, tmp_path / "s.db", strategy))
    t = result["totals"]
    assert (t["missing"], t["different"], t["extra"]) == (0, 0, 0), result["problems"]
    assert t["matched"] == t["source"] == t["matched_by_state"] > 0 and result["ok"]
    twin = hashlib.sha256(TWIN).hexdigest()
    copies = asyncio.run(dump(*dst))
    assert sum(sha == twin for rows in copies.values() for sha, _f, _d in rows) == 2  # not merged
    if strategy == Strategy.ALL_MAIL:
        assert copies[("Trash",)] and copies[("Junk",)]
    if strategy == Strategy.FOLDERS_CATEGORIES:
        got = by_subject(*dst)
        assert got[INBOX]["twin"] == {"\\Seen"} and got[WORK]["twin"] == {"\\Flagged"}
        words = {imap_utf7.decode(k.encode()) for name in ("m9", "m10")
                 for k in got[INBOX][name] if not k.startswith("\\")}
        assert words == {"Клиенты", "Партнёр"}
