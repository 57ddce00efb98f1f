"""Mailbox names both ways: every path comes back from its name, on every server layout."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mailtrek.stores.imap.names import decode_name, encode_name

LAYOUTS = [("/", b""), (".", b""), (".", b"INBOX.")]  # Dovecot, flat dot, Courier/Cyrus
part = st.text(min_size=1, max_size=12).filter(
    lambda s: not any(c in s for c in "/.\r\n\0") and s.upper() != "INBOX")


@given(st.lists(part, min_size=1, max_size=4), st.booleans())
def test_a_path_comes_back_from_its_name(parts: list[str], utf8: bool) -> None:
    path = tuple(parts)
    for delim, prefix in LAYOUTS:
        name = encode_name(path, delim=delim, prefix=prefix, utf8=utf8)
        assert decode_name(name, delim=delim, prefix=prefix, utf8=utf8) == path


def test_inbox_and_its_children_are_never_prefixed() -> None:
    assert encode_name(("INBOX",), delim=".", prefix=b"INBOX.") == b"INBOX"
    assert encode_name(("INBOX", "Sub"), delim=".", prefix=b"INBOX.") == b"INBOX.Sub"
    assert encode_name(("Sub",), delim=".", prefix=b"INBOX.") == b"INBOX.Sub"
    assert decode_name(b"inbox", delim="/") == ("INBOX",)
    assert decode_name(b"Inbox/Projects", delim="/") == ("INBOX", "Projects")


def test_modified_utf7_unless_utf8_was_enabled() -> None:
    assert encode_name(("Übersicht",), delim="/") == b"&ANw-bersicht"
    assert encode_name(("Übersicht",), delim="/", utf8=True) == "Übersicht".encode()
    assert decode_name(b"&BB8EPgRHBEIEMA-", delim="/") == ("Почта",)
