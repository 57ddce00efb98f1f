"""Fingerprints survive a service decoding messy headers its own way (issue 12, item 6)."""

from __future__ import annotations

from mailtrek.devtools.samples import messy_messages
from mailtrek.fingerprint import fingerprint, loose_fingerprint, skeleton
from mailtrek.sim.mime import properties_from_mime
from mailtrek.stored_forms import crlf_ended, eight_bit_replaced, stored_forms
from mailtrek.stores.m365.graph import fingerprint_of_item


def _as_graph_lists(raw: bytes) -> str | None:
    props, _ = properties_from_mime(raw)
    return fingerprint_of_item({"internetMessageHeaders": props["internetMessageHeaders"]})


def test_every_messy_message_fingerprints_the_same_on_both_sides() -> None:
    messages = messy_messages()
    assert len(messages) > 100
    differ = [m.raw[:120] for m in messages if fingerprint(m.raw) != _as_graph_lists(m.raw)]
    assert differ == []


def test_raw_8bit_subject_matches_decoded_replacement() -> None:
    assert skeleton("SUBJECT", b"Caf\xe9 ok") == skeleton("SUBJECT", "Caf\ufffd ok")
    assert skeleton("SUBJECT", b"=?utf-8?q?Caf=C3=A9?=") == skeleton("SUBJECT", "Café")
    # Still tells different subjects apart.
    assert skeleton("SUBJECT", b"Invoice 1") != skeleton("SUBJECT", b"Invoice 2")


def test_from_is_matched_by_address_whatever_the_display_name() -> None:
    assert skeleton("FROM", b"J\xfcrgen <JM@Example.de>") == skeleton("FROM", "Jürgen <jm@example.de>")


def test_header_beyond_64k_still_counts() -> None:
    filler = b"X-Filler: " + b"a" * 70_000 + b"\r\n"
    raw = filler + b"Subject: late\r\nMessage-ID: <late@x>\r\n\r\nbody"
    other = filler + b"Subject: other\r\nMessage-ID: <late@x>\r\n\r\nbody"
    assert fingerprint(raw) != fingerprint(other)


def test_broken_base64_word_does_not_raise() -> None:
    assert fingerprint(b"Subject: =?utf-8?b?bad*base64!!?=\r\n\r\nx")


def test_bytearray_and_memoryview_fingerprint_like_bytes() -> None:
    raw = b"Subject: =?utf-8?q?Caf=C3=A9?=\r\nMessage-ID: <a@b>\r\n\r\nx"
    assert fingerprint(bytearray(raw)) == fingerprint(memoryview(raw)) == fingerprint(raw)


def test_eight_bit_replaced_and_loose_fingerprint_read_the_header_as_cyrus_stores_it() -> None:
    raw = "Subject: Grüße\r\nFrom: a@b.test\r\n\r\nBody ✓\r\n".encode()
    stored = b"Subject: GrXXXXe\r\nFrom: a@b.test\r\n\r\n" + "Body ✓\r\n".encode()
    assert eight_bit_replaced(raw) == stored
    assert loose_fingerprint(raw) == fingerprint(stored) != fingerprint(raw)
    ascii_head = "Subject: Hi\r\n\r\nBody ✓\r\n".encode()
    assert eight_bit_replaced(ascii_head) is None and loose_fingerprint(ascii_head) is None


def test_crlf_ended_and_stored_forms_say_what_a_server_changed() -> None:
    assert crlf_ended(b"Subject: a\r\n\r\nbody\r\n") is None
    assert crlf_ended(b"Subject: a\r\n\r\nbody") == (b"Subject: a\r\n\r\nbody\r\n",
                                                       "CRLF added at the end")
    assert crlf_ended(b"Subject: a\n\nbody") == (
        b"Subject: a\r\n\r\nbody\r\n", "line endings made CRLF, CRLF added at the end")
    assert [what for _, what in stored_forms("Subject: ü\r\n\r\nx".encode())] == [
        "8-bit header bytes replaced", "CRLF added at the end"]
    assert stored_forms(b"Subject: a\r\n\r\nbody\r\n") == []
    unended = bytearray("Subject: ü\r\n\r\nx".encode())  # as the reader hands a big one
    forms = stored_forms(unended)
    assert unended == bytearray("Subject: ü\r\n\r\nx".encode())  # not changed in place
    assert all(type(form) is bytes for form, _ in forms) and len(forms) == 2
