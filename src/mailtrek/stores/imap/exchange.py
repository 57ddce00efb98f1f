"""Make a message acceptable to Exchange Online's IMAP APPEND, losslessly where possible.

Exchange refuses an APPEND whose message has a line longer than about 10,500 octets
(``BAD Command Argument Error 11``; imapsync FAQ.Office365, which wraps at 10,239). A
blind CRLF every 10,000 octets (imapsync's ``--regexmess``) corrupts base64, HTML and
signatures, so instead:
- a leaf part with long lines is re-encoded: text as quoted-printable with soft line
  breaks, anything else as base64, and base64/quoted-printable bodies are re-wrapped.
  The decoded content is unchanged;
- a long header line is folded at white space (unfolding restores it exactly); only a
  header run with no white space to fold at is wrapped, which changes its value, and
  the note says so.
A message changed here is stamped with ``X-Mailtrek-Origin`` (the source fingerprint and
size), so that a run that lost its state still recognises it on the destination.

``Disposition-Notification-To:`` is renamed to the same-length
``X-Disposition-Notification: `` when asked: Outlook otherwise sends read receipts for
migrated mail (imapsync ``--disarmreadreceipts``, FAQ.Office365). Same length, so the
message's size, and so its size-based fingerprint, is unchanged.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from email.parser import BytesHeaderParser
from email.policy import compat32

from mailtrek.fingerprint import fingerprint, origin_stamp

MAX_LINE = 10_000  # octets; under Exchange's ~10,500 and imapsync's proven 10,239
HEADER_FOLD = 998  # RFC 5322 line limit: what a folded header line is cut to
_DNT = re.compile(rb"^Disposition-Notification-To:", re.I | re.M)
_DNT_DISARMED = b"X-Disposition-Notification: "  # 28 octets, like the name it replaces
_DNT_BACK = re.compile(rb"^X-Disposition-Notification: ", re.M)
_LINES = re.compile(rb"(?<=\n)")


@dataclass(slots=True)
class Prepared:
    """A message as it will be sent to Exchange, and what was changed on the way."""

    raw: bytes
    notes: list[str] = field(default_factory=list)
    lossy: bool = False  # some line could only be wrapped, changing a value
    stamped: bool = False


def prepare(raw: bytes, *, disarm_read_receipts: bool, max_line: int = MAX_LINE) -> Prepared:
    """Return ``raw`` made acceptable to Exchange (unchanged when it already is)."""
    out = Prepared(raw)
    if disarm_read_receipts:
        head_end = _head_end(raw)
        head, n = _DNT.subn(_DNT_DISARMED, raw[:head_end])
        if n:
            out.raw = head + raw[head_end:]
            out.notes.append("read receipt request disarmed (X-Disposition-Notification)")
    if has_long_line(out.raw, max_line):
        eol = b"\r\n" if b"\r\n" in out.raw[:65536] else b"\n"
        fixed = _fix_entity(out.raw, max_line, eol, out)
        stamp = origin_stamp(fingerprint(raw), len(raw)) + eol
        out.raw = stamp + fixed
        out.stamped = True
    return out


def restore_disarmed(raw: bytes) -> bytes:
    """Undo the read-receipt rename in the top header (for comparing with the source).

    Exact only when the source had no ``X-Disposition-Notification:`` field of its own.
    """
    head_end = _head_end(raw)
    return _DNT_BACK.sub(b"Disposition-Notification-To:", raw[:head_end]) + raw[head_end:]


def has_long_line(data: bytes, limit: int) -> bool:
    """True when some line of ``data`` may be longer than ``limit`` octets (fast, in C).

    Counts a CR before the LF too, so a line of exactly ``limit`` octets may be reported:
    re-encoding it as well does no harm.
    """
    return len(data) > limit and max(map(len, data.split(b"\n"))) > limit


def longest_line(data: bytes) -> int:
    """Return the length of the longest line of ``data`` (without its line ending)."""
    best = 0
    start = 0
    n = len(data)
    while start < n:
        end = data.find(b"\n", start)
        if end < 0:
            end = n
        length = end - start - (1 if end > start and data[end - 1] == 13 else 0)
        if length > best:
            best = length
        start = end + 1
    return best


# -- the MIME walk (on raw bytes: everything not too long is left byte for byte) --------
def _head_end(raw: bytes) -> int:
    """Index where the header block ends (before its blank line); len(raw) if none."""
    if raw.startswith((b"\r\n", b"\n")):
        return 0
    cands = [i for i in (raw.find(b"\r\n\r\n"), raw.find(b"\n\n")) if i >= 0]
    return min(cands) if cands else len(raw)


def _split(raw: bytes) -> tuple[bytes, bytes, bytes]:
    """(header block, separator incl. the blank line, body)."""
    i = _head_end(raw)
    if i == len(raw):
        return raw, b"", b""
    if raw.startswith((b"\r\n", b"\n")):
        sep = b"\r\n" if raw.startswith(b"\r\n") else b"\n"
        return b"", sep, raw[len(sep):]
    sep = b"\r\n\r\n" if raw[i : i + 4] == b"\r\n\r\n" else b"\n\n"
    return raw[:i], sep, raw[i + len(sep):]


def _fix_entity(raw: bytes, limit: int, eol: bytes, out: Prepared) -> bytes:
    head, sep, body = _split(raw)
    parsed = BytesHeaderParser(policy=compat32).parsebytes(head + b"\n\n")
    new_head = _fix_header(head, limit, eol, out)
    ctype = parsed.get_content_type()
    cte = str(parsed.get("content-transfer-encoding") or "7bit").strip().lower()
    boundary = parsed.get_boundary() if parsed.get_content_maintype() == "multipart" else None
    if longest_line(body) <= limit:
        return new_head + sep + body
    if boundary:
        body = _fix_multipart(body, boundary.encode("utf-8", "surrogateescape"), limit, eol, out)
    elif ctype == "message/rfc822" and cte in ("7bit", "8bit", "binary"):
        body = _fix_entity(body, limit, eol, out)
    else:
        body, new_cte = _reencode_leaf(body, ctype, cte, eol, out)
        new_head = _set_cte(new_head, new_cte, eol)
    return new_head + sep + body


def _fix_multipart(body: bytes, boundary: bytes, limit: int, eol: bytes, out: Prepared) -> bytes:
    """Fix each part between the delimiter lines; preamble/epilogue are only wrapped."""
    lines = [x for x in _LINES.split(body) if x]
    dash = b"--" + boundary
    chunks: list[list[bytes]] = [[]]  # preamble, parts..., epilogue (after the close)
    delims: list[bytes] = []
    closed = False
    for line in lines:
        bare = line.rstrip(b"\r\n").rstrip(b" \t")
        if not closed and bare in (dash, dash + b"--"):
            delims.append(line)
            chunks.append([])
            closed = bare == dash + b"--"
            continue
        chunks[-1].append(line)
    result: list[bytes] = []
    for i, chunk in enumerate(chunks):
        text = b"".join(chunk)
        is_part = 0 < i < len(chunks) and not (closed and i == len(chunks) - 1)
        if is_part and longest_line(text) > limit:
            # The line ending before the next delimiter belongs to the delimiter.
            end = b"\r\n" if text.endswith(b"\r\n") else b"\n" if text.endswith(b"\n") else b""
            text = _fix_entity(text[: len(text) - len(end)], limit, eol, out) + end
        elif longest_line(text) > limit:
            text = _wrap_hard(text, limit, eol)
            out.lossy = True
            out.notes.append("MIME preamble/epilogue line wrapped (not shown by mail clients)")
        result.append(text)
        if i < len(delims):
            result.append(delims[i])
    return b"".join(result)


def _reencode_leaf(body: bytes, ctype: str, cte: str, eol: bytes, out: Prepared
                   ) -> tuple[bytes, str]:
    """Re-encode one leaf's body so no line is long; return (body, new encoding)."""
    longest = longest_line(body)
    if cte == "base64":
        try:
            content = base64.b64decode(re.sub(rb"[^A-Za-z0-9+/=]", b"", body))
        except (binascii.Error, ValueError):
            content = None
        if content is not None:
            out.notes.append(f"{ctype} part: base64 lines re-wrapped (a line had {longest:,} "
                             "octets)")
            return _b64(content, eol), "base64"
    if cte == "quoted-printable":
        content = binascii.a2b_qp(body)
    elif cte in ("7bit", "8bit", "binary", ""):
        content = body
    else:  # an encoding we cannot decode (x-uuencode...): wrap, and say so
        out.lossy = True
        out.notes.append(f"{ctype} part in {cte} had a {longest:,}-octet line: wrapped")
        return _wrap_hard(body, MAX_LINE, eol), cte
    if ctype.startswith("text/") or ctype == "message/rfc822":
        qp = _qp(content, eol)
        if len(qp) <= len(content) * 4 // 3 + len(content) // 57 * len(eol) + 4:
            out.notes.append(f"{ctype} part re-encoded as quoted-printable (a line had "
                             f"{longest:,} octets)")
            return qp, "quoted-printable"
        # Mostly non-ASCII text: quoted-printable would nearly triple it; base64 is smaller.
    out.notes.append(f"{ctype} part re-encoded as base64 (a line had {longest:,} octets)")
    return _b64(content, eol), "base64"


def _qp(content: bytes, eol: bytes) -> bytes:
    """Quoted-printable with soft breaks; ``eol`` in the content stays a hard break."""
    lines = content.split(eol)
    # istext=False encodes any other CR/LF as =0D/=0A, so the only "\n" b2a_qp writes
    # are its own soft breaks.
    enc = [binascii.b2a_qp(line, quotetabs=False, istext=False, header=False)
           .replace(b"\n", eol) for line in lines]
    return eol.join(enc)


def _b64(content: bytes, eol: bytes) -> bytes:
    return base64.encodebytes(content).replace(b"\n", eol)


def _set_cte(head: bytes, cte: str, eol: bytes) -> bytes:
    """Replace (or add) the Content-Transfer-Encoding field of a header block."""
    lines = [x for x in _LINES.split(head) if x]
    kept: list[bytes] = []
    skipping = False
    for line in lines:
        if skipping and line[:1] in (b" ", b"\t"):
            continue
        skipping = line.lower().startswith(b"content-transfer-encoding:")
        if not skipping:
            kept.append(line)
    text = b"".join(kept)
    if text and not text.endswith(b"\n"):
        text += eol
    return text + b"Content-Transfer-Encoding: " + cte.encode()


def _fix_header(head: bytes, limit: int, eol: bytes, out: Prepared) -> bytes:
    """Fold header lines longer than ``limit`` at white space; wrap where there is none."""
    if longest_line(head) <= limit:
        return head
    parts = [x for x in _LINES.split(head) if x]
    result = []
    for line in parts:
        body = line.rstrip(b"\r\n")
        end = line[len(body):]
        if len(body) <= limit:
            result.append(line)
            continue
        name = body.split(b":", 1)[0][:40].decode("ascii", "replace")
        pieces, wrapped = _fold(body)
        if wrapped:
            out.lossy = True
            out.notes.append(f"{name} header wrapped without white space (value changed)")
        else:
            out.notes.append(f"{name} header folded at white space ({len(body):,} octets)")
        result.append(eol.join(pieces) + end)
    return b"".join(result)


def _fold(line: bytes) -> tuple[list[bytes], bool]:
    """Cut ``line`` into pieces of at most HEADER_FOLD octets, each later one starting
    with the white space it was cut before. Returns (pieces, had to wrap)."""
    pieces = []
    wrapped = False
    while len(line) > HEADER_FOLD:
        cut = max(line.rfind(b" ", 1, HEADER_FOLD), line.rfind(b"\t", 1, HEADER_FOLD))
        if cut <= 0 or not line[:cut].strip():
            cut = HEADER_FOLD
            pieces.append(line[:cut])
            line = b" " + line[cut:]
            wrapped = True
        else:
            pieces.append(line[:cut])
            line = line[cut:]
    pieces.append(line)
    return pieces, wrapped


def _wrap_hard(data: bytes, limit: int, eol: bytes) -> bytes:
    out = []
    for line in (x for x in _LINES.split(data) if x):
        body = line.rstrip(b"\r\n")
        end = line[len(body):]
        out.append(eol.join(body[i : i + limit] for i in range(0, max(len(body), 1), limit))
                   + end)
    return b"".join(out)


# -- folder names and flags: the Graph route's rules, reused ------------------------------
# Imported lazily: the m365 package pulls in MSAL and the HTTP client.
def reserved_names() -> frozenset[str]:
    """Folder names Exchange refuses (``Files``: ``NO Folder name is reserved``)."""
    from mailtrek.stores.m365.folders import RESERVED_NAMES

    return frozenset(n.capitalize() for n in RESERVED_NAMES)


def safe_name(name: str) -> str:
    """Return ``name``, renamed the Graph route's way when Exchange reserves it."""
    from mailtrek.stores.m365.folders import RENAMED_SUFFIX, RESERVED_NAMES

    return name + RENAMED_SUFFIX if name.strip().lower() in RESERVED_NAMES else name


def append_flags(flags: frozenset[str]) -> tuple[frozenset[str], bool]:
    """Split flags for an Exchange APPEND: (flags to send, \\Flagged to STORE after).

    \\Flagged set by APPEND "is forgotten by other protocols" (imapsync FAQ.Office365):
    it is STOREd once the message is in. Mail-system keywords such as ``$MDNSent`` would
    become an Outlook category on every message (same FAQ); they are not sent.
    """
    kept = exchange_flags(flags)
    return kept - {"\\Flagged"}, "\\Flagged" in kept


def dropped_flags() -> frozenset[str]:
    """The mail-system keywords (lower case) Exchange's IMAP is not sent: they would
    become categories. System flags (``\\Seen`` ...) are all kept."""
    from mailtrek.stores.m365.flags import SYSTEM_KEYWORDS

    return frozenset(k for k in SYSTEM_KEYWORDS if not k.startswith("\\"))


def exchange_flags(flags: frozenset[str]) -> frozenset[str]:
    """Return ``flags`` without the mail-system keywords Exchange turns into categories."""
    from mailtrek.stores.m365.flags import SYSTEM_KEYWORDS

    return frozenset(f for f in flags if f.startswith("\\") or f.lower() not in SYSTEM_KEYWORDS)


def size_refusal(text: bytes) -> bool:
    """True for Exchange's ``NO Maximum size of appendable message has been exceeded``."""
    return b"maximum size of appendable message" in text.lower()


def argument_error(text: bytes) -> bool:
    """True for Exchange's catch-all APPEND refusal ``BAD Command Argument Error 11``."""
    return b"command argument error" in text.lower()
