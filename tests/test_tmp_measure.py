from datetime import timedelta

import pytest

from imap_helpers import copy, load, new_user, store
from mailtrek.state.db import MailboxState, open_engine
from mailtrek.sync.options import CopyOptions
from mailtrek.sync.verify import verify_mailbox
from test_copy_dovecot import T0


async def _verify(src_srv, src, dst_srv, dst, state):
    s, d = store(src_srv, *src), store(dst_srv, *dst)
    await s.connect()
    await d.connect()
    try:
        return await verify_mailbox(s, d, CopyOptions(), state)
    finally:
        await s.close()
        await d.close()


@pytest.mark.parametrize("srv", ["courier_server", "cyrus_server"])
async def test_measure(srv, dovecot_src, corpus_rows, tmp_path, request) -> None:
    dst_srv = request.getfixturevalue(srv)
    src, dst = new_user(dovecot_src), new_user(dst_srv)
    items = [(("INBOX",), raw, frozenset({"\\Seen"}), T0 + timedelta(minutes=i))
             for i, (_n, raw, _s) in enumerate(corpus_rows())]
    await load(dovecot_src, *src, items)
    rep = await copy((dovecot_src, *src), (dst_srv, *dst), tmp_path / "c.db")
    notes = [n.note for f in rep.folders for n in f.notes]
    print("\nCOPY", srv, len(items), rep.total("copied"), len(rep.skipped), len(notes), sorted(set(notes))[:5])
    for state in (None, MailboxState(open_engine(tmp_path / "c.db"), "test")):
        got = await _verify(dovecot_src, src, dst_srv, dst, state)
        print("VERIFY", "state" if state else "nostate", got["ok"], got["totals"])
        print("  kinds", sorted({(p["kind"], p["detail"]) for p in got["problems"]}))
