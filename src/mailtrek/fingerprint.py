"""Fingerprints: recognise the same message on both sides without trusting ids.

A fingerprint is a digest of the normalised Message-ID, Date, From and Subject header
values. Together with the size (where the destination keeps bytes exactly) it matches
messages that are already on the destination: from an earlier run whose state was lost,
an append whose answer never came, or another tool. Messages are never modified to
make matching work. Where a destination forces a change (Exchange's IMAP refuses
very long lines), the changed copy carries ``X-Mailtrek-Origin`` with the source's
fingerprint and size, and a destination listing reports those instead (``parse_origin``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import quopri
import re

# The header fields a store must fetch to compute a fingerprint (IMAP:
# BODY.PEEK[HEADER.FIELDS (...)]).
FINGERPRINT_FIELDS = ("MESSAGE-ID", "DATE", "FROM", "SUBJECT")

# A header mailtrek adds only to messages it had to change on the way (see above).
ORIGIN_FIELD = "X-MAILTREK-ORIGIN"

_WS = re.compile(rb"\s+")
_EIGHT_BIT = re.compile(rb"[\x80-\xff]")
_ORIGIN = re.compile(rb"^\s*fp=([0-9a-f]{32});\s*size=(\d{1,12})\s*$")


def parse_header_fields(block: bytes) -> dict[str, bytes]:
    """Return the first value of each header field in ``block`` (unfolded, raw bytes).

    Field names are upper-cased. Tolerates bare LF, CRLF and junk lines.
    """
    fields: dict[str, bytes] = {}
    name: str | None = None
    value = b""
    for line in block.replace(b"\r\n", b"\n").split(b"\n"):
        if line[:1] in (b" ", b"\t") and name is not None:
            value += b" " + line.strip()
            continue
        if name is not None and name not in fields:
            fields[name] = value.strip()
        name = None
        if b":" in line:
            head, _, rest = line.partition(b":")
            if head and not _WS.search(head):
                name = head.decode("ascii", "replace").upper()
                value = rest
    if name is not None and name not in fields:
        fields[name] = value.strip()
    return fields


def fingerprint_fields(fields: dict[str, bytes]) -> str:
    """Digest the fingerprint fields of an already parsed header block.

    Each value is reduced to a skeleton that survives a service decoding messy headers
    its own way (``skeleton``), so raw source bytes and the decoded headers a service
    hands back (Microsoft Graph's ``internetMessageHeaders``) fingerprint the same.
    """
    h = hashlib.sha256()
    for key in FINGERPRINT_FIELDS:
        v = skeleton(key, fields.get(key, b""))
        h.update(key.encode() + b"\0" + v + b"\0")
    return h.hexdigest()[:32]


def skeleton(field: str, value: bytes | str) -> bytes:
    """Return the part of a header value that every reader agrees on.

    Encoded words are decoded one by one (a malformed one stays as it is, as it does for
    Python's parser and Exchange); then only ASCII letters and digits are kept, so raw
    8-bit bytes, charset guesses, U+FFFD replacements, folding and the white space
    between encoded words cannot make two readings differ. ``FROM`` keeps only the
    addresses when it has any (display names are where the decoding differs most).
    Idempotent on its own output's source: decoding an already decoded value again
    gives the same skeleton.
    """
    text = value if isinstance(value, str) else bytes(value).decode("utf-8", "surrogateescape")
    if "=?" in text:
        text = _decode_words(text)
    if field == "FROM":
        addrs = sorted({a.lower() for a in _ADDR.findall(text)})
        if addrs:
            return " ".join(addrs).encode("ascii", "ignore")
    return _NOT_ALNUM.sub("", text.encode("ascii", "ignore").decode("ascii")).encode("ascii")


_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=")
_NOT_ALNUM = re.compile(r"[^A-Za-z0-9]+")
_ADDR = re.compile(r"[A-Za-z0-9.!#$%&'*+/=^_`{|}~-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*")


def _decode_words(text: str) -> str:
    """Decode each well-formed RFC 2047 encoded word of ``text``; leave the rest."""

    def one(m: re.Match[str]) -> str:
        charset, enc, data = m.group(1).split("*")[0], m.group(2).upper(), m.group(3)
        try:
            if enc == "B":
                raw = base64.b64decode(data + "=" * (-len(data) % 4))
            else:
                raw = quopri.decodestring(data.replace("_", " ").encode("ascii", "ignore"),
                                          header=True)
            return raw.decode(charset, "replace")
        except (ValueError, LookupError, binascii.Error, UnicodeError):
            return m.group(0)

    return _WORD.sub(one, text)


def fingerprint(header_block: bytes) -> str:
    """Return the fingerprint of a message from its header block (or whole bytes)."""
    if isinstance(header_block, memoryview):
        header_block = bytes(header_block)
    # A big message arrives as a bytearray: copy its header block, never its body.
    return fingerprint_fields(parse_header_fields(bytes(_head(header_block))))


def loosen(value: bytes) -> bytes:
    """A header value with every 8-bit byte read as ``X`` (what Cyrus stores)."""
    return _EIGHT_BIT.sub(b"X", value)


def loose_fingerprint(raw: bytes) -> str | None:
    """The fingerprint of ``raw`` as a server that replaces 8-bit header bytes with ``X``
    stores it (Cyrus's ``munge8bit``); None when its fingerprint fields are ASCII (the
    fingerprint is then the same)."""
    fields = parse_header_fields(_head(raw))
    if all(v.isascii() for v in fields.values()):
        return None
    return fingerprint_fields({k: loosen(v) for k, v in fields.items()})


def _head(raw: bytes) -> bytes:
    for sep in (b"\r\n\r\n", b"\n\n"):
        i = raw.find(sep)
        if i >= 0:
            return raw[:i]
    return raw


def message_id_of(header_block: bytes) -> str | None:
    """Return the Message-ID (with angle brackets) or None."""
    v = parse_header_fields(header_block).get("MESSAGE-ID", b"").strip()
    return v.decode("utf-8", "replace") if v else None


def match_key(fp: str | None, size: int, exact_mime: bool) -> tuple[str | None, int | None]:
    """The key that pairs a source with a destination message.

    Size counts only where the destination keeps bytes exactly.
    """
    return (fp, size if exact_mime else None)


def origin_stamp(fp: str, size: int) -> bytes:
    """Return the ``X-Mailtrek-Origin`` header line (no line ending) for a changed copy."""
    return b"X-Mailtrek-Origin: fp=%s; size=%d" % (fp.encode(), size)


def parse_origin(value: bytes | None) -> tuple[str, int] | None:
    """Return (fingerprint, size) from an ``X-Mailtrek-Origin`` value, or None if malformed."""
    m = _ORIGIN.match(value or b"")
    return (m.group(1).decode(), int(m.group(2))) if m else None
