"""Adoption of copies a destination server rewrote (pure planner rules)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mailtrek.fingerprint import fingerprint_fields
from mailtrek.model import MessageMeta
from mailtrek.stores.imap.rewrites import crlf, has_bare_lf, header_block, loosen, may_be_rewritten
from mailtrek.sync.options import CopyOptions
from mailtrek.sync.planner import plan_folder

NONE = fingerprint_fields({})


def meta(uid: int, size: int, fp: str, loose: str | None = None) -> MessageMeta:
    return MessageMeta(uid=uid, size=size, fingerprint=fp, loose_fingerprint=loose or fp)


def plan(src: list[MessageMeta], dst: list[MessageMeta]):  # type: ignore[no-untyped-def]
    return plan_folder(src, {}, dst, CopyOptions(), max_size=None, exact_mime=True)


def test_rewritten_copy_is_adopted_by_its_loose_fingerprint() -> None:
    # Cyrus: 8-bit header bytes became X (fingerprint changed, size kept).
    p = plan([meta(1, 100, "a", "L")], [meta(7, 100, "b", "L")])
    assert [(s.uid, d.uid) for s, d in p.adopt] == [(1, 7)] and not p.copy
    # Courier: CRLF added at the end (size + 2).
    p = plan([meta(1, 100, "a")], [meta(7, 102, "a")])
    assert [(s.uid, d.uid) for s, d in p.adopt] == [(1, 7)]


def test_exact_pairs_come_first_and_implausible_sizes_are_copied() -> None:
    # uid 1 (refused earlier, not there) must not take uid 2's exact copy.
    p = plan([meta(1, 100, "a"), meta(2, 101, "a")], [meta(7, 101, "a")])
    assert [(s.uid, d.uid) for s, d in p.adopt] == [(2, 7)] and [m.uid for m in p.copy] == [1]
    p = plan([meta(1, 100, "a")], [meta(7, 500, "a")])
    assert not p.adopt and [m.uid for m in p.copy] == [1]


def test_messages_without_fingerprint_fields_pair_only_at_size_or_crlf() -> None:
    p = plan([meta(1, 100, NONE), meta(2, 300, NONE)], [meta(7, 102, NONE), meta(8, 350, NONE)])
    assert [(s.uid, d.uid) for s, d in p.adopt] == [(1, 7)] and [m.uid for m in p.copy] == [2]


def test_what_may_be_rewritten() -> None:
    assert not may_be_rewritten(b"Subject: x\r\n\r\nbody\r\n")
    assert may_be_rewritten(b"Subject: x\n\nbody\n")  # bare LF
    assert may_be_rewritten(b"Subject: x\r\n\r\nbody")  # no CRLF at the end
    assert may_be_rewritten("Subject: Grüße\r\n\r\nb\r\n".encode())  # 8-bit header
    assert may_be_rewritten(b"Subject: x\r\nbody text\r\n")  # no empty line
    assert crlf(b"a\nb\r\nc\n") == b"a\r\nb\r\nc\r\n"
    assert loosen("Grüße".encode()) == b"GrXXXXe"


@given(st.binary(max_size=40).map(lambda b: b.replace(b"\x00", b"\r").replace(b"\x01", b"\n")))
def test_bare_lf_is_an_lf_without_cr_before_it(raw: bytes) -> None:
    """The fast count equals the definition: some LF not preceded by CR."""
    assert has_bare_lf(raw) == any(c == 10 and (i == 0 or raw[i - 1] != 13) for i, c in enumerate(raw))


@given(st.lists(st.sampled_from([b"\r", b"\n", b"a", b":", b" ", b"\xe9"]), max_size=16).map(b"".join))
def test_header_block_ends_at_the_first_empty_line(raw: bytes) -> None:
    """Either line end: the block stops at the earliest empty line, or is the whole message."""
    ends = [i for i in (raw.find(b"\r\n\r\n"), raw.find(b"\n\n")) if i >= 0]
    assert header_block(raw) == (raw[: min(ends)] if ends else raw)


def test_stored_change_names_cyrus_munge8bit_exactly() -> None:
    """Cyrus serves the header block with its empty line; what was sent is compared
    without it, so a copy changed only by munge8bit is named as such."""
    from mailtrek.stores.imap.rewrites import stored_change

    sent = "Subject: Grüße\r\nFrom: a@b\r\n\r\nbody\r\n".encode()
    munged = loosen("Subject: Grüße\r\nFrom: a@b".encode()) + b"\r\n\r\n"
    note = stored_change(len(sent), munged, sent)
    assert note == "changed by the server: 8-bit header bytes replaced"
    other = b"Subject: something else\r\nFrom: a@b\r\n\r\n"
    assert stored_change(len(sent), other, sent) == "changed by the server: header rewritten"
    assert stored_change(len(sent), sent.split(b"\r\n\r\n")[0] + b"\r\n\r\n", sent) == ""
