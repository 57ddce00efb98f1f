"""Folder paths and IMAP mailbox names, both ways (pure).

A path is a tuple of folder names; a mailbox name is bytes on the wire: the names joined
by the server's hierarchy delimiter, in modified UTF-7 (RFC 3501 5.1.3) unless the
connection enabled UTF8=ACCEPT (RFC 6855), under the personal namespace's prefix
(``INBOX.`` on Courier and Cyrus) except for INBOX and its children.
"""

from __future__ import annotations

from imapclient import imap_utf7


def encode_name(path: tuple[str, ...], *, delim: str, prefix: bytes = b"",
                utf8: bool = False) -> bytes:
    """The mailbox name of ``path`` on a server with this delimiter and prefix."""
    if path == ("INBOX",):
        return b"INBOX"
    text = delim.join(path)
    raw = text.encode() if utf8 else imap_utf7.encode(text)
    if path[0].upper() == "INBOX" and prefix.upper().startswith(b"INBOX"):
        return raw
    return prefix + raw


def decode_name(name: bytes, *, delim: str | None, prefix: bytes = b"",
                utf8: bool = False) -> tuple[str, ...]:
    """The path of mailbox ``name`` as listed (``delim`` None: a flat name)."""
    if name.upper() == b"INBOX":
        return ("INBOX",)
    if prefix and name.startswith(prefix):
        name = name[len(prefix):]
    text = name.decode("utf-8", "replace") if utf8 else imap_utf7.decode(name)
    parts = tuple(text.split(delim)) if delim else (text,)
    if parts[0].upper() == "INBOX":
        parts = ("INBOX", *parts[1:])
    return parts
