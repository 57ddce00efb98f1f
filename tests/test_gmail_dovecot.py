"""Gmail label strategies end to end, on a real Dovecot made to look like Gmail.

The source has ``[Gmail]/All Mail`` holding every message (but Trash and Spam), the same
messages in label folders, and Gmail's special-use flags; identity is the fingerprint
(no X-GM-EXT-1 here). Each strategy must give exactly the expected destination folders,
copies and keywords, and a re-run must add nothing.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from imap_helpers import dump, load, new_user, store
from mailtrek.devtools.dovecot import DovecotInstance
from mailtrek.state.db import MailboxState, open_engine
from mailtrek.stores.gmail import DownloadBudget, GmailSource, Strategy
from mailtrek.sync.engine import copy_mailbox
from mailtrek.sync.options import CopyOptions, CopyReport

GMAIL_USES = (("[Gmail]/All Mail", "All"), ("[Gmail]/Sent Mail", "Sent"),
              ("[Gmail]/Drafts", "Drafts"), ("[Gmail]/Trash", "Trash"), ("[Gmail]/Spam", "Junk"),
              ("[Gmail]/Starred", "Flagged"), ("[Gmail]/Important", "Important"))
# Dovecot merges this second ``namespace inbox`` block into the first one.
GMAIL_CONF = "namespace inbox {\n" + "".join(
    f'  mailbox "{name}" {{\n    special_use = \\{use}\n  }}\n' for name, use in GMAIL_USES
) + "}\n"

ALL = ("[Gmail]", "All Mail")
SENT = ("[Gmail]", "Sent Mail")
DRAFTS = ("[Gmail]", "Drafts")
TRASH = ("[Gmail]", "Trash")
SPAM = ("[Gmail]", "Spam")
STARRED = ("[Gmail]", "Starred")
IMPORTANT = ("[Gmail]", "Important")
WORK = ("Work",)
ALPHA = ("Work", "Alpha")
INBOX = ("INBOX",)

# message -> the Gmail folders (labels) holding it
LAYOUT: dict[str, tuple[tuple[str, ...], ...]] = {
    "m1": (INBOX, WORK, ALL, IMPORTANT),
    "m2": (WORK, ALPHA, ALL),
    "m3": (SENT, ALL, STARRED),
    "m4": (ALL,),
    "m5": (TRASH,),
    "m6": (SPAM,),
    "m7": (DRAFTS, ALL),
    "m8": (INBOX, ALL),
}


def raw(name: str) -> bytes:
    return (f"Message-ID: <{name}@gmail.test>\r\nFrom: a@gmail.test\r\nTo: b@x.test\r\n"
            f"Subject: {name}\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\n\r\n"
            f"body of {name}\r\n").encode()


def date(name: str) -> datetime:
    return datetime(2024, 1, int(name[1:]), 10, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def gmail_like() -> Iterator[DovecotInstance]:
    if shutil.which("dovecot") is None:
        pytest.skip("dovecot is not installed")
    root = Path(tempfile.mkdtemp(prefix="mt-gm-", dir="/tmp"))
    inst = DovecotInstance(root, name="gm", layout="index", extra_conf=GMAIL_CONF)
    inst.start()
    try:
        yield inst
    finally:
        inst.remove()


@pytest.fixture
def seeded(gmail_like: DovecotInstance) -> tuple[DovecotInstance, str, str]:
    login, pw = new_user(gmail_like, "gm")
    items = [(path, raw(m), frozenset({"\\Seen"}), date(m))
             for m, paths in LAYOUT.items() for path in paths]
    import asyncio

    asyncio.run(load(gmail_like, login, pw, items))
    return gmail_like, login, pw


async def gmail_copy(src: tuple[Any, str, str], dst: tuple[Any, str, str], state_path: Path,
                     strategy: Strategy, **kw: Any) -> tuple[CopyReport, GmailSource]:
    inner = store(*src)
    d = store(*dst, readonly=False)
    await inner.connect()
    await d.connect()
    state = MailboxState(open_engine(state_path), "gmail")
    source = GmailSource(inner, strategy, done=state.messages_of, **kw)
    try:
        return await copy_mailbox(source, d, state, CopyOptions()), source
    finally:
        await source.close()
        await d.close()


def by_subject(inst: Any, login: str, pw: str) -> dict[tuple[str, ...], dict[str, frozenset[str]]]:
    """Destination folders -> {message name: flags}, non-empty folders only."""
    import asyncio

    out: dict[tuple[str, ...], dict[str, frozenset[str]]] = {}
    d = asyncio.run(_dump_names(inst, login, pw))
    for path, rows in d.items():
        if rows:
            out[path] = dict(rows)
    return out


async def _dump_names(inst: Any, login: str, pw: str) -> dict[tuple[str, ...], list[tuple[str, frozenset[str]]]]:
    st = store(inst, login, pw)
    await st.connect()
    out: dict[tuple[str, ...], list[tuple[str, frozenset[str]]]] = {}
    try:
        for f in await st.list_folders():
            if not f.selectable:
                continue
            metas = await st.list_messages(f, fingerprints=True)
            names = [m.subject or "" for m in metas]
            assert len(names) == len(set(names)), f"duplicate copies in {f.path}: {names}"
            out[f.path] = [(m.subject or "", frozenset(x for x in m.flags if x != "\\Recent"))
                           for m in metas]
    finally:
        await st.close()
    return out


S = frozenset({"\\Seen"})

EXPECTED = {
    Strategy.FOLDERS_CATEGORIES: {
        INBOX: {"m1": S | {"Important", "Work"}, "m8": S},
        ("Sent",): {"m3": S | {"\\Flagged"}},
        ("Drafts",): {"m7": S},
        ALPHA: {"m2": S | {"Work"}},
        ("Trash",): {"m5": S},
        ("Junk",): {"m6": S},
        ("Archive",): {"m4": S},
    },
    Strategy.FOLDERS: {
        INBOX: {"m1": S | {"Important"}, "m8": S},
        WORK: {"m1": S | {"Important"}, "m2": S},
        ALPHA: {"m2": S},
        ("Sent",): {"m3": S | {"\\Flagged"}},
        ("Drafts",): {"m7": S},
        ("Trash",): {"m5": S},
        ("Junk",): {"m6": S},
        ("Archive",): {"m4": S},
    },
    Strategy.ALL_MAIL: {
        ALL: {"m1": S | {"Inbox", "Work", "Important"}, "m2": S | {"Work", "Work/Alpha"},
              "m3": S | {"Sent", "\\Flagged"}, "m4": S, "m7": S | {"Drafts"},
              "m8": S | {"Inbox"}},
        ("Trash",): {"m5": S},  # All Mail leaves Trash and Spam out: kept as they are
        ("Junk",): {"m6": S},
    },
}


@pytest.mark.parametrize("strategy", list(Strategy))
def test_strategy_gives_exact_folders_copies_keywords_and_rerun_adds_nothing(
        seeded: tuple[DovecotInstance, str, str], dovecot_dst: DovecotInstance,
        tmp_path: Path, strategy: Strategy) -> None:
    import asyncio

    dst = (dovecot_dst, *new_user(dovecot_dst, "gd"))
    report, source = asyncio.run(gmail_copy(seeded, dst, tmp_path / "s.db", strategy))
    assert not report.errors and not report.skipped, (report.errors, report.skipped)
    assert source.identity == "fingerprint"
    got = by_subject(*dst)
    assert got == EXPECTED[strategy]
    expected_copies = sum(len(v) for v in EXPECTED[strategy].values())
    assert sum(f.copied for f in report.folders) == expected_copies
    before = asyncio.run(dump(*dst))
    again, _ = asyncio.run(gmail_copy(seeded, dst, tmp_path / "s.db", strategy))
    assert sum(f.copied + f.adopted for f in again.folders) == 0
    assert asyncio.run(dump(*dst)) == before


def test_lost_state_rerun_adopts_instead_of_copying(
        seeded: tuple[DovecotInstance, str, str], dovecot_dst: DovecotInstance,
        tmp_path: Path) -> None:
    import asyncio

    dst = (dovecot_dst, *new_user(dovecot_dst, "gd"))
    asyncio.run(gmail_copy(seeded, dst, tmp_path / "a.db", Strategy.FOLDERS_CATEGORIES))
    before = asyncio.run(dump(*dst))
    again, _ = asyncio.run(gmail_copy(seeded, dst, tmp_path / "b.db",
                                      Strategy.FOLDERS_CATEGORIES))
    assert sum(f.copied for f in again.folders) == 0
    assert asyncio.run(dump(*dst)) == before


def test_daily_quota_defers_oldest_mail_and_resumes_next_day(
        seeded: tuple[DovecotInstance, str, str], dovecot_dst: DovecotInstance,
        tmp_path: Path) -> None:
    import asyncio

    now = [1_700_000_000.0]
    size = len(raw("m1"))
    budget = DownloadBudget(limit=3 * size + 10, clock=lambda: now[0],
                            ledger=tmp_path / "ledger.json")
    dst = (dovecot_dst, *new_user(dovecot_dst, "gd"))
    report, source = asyncio.run(gmail_copy(seeded, dst, tmp_path / "q.db",
                                            Strategy.FOLDERS_CATEGORIES, budget=budget))
    assert sum(f.copied for f in report.folders) == 3
    names = {n for rows in by_subject(*dst).values() for n in rows}
    assert names == {"m8", "m7", "m6"}  # the newest three
    assert source.deferral is not None and source.deferral.messages == 5
    assert source.deferral.resume_at == datetime.fromtimestamp(now[0] + 86400, UTC)
    assert "continues after" in source.deferral.describe()
    # Same day, another process: the ledger says the budget is spent.
    now[0] += 3600
    budget2 = DownloadBudget(limit=budget.limit, clock=lambda: now[0], ledger=budget.ledger)
    report, source = asyncio.run(gmail_copy(seeded, dst, tmp_path / "q.db",
                                            Strategy.FOLDERS_CATEGORIES, budget=budget2))
    assert sum(f.copied for f in report.folders) == 0 and source.deferral is not None
    # A day later: the next three newest, then the rest.
    now[0] += 86400
    report, source = asyncio.run(gmail_copy(seeded, dst, tmp_path / "q.db",
                                            Strategy.FOLDERS_CATEGORIES, budget=budget2))
    assert sum(f.copied for f in report.folders) == 3
    now[0] += 86400
    report, source = asyncio.run(gmail_copy(seeded, dst, tmp_path / "q.db",
                                            Strategy.FOLDERS_CATEGORIES, budget=budget2))
    assert sum(f.copied for f in report.folders) == 2 and source.deferral is None
    assert by_subject(*dst) == EXPECTED[Strategy.FOLDERS_CATEGORIES]


def _cli(*args: str, home: Path) -> Any:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILTREK_")}
    env["MAILTREK_HOME"] = str(home)
    return subprocess.run([sys.executable, "-m", "mailtrek", *args], capture_output=True,
                          text=True, env=env, timeout=120)


def test_cli_copy_recognises_gmail_and_obeys_gmail_labels(
        seeded: tuple[DovecotInstance, str, str], dovecot_dst: DovecotInstance,
        tmp_path: Path) -> None:
    inst, login, pw = seeded
    (tmp_path / "spw").write_text(pw)

    def run(dst: tuple[Any, str, str], *extra: str) -> Any:
        (tmp_path / "dpw").write_text(dst[2])
        return _cli("copy", f"imap://{login}@127.0.0.1:{inst.port}",
                    f"imap://{dst[1]}@127.0.0.1:{dst[0].port}",
                    "--source-password-file", str(tmp_path / "spw"),
                    "--dest-password-file", str(tmp_path / "dpw"),
                    "--state", str(tmp_path / f"{dst[1]}.db"), *extra, home=tmp_path)

    auto = (dovecot_dst, *new_user(dovecot_dst, "gd"))
    r = run(auto)
    assert r.returncode == 0, r.stdout + r.stderr
    assert by_subject(*auto) == EXPECTED[Strategy.FOLDERS_CATEGORIES]
    off = (dovecot_dst, *new_user(dovecot_dst, "gd"))
    r = run(off, "--gmail-labels", "off")
    assert r.returncode == 0, r.stdout + r.stderr
    plain = by_subject(*off)  # every label folder copied as it is, All Mail included
    assert set(plain[ALL]) == {"m1", "m2", "m3", "m4", "m7", "m8"}
    assert "Important" not in plain[("INBOX",)]["m1"]
    bad = run((dovecot_dst, *new_user(dovecot_dst, "gd")), "--gmail-labels", "labels")
    assert bad.returncode == 2 and "--gmail-labels" in (bad.stdout + bad.stderr)
