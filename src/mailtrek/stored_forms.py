"""What ordinary IMAP servers store instead of the bytes they were sent, found by running
them: Cyrus replaces 8-bit bytes in header fields with ``X`` (its default ``munge8bit``);
Courier stores bare LF line ends as CRLF and ends every message with CRLF. Dovecot keeps
the bytes. ``verify`` recognises a copy by these forms; the IMAP store checks its APPENDs
against them (``stores.imap.rewrites``).
"""

from __future__ import annotations

import re

from mailtrek.fingerprint import loosen

EIGHT_BIT_REPLACED = "8-bit header bytes replaced"
LINE_ENDS_CRLF = "line endings made CRLF"
CRLF_AT_END = "CRLF added at the end"

_BARE_LF = re.compile(rb"(?<!\r)\n")


def crlf(raw: bytes) -> bytes:
    """``raw`` with every bare LF made CRLF (CRLF left alone)."""
    return _BARE_LF.sub(b"\r\n", raw)


def eight_bit_replaced(raw: bytes) -> bytes | None:
    """``raw`` with every 8-bit byte of its header block replaced by ``X``, the body kept
    (what Cyrus stores); None when the header block is ASCII (nothing to replace)."""
    end = raw.find(b"\r\n\r\n")
    head, body = (raw[:end], raw[end:]) if end >= 0 else (raw, b"")
    if head.isascii():
        return None
    return loosen(head) + body


def crlf_ended(raw: bytes) -> tuple[bytes, str] | None:
    """``raw`` as Courier stores it (line ends CRLF, a CRLF at the end) and what that
    changed; None when it changes nothing."""
    bare = raw.count(b"\n") != raw.count(b"\r\n")  # C-speed counts, no regex
    if not bare and raw.endswith(b"\r\n"):
        return None  # the common case: nothing copied
    form = crlf(raw) if bare else raw
    what = [LINE_ENDS_CRLF] if bare else []
    if not form.endswith(b"\r\n"):
        form = form + b"\r\n"  # never in place: ``raw`` may be the reader's bytearray
        what.append(CRLF_AT_END)
    return bytes(form), ", ".join(what)


def stored_forms(raw: bytes) -> list[tuple[bytes, str]]:
    """Each other form a server may store ``raw`` in, with what it changed (none for a
    message every server keeps as it is)."""
    out = []
    munged = eight_bit_replaced(raw)
    if munged is not None:
        out.append((munged, EIGHT_BIT_REPLACED))
    courier = crlf_ended(raw)
    if courier is not None:
        out.append(courier)
    return out
