"""What ordinary IMAP servers change in the messages they store, found by running them.

Courier stores bare LF line ends as CRLF and ends every message with CRLF; Cyrus refuses bare LF ("NO Message contains bare
newlines") and replaces 8-bit bytes in header fields with ``X`` (its default
``munge8bit``). Dovecot keeps the bytes. Only messages these predicates flag are checked
after their APPEND, so exact messages cost nothing extra.
"""

from __future__ import annotations

from mailtrek.fingerprint import loosen
from mailtrek.stored_forms import CRLF_AT_END, EIGHT_BIT_REPLACED, LINE_ENDS_CRLF, crlf


def header_block(raw: bytes) -> bytes:
    """The header block of ``raw`` (up to the first empty line, either line end)."""
    end = raw.find(b"\r\n\r\n")
    lf = raw.find(b"\n\n", 0, end if end >= 0 else len(raw))  # only before it: no second scan
    ends = [i for i in (end, lf) if i >= 0]
    return raw[: min(ends)] if ends else raw


def has_bare_lf(raw: bytes) -> bool:
    """True when some line ends with LF alone.

    Two C-speed counts, not the regex: a lookbehind pattern has no literal to skip to and
    tries every byte, which cost a third of a copy's CPU. Every LF of a CRLF is one LF.
    """
    return raw.count(b"\n") != raw.count(b"\r\n")


def may_be_rewritten(raw: bytes) -> bool:
    """True for a message a server may store changed: bare LF, no CRLF at the end
    (Courier adds one), or 8-bit header bytes."""
    if has_bare_lf(raw) or not raw.endswith(b"\r\n"):
        return True
    block = header_block(raw)
    return not block.isascii() or _odd_header(block)


def _odd_header(block: bytes) -> bool:
    """A header line that is no field (body text without the empty line): Cyrus repairs it."""
    for line in block.split(b"\n"):
        line = line.rstrip(b"\r")
        if line and line[:1] not in (b" ", b"\t") and b":" not in line:
            return True
    return False


def stored_change(size: int, header: bytes, sent: bytes) -> str:
    """What a server changed in a message it stored ("" when nothing seen), from the
    stored copy's ``size`` and ``header`` block against the bytes ``sent``."""
    want = crlf(header_block(sent))
    notes = []
    stored, sent_head = header.rstrip(b"\r\n"), want.rstrip(b"\r\n")
    if stored != sent_head:
        # Exactly Cyrus's munge8bit, or some other rewrite (the stored header block ends
        # with its empty line, the one cut from what was sent does not: compare without).
        munged = not sent_head.isascii() and stored == loosen(sent_head)
        notes.append("changed by the server: " + (
            EIGHT_BIT_REPLACED if munged else "header rewritten"))
    if size != len(sent):
        fixed = crlf(sent)
        why = (f" ({LINE_ENDS_CRLF})" if size == len(fixed) else
               f" ({CRLF_AT_END})" if size == len(fixed) + 2
               and not fixed.endswith(b"\r\n") else "")
        notes.append(f"changed by the server: stored {size:,} bytes, sent {len(sent):,}" + why)
    return "; ".join(notes)


__all__ = ["crlf", "has_bare_lf", "header_block", "loosen", "may_be_rewritten",
           "stored_change"]
