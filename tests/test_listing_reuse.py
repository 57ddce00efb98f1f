"""A read-only store answers the call right after a listing from it, once (one round trip
less on a WAN: the Gmail check lists just before the copy plans)."""

from __future__ import annotations

from typing import Any

from imap_helpers import load, new_user, store
from test_copy_dovecot import T0


async def test_a_source_listing_answers_the_next_call_once(dovecot_src: Any) -> None:
    user, pw = new_user(dovecot_src)
    await load(dovecot_src, user, pw, [(("INBOX",), b"Subject: a\r\n\r\na\r\n", frozenset(), T0)])
    src = store(dovecot_src, user, pw)  # read-only
    await src.connect()
    try:
        first = {f.path: f.messages for f in await src.list_folders()}
        await load(dovecot_src, user, pw, [(("INBOX",), b"Subject: b\r\n\r\nb\r\n", frozenset(), T0)])
        again = {f.path: f.messages for f in await src.list_folders()}
        fresh = {f.path: f.messages for f in await src.list_folders()}
    finally:
        await src.close()
    assert first[("INBOX",)] == again[("INBOX",)] == 1  # the reused answer
    assert fresh[("INBOX",)] == 2  # used once only


async def test_a_destination_lists_afresh_every_time(dovecot_dst: Any) -> None:
    user, pw = new_user(dovecot_dst)
    await load(dovecot_dst, user, pw, [(("INBOX",), b"Subject: a\r\n\r\na\r\n", frozenset(), T0)])
    dst = store(dovecot_dst, user, pw, readonly=False)
    await dst.connect()
    try:
        await dst.list_folders()
        await load(dovecot_dst, user, pw, [(("INBOX",), b"Subject: b\r\n\r\nb\r\n", frozenset(), T0)])
        again = {f.path: f.messages for f in await dst.list_folders()}
    finally:
        await dst.close()
    assert again[("INBOX",)] == 2
