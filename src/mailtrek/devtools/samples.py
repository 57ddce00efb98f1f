"""Sample mail for tests, demos and benchmarks, generated so the suite stands alone.

* ``tricky_messages()``: a fixed set of odd messages (encodings, structure, line endings).
* ``generate_mailbox(count, seed)``: a realistic mailbox (sizes, folders, flags, dates)
  following research/testinfra.md §4.1; deterministic for a seed, and fast because the
  bulk bytes are slices of one random block.
* ``load_mailbox(...)``: seed a real IMAP server with such messages (a test tool, not the
  product path: imapclient, one APPEND round trip per message).
* ``sample_mailbox()``: the small demo set behind ``mailtrek demo``.
* ``messy_messages()``: real-world mess for ``verify`` and adoption (malformed and raw
  8-bit headers, shared Message-IDs, byte-identical twins with their own flags and dates).
"""

from __future__ import annotations

import base64
import hashlib
import random
import re
import ssl as ssl_module
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from email.header import Header
from email.utils import format_datetime
from functools import lru_cache
from pathlib import Path

from imapclient import IMAPClient

__all__ = [
    "EMPTY_FOLDERS",
    "GENERATED_FOLDERS",
    "SampleMessage",
    "generate_mailbox",
    "load_mailbox",
    "messy_messages",
    "sample_mailbox",
    "tricky_messages",
]

CRLF = b"\r\n"


@dataclass(frozen=True)
class SampleMessage:
    """One message to seed: folder path (segments), exact bytes, flags, INTERNALDATE."""

    folder: tuple[str, ...]
    raw: bytes
    flags: frozenset[str]
    internaldate: datetime


# -- tricky messages ---------------------------------------------------------------------
def _msg(headers: Sequence[str], body: bytes | str = b"", *, eol: bytes = CRLF) -> bytes:
    head = eol.join(h.encode("utf-8") for h in headers)
    data = body.encode("utf-8") if isinstance(body, str) else body
    return head + eol + eol + data


def _lines(text: str) -> bytes:
    return CRLF.join(line.encode("utf-8") for line in text.split("\n"))


def _b64_lines(data: bytes) -> bytes:
    encoded = base64.b64encode(data)
    return CRLF.join(encoded[i : i + 76] for i in range(0, len(encoded), 76)) + CRLF


def _det_bytes(label: str, size: int) -> bytes:
    """Deterministic pseudo-random bytes (SHA-256 in counter mode)."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{label}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])


BASE = [
    "From: Alice Example <alice@example.org>",
    "To: Bob Example <bob@example.net>",
    "Date: Tue, 14 Mar 2023 09:26:53 -0500",
    "MIME-Version: 1.0",
]


def tricky_messages() -> list[tuple[str, bytes]]:
    """Return the odd messages as ``(name, raw bytes)``, always the same bytes.

    ``nul-bytes.eml`` contains NUL: only a BINARY APPEND (``~{n}`` literal) keeps it exact;
    Dovecot 2.3 silently stores a NUL sent in a plain literal as 0x80;
    ``bare-lf.eml`` uses LF line endings (servers usually serve it back with CRLF).
    """
    png = _det_bytes("png", 3000)
    attachment = _det_bytes("attachment", 20_000)
    signature = _det_bytes("pkcs7", 1500)
    messages: list[tuple[str, bytes]] = [
        (
            "rfc2047-subjects.eml",
            _msg(
                [
                    "From: =?UTF-8?Q?J=C3=BCrgen_M=C3=BCller?= <juergen@example.de>",
                    "To: =?ISO-8859-1?Q?Fran=E7ois?= <francois@example.fr>",
                    "Subject: =?UTF-8?B?0J/RgNC40LLQtdGCLCDQvNC40YAh?= =?UTF-8?Q?_und_Gr=C3=BC=C3=9Fe?=",
                    "Date: Mon, 02 Jan 2023 08:00:00 +0100",
                    "Message-ID: <rfc2047.1@mailtrek.test>",
                    "MIME-Version: 1.0",
                    "Content-Type: text/plain; charset=utf-8",
                    "Content-Transfer-Encoding: quoted-printable",
                ],
                _lines("Gr=C3=BC=C3=9Fe aus M=C3=BCnchen.\n"),
            ),
        ),
        (
            "utf8-8bit-headers.eml",
            _msg(
                [
                    "From: Søren Ærø <soren@example.dk>",
                    "To: 山田太郎 <yamada@example.jp>",
                    "Subject: Größenänderung – 日本語の件名 – Привет",
                    "Date: Wed, 15 Feb 2023 17:45:00 +0900",
                    "Message-ID: <utf8.1@mailtrek.test>",
                    "MIME-Version: 1.0",
                    "Content-Type: text/plain; charset=utf-8",
                    "Content-Transfer-Encoding: 8bit",
                ],
                _lines("Ünïcödé body: 日本語テキスト, кириллица, emoji 📬.\n"),
            ),
        ),
        (
            "nested-multipart.eml",
            _msg(
                [
                    *BASE,
                    "Subject: Nested multipart",
                    "Message-ID: <nested.1@mailtrek.test>",
                    'Content-Type: multipart/mixed; boundary="outer"',
                ],
                b"This is a multi-part message in MIME format.\r\n\r\n--outer\r\n"
                b'Content-Type: multipart/alternative; boundary="alt"\r\n\r\n'
                b"--alt\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nPlain part.\r\n"
                b'--alt\r\nContent-Type: multipart/related; boundary="rel"\r\n\r\n'
                b"--rel\r\nContent-Type: text/html; charset=us-ascii\r\n\r\n"
                b'<p>HTML part <img src="cid:logo@x"></p>\r\n'
                b"--rel\r\nContent-Type: image/png\r\nContent-ID: <logo@x>\r\n"
                b"Content-Transfer-Encoding: base64\r\n\r\n"
                + _b64_lines(png)
                + b"--rel--\r\n\r\n--alt--\r\n\r\n--outer\r\n"
                b'Content-Type: text/csv; name="data.csv"\r\n'
                b'Content-Disposition: attachment; filename="data.csv"\r\n\r\n'
                b"a,b\r\n1,2\r\n--outer--\r\n",
            ),
        ),
        (
            "binary-attachment.eml",
            _msg(
                [
                    *BASE,
                    "Subject: Binary attachment",
                    "Message-ID: <binary.1@mailtrek.test>",
                    'Content-Type: multipart/mixed; boundary="b1"',
                ],
                b"--b1\r\nContent-Type: text/plain\r\n\r\nSee attachment.\r\n--b1\r\n"
                b'Content-Type: application/octet-stream; name="blob.bin"\r\n'
                b'Content-Disposition: attachment; filename="blob.bin"\r\n'
                b"Content-Transfer-Encoding: base64\r\n\r\n" + _b64_lines(attachment) + b"--b1--\r\n",
            ),
        ),
        (
            "bare-lf.eml",
            _msg(
                [*BASE, "Subject: Bare LF line endings", "Message-ID: <barelf.1@mailtrek.test>"],
                b"line one\nline two\n",
                eol=b"\n",
            ),
        ),
        (
            "no-message-id.eml",
            _msg([*BASE, "Subject: No message id here"], _lines("Nobody gave me an id.\n")),
        ),
        (
            "duplicate-message-id-a.eml",
            _msg(
                [*BASE, "Subject: Same id, first body", "Message-ID: <dup.1@mailtrek.test>"],
                _lines("First message with this id.\n"),
            ),
        ),
        (
            "duplicate-message-id-b.eml",
            _msg(
                [*BASE, "Subject: Same id, second body", "Message-ID: <dup.1@mailtrek.test>"],
                _lines("Second, different message with the same id.\n"),
            ),
        ),
        (
            "long-line.eml",
            _msg(
                [*BASE, "Subject: A very long line", "Message-ID: <long.1@mailtrek.test>"],
                b"x" * 12_000 + CRLF + b"end" + CRLF,
            ),
        ),
        (
            "header-only.eml",
            CRLF.join(
                h.encode()
                for h in [*BASE, "Subject: Header only", "Message-ID: <hdr.1@mailtrek.test>"]
            )
            + CRLF,
        ),
        (
            "empty-body.eml",
            _msg([*BASE, "Subject: Empty body", "Message-ID: <empty.1@mailtrek.test>"]),
        ),
        (
            "nul-bytes.eml",
            _msg(
                [*BASE, "Subject: Contains NUL", "Message-ID: <nul.1@mailtrek.test>"],
                b"before\x00after" + CRLF,
            ),
        ),
        (
            "smime-signed.eml",
            _msg(
                [
                    *BASE,
                    "Subject: Signed message",
                    "Message-ID: <smime.1@mailtrek.test>",
                    'Content-Type: multipart/signed; protocol="application/pkcs7-signature"; '
                    'micalg=sha-256; boundary="sig"',
                ],
                b"This is an S/MIME signed message\r\n\r\n--sig\r\n"
                b"Content-Type: text/plain; charset=us-ascii\r\n\r\n"
                b"Signed text; any byte change breaks the signature.\r\n--sig\r\n"
                b'Content-Type: application/pkcs7-signature; name="smime.p7s"\r\n'
                b"Content-Transfer-Encoding: base64\r\n"
                b'Content-Disposition: attachment; filename="smime.p7s"\r\n\r\n'
                + _b64_lines(signature)
                + b"--sig--\r\n",
            ),
        ),
    ]
    return messages


# -- generated mailbox --------------------------------------------------------------------
# (path, weight): INBOX and Sent dominate, as in real mailboxes.
_WEIGHTED_FOLDERS: tuple[tuple[tuple[str, ...], int], ...] = (
    (("INBOX",), 40),
    (("INBOX", "Projects", "Alpha"), 4),
    (("Sent",), 15),
    (("Drafts",), 1),
    (("Trash",), 4),
    (("Junk",), 2),
    (("Archive",), 10),
    (("Archive", "2023"), 5),
    (("Projekte", "Übersicht"), 3),
    (("Clients", "Société Générale"), 3),
    (("Почта", "Входящие"), 3),
    (("日本語フォルダ",), 2),
    (("Team & Partners",), 3),
    (("Reports.2024",), 2),
    (("Newsletters",), 2),
    (("Receipts",), 1),
    (("Lists", "python-dev"), 2),
)
EMPTY_FOLDERS: tuple[tuple[str, ...], ...] = (("Empty Folder",), ("Old", "Unused"))
GENERATED_FOLDERS: tuple[tuple[str, ...], ...] = (
    *(path for path, _ in _WEIGHTED_FOLDERS),
    *EMPTY_FOLDERS,
)
# Share of messages carrying each flag (testinfra.md §4.1 counts over 5,000).
_FLAG_SHARE = {
    "\\Answered": 0.102,
    "\\Flagged": 0.051,
    "$Forwarded": 0.030,
    "$MDNSent": 0.010,
    "Important": 0.021,
    "$label1": 0.021,
    "Project_X": 0.026,
}
_ZONES = tuple(timezone(timedelta(minutes=m)) for m in (-480, -300, -240, 0, 60, 120, 330, 540))
_WORDS = ["migration", "mailbox", "server", "folder", "message", "report", "quarterly", "budget", "meeting", "agenda", "project", "alpha", "invoice", "contract", "review", "draft", "schedule", "customer", "partner", "update", "release", "notes", "the", "and", "of", "to", "in", "for", "with", "on", "at", "by", "from", "about", "please", "thanks", "regards", "see", "attached", "below"]
_DUPLICATE_SHARE = 14 / 5000
_NO_ID_SHARE = 19 / 5000
_ENCODED_SUBJECT_SHARE = 0.1


@lru_cache(maxsize=4)
def _random_b64_block(seed: int, size: int = 12 * 1024 * 1024) -> bytes:
    """Base64 text (76-char CRLF lines) of random bytes, shared by every attachment."""
    return _b64_lines(random.Random(seed).randbytes(size))


@lru_cache(maxsize=4)
def _text_block(seed: int, size: int = 600_000) -> bytes:
    rng = random.Random(seed)
    lines: list[bytes] = []
    total = 0
    while total < size:
        line = " ".join(rng.choices(_WORDS, k=rng.randint(6, 12))).encode() + CRLF
        lines.append(line)
        total += len(line)
    return b"".join(lines)


def _slice_lines(block: bytes, rng: random.Random, size: int) -> bytes:
    """Return about ``size`` bytes of whole lines from a random place in ``block``."""
    size = max(1, min(size, len(block) - 1))
    start = block.find(CRLF, rng.randrange(0, len(block) - size)) + 2
    end = block.find(CRLF, min(start + size, len(block) - 2))
    return block[start : end + 2] if end >= 0 else block[start:]


def _target_size(rng: random.Random) -> int:
    roll = rng.random()
    if roll < 0.0075:
        return rng.randint(1_000_000, 10_000_000)
    if roll < 0.0775:
        return int(50_000 * 10 ** rng.uniform(0, 1))
    return int(2_000 * 25 ** rng.betavariate(1.8, 2.0))  # 2–50 KB, median near 9 KB


def _subject(rng: random.Random, n: int) -> str:
    words = " ".join(rng.choices(_WORDS, k=rng.randint(2, 7))).capitalize()
    if rng.random() < _ENCODED_SUBJECT_SHARE:
        text = f"{words} – Übersicht {n}"
        return Header(text, "utf-8").encode()
    return f"{words} #{n}"


def _build(rng: random.Random, seed: int, n: int, folder: tuple[str, ...], size: int,
           date: datetime, with_id: bool) -> bytes:
    headers = [
        f"From: Sender {rng.randint(1, 400)} <sender{rng.randint(1, 400)}@example.org>",
        "To: user <user@example.net>",
        f"Subject: {_subject(rng, n)}",
        f"Date: {format_datetime(date)}",
    ]
    if with_id:
        headers.append(f"Message-ID: <gen.{seed}.{n}.{rng.getrandbits(32):08x}@mailtrek.test>")
    headers.append("MIME-Version: 1.0")
    with_attachment = size > 60_000 or rng.random() < 0.25
    text_size = rng.randint(400, max(400, min(6000, size // 2))) if with_attachment else size - 300
    text = _slice_lines(_text_block(seed), rng, max(200, text_size))
    attach = max(0, size - len(text) - 700) if with_attachment else 0
    if attach == 0:
        headers.append("Content-Type: text/plain; charset=us-ascii")
        return _msg(headers, text)
    data = _slice_lines(_random_b64_block(seed), rng, attach)
    name = f"file{n}.bin"
    inner = (
        b"--b1\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n" + text
        if rng.random() < 0.7
        else b'--b1\r\nContent-Type: multipart/alternative; boundary="b2"\r\n\r\n'
        b"--b2\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n" + text
        + b"--b2\r\nContent-Type: text/html; charset=us-ascii\r\n\r\n<pre>\r\n" + text
        + b"</pre>\r\n--b2--\r\n"
    )
    headers.append('Content-Type: multipart/mixed; boundary="b1"')
    return _msg(
        headers,
        inner
        + b"--b1\r\nContent-Type: application/octet-stream; name=\"" + name.encode() + b'"\r\n'
        + b"Content-Transfer-Encoding: base64\r\n"
        + b'Content-Disposition: attachment; filename="' + name.encode() + b'"\r\n\r\n'
        + data + b"--b1--\r\n",
    )


def _flags(rng: random.Random, folder: tuple[str, ...]) -> frozenset[str]:
    flags = {name for name, share in _FLAG_SHARE.items() if rng.random() < share}
    if folder == ("Drafts",):
        flags = {"\\Draft"} | ({"\\Seen"} if rng.random() < 0.5 else set())
    elif rng.random() < (0.99 if folder == ("Sent",) else 0.70):
        flags.add("\\Seen")
    if folder == ("Junk",) or rng.random() < 0.003:
        flags.add("$Junk")
    return frozenset(flags)


def generate_mailbox(
    count: int, seed: int, *, total_bytes_hint: int | None = None
) -> list[SampleMessage]:
    """Return ``count`` realistic messages; the same arguments give the same bytes.

    Sizes: ~92 % 2–50 KB, ~7 % 50–500 KB, ~0.75 % 1–10 MB (base64 random attachments);
    ``total_bytes_hint`` scales the sizes so the total lands near it. Folders come from
    ``GENERATED_FOLDERS`` (the ``EMPTY_FOLDERS`` get none). INTERNALDATE is 5 s–3 h after
    the Date header, in another zone. Some exact duplicates (same folder) and some
    messages without Message-ID are included. Raises ValueError for a negative count.
    """
    if count < 0:
        raise ValueError("count must be >= 0")
    rng = random.Random(seed)
    sizes = [_target_size(rng) for _ in range(count)]
    if total_bytes_hint and count:
        scale = total_bytes_hint / sum(sizes)
        sizes = [max(600, int(s * scale)) for s in sizes]
    paths = [p for p, _ in _WEIGHTED_FOLDERS]
    weights = [w for _, w in _WEIGHTED_FOLDERS]
    start = datetime(2019, 1, 1, tzinfo=UTC).timestamp()
    span = datetime(2024, 12, 31, tzinfo=UTC).timestamp() - start
    out: list[SampleMessage] = []
    last_in_folder: dict[tuple[str, ...], SampleMessage] = {}
    for n, size in enumerate(sizes):
        folder = rng.choices(paths, weights)[0]
        previous = last_in_folder.get(folder)
        if previous is not None and rng.random() < _DUPLICATE_SHARE:
            out.append(previous)  # an exact duplicate: same bytes, flags and date
            continue
        # Whole seconds: INTERNALDATE has no finer resolution.
        date = datetime.fromtimestamp(int(start + rng.random() * span), tz=rng.choice(_ZONES))
        received = (date + timedelta(seconds=rng.randint(5, 3 * 3600))).astimezone(
            rng.choice(_ZONES)
        )
        raw = _build(rng, seed, n, folder, size, date, rng.random() >= _NO_ID_SHARE)
        msg = SampleMessage(folder, raw, _flags(rng, folder), received)
        last_in_folder[folder] = msg
        out.append(msg)
    return out


def sample_mailbox() -> list[SampleMessage]:
    """Return the demo mailbox: ~60 messages over a few folders, tricky ones included.

    Leaves out ``nul-bytes.eml``, which plain IMAP APPEND cannot carry.
    """
    demo_folders = {("INBOX",), ("Sent",), ("Archive",), ("Projekte", "Übersicht"),
                    ("Team & Partners",), ("INBOX", "Projects", "Alpha")}
    generated = [m for m in generate_mailbox(160, seed=2024, total_bytes_hint=4_000_000)
                 if m.folder in demo_folders][:48]
    base = datetime(2023, 3, 14, 15, 0, tzinfo=UTC)
    tricky = [
        SampleMessage(("Odd Messages",), raw, frozenset({"\\Seen"} if i % 2 else set()),
                      base + timedelta(minutes=i))
        for i, (name, raw) in enumerate(tricky_messages())
        if name != "nul-bytes.eml"
    ]
    return generated + tricky


# -- messy mail ---------------------------------------------------------------------------
# Header lines (raw bytes) that readers decode differently: raw 8-bit in several charsets,
# broken encoded words, junk in the header block.
_MESSY_SUBJECTS: tuple[bytes, ...] = (
    b"Subject: Caf\xe9 \xfcber Gr\xf6\xdfe",  # Latin-1, not UTF-8
    b"Subject: \xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82 raw UTF-8",
    b"Subject: truncated \xe2\x82 sequence \xff\xfe end",
    b"Subject: =?utf-8?q?unterminated_word",
    b"Subject: =?x-unknown-charset?q?Caf=E9?= unknown charset",
    b"Subject: =?UTF-8? Q?space_inside?= =?UTF-8?Q?=C3=BCber?=",
    b"Subject: =?utf-8?b?bad*base64!!?= after",
    b"Subject: glued=?utf-8?q?=C3=A9?=word and =?iso-8859-1?q?=E9t=E9?=",
    b"Subject: =?utf-8?q?split_=C3?= =?utf-8?q?=A9_across_words?=",
    b"Subject: =?windows-1252?q?=93quoted=94_=80uro?=",
    b"Subject: =?UTF-8?B?0JrQu9C40LXQvdGC0Ys=?= \xd0\x9f\xd0\xb0\xd1\x80\xd1\x82",
    b"Subject: long folded\r\n \t subject with =?utf-8?q?=C3=A4?=\r\n  and\xa0more",
)
_MESSY_FROMS: tuple[bytes, ...] = (
    b"From: =?utf-8?q?J=C3=BCrgen?= <juergen@example.de>",
    b"From: J\xfcrgen M\xfcller <jm@example.de>",
    b"From: \"=?UTF-8? Q?broken?=\" <broken@example.org>",
    b"From: undisclosed",
    b"From: <ALL.CAPS@Example.ORG>",
)


def messy_messages(count: int = 120, seed: int = 12) -> list[SampleMessage]:
    """Return messages that defeat naive matching; deterministic for ``seed``.

    In folders ``Messy`` and ``Messy/Twins``: raw 8-bit and malformed headers (see
    ``_MESSY_SUBJECTS``), a junk line inside the header block, messages without
    Message-ID or Date, groups that share a Message-ID (with different bodies), and
    byte-identical twins that differ only in flags and INTERNALDATE.
    """
    rng = random.Random(seed)
    base = datetime(2021, 6, 1, 8, 0, tzinfo=UTC)
    out: list[SampleMessage] = []
    flag_sets = [frozenset(), frozenset({"\\Seen"}), frozenset({"\\Seen", "\\Flagged"}),
                 frozenset({"\\Answered", "\\Seen"}), frozenset({"$Label1"})]
    for n in range(count):
        date = base + timedelta(hours=7 * n, seconds=rng.randint(0, 3599))
        shared = n % 9 == 4  # a group that shares one Message-ID
        mid = (b"<shared.%d@mailtrek.test>" % (n // 27) if shared
               else b"<messy.%d.%d@mailtrek.test>" % (seed, n))
        head = [_MESSY_FROMS[n % len(_MESSY_FROMS)], b"To: user@example.net",
                _MESSY_SUBJECTS[n % len(_MESSY_SUBJECTS)]]
        if n % 13 != 7:
            head.append(b"Date: " + format_datetime(date).encode())
        if n % 11 != 5:
            head.append(b"Message-ID: " + mid)
        if n % 17 == 3:
            head.append(b"this line is junk without a colon")
            head.append(b"X-After-Junk: yes")
        head += [b"MIME-Version: 1.0", b"Content-Type: text/plain; charset=utf-8"]
        body = b"Body %d of the messy set: \xc3\xa4\xc3\xb6\xc3\xbc %s\r\n" % (
            n, rng.randbytes(8).hex().encode())
        raw = CRLF.join(head) + CRLF + CRLF + body
        folder = ("Messy", "Twins") if n % 5 == 0 else ("Messy",)
        received = (date + timedelta(seconds=rng.randint(5, 7200)))
        out.append(SampleMessage(folder, raw, flag_sets[n % len(flag_sets)], received))
        if n % 5 == 0:  # a byte-identical twin with other flags and another date
            twin_flags = flag_sets[(n + 2) % len(flag_sets)]
            out.append(SampleMessage(folder, raw, twin_flags,
                                     received + timedelta(hours=3 + n % 4)))
    return out


# -- loading into a server ----------------------------------------------------------------
def encode_folder(path: tuple[str, ...], separator: str = "/") -> str:
    """Join folder segments with the server's separator (imapclient does the mUTF-7)."""
    return separator.join(path)


_APPENDUID = re.compile(rb"APPENDUID \d+ (\d+)")


def load_mailbox(
    host: str,
    port: int,
    user: str,
    password: str,
    messages: Sequence[SampleMessage],
    *,
    connections: int = 4,
    ssl: bool = False,
    ca_file: Path | str | None = None,
    folders: Iterable[tuple[str, ...]] = (),
) -> list[int]:
    """Create the folders and APPEND every message; return the UIDs in message order.

    Each folder is filled by one connection, so UIDs follow list order within a folder.
    ``folders`` adds folders to create even when empty. TLS is verified (``ca_file`` or
    the system store). Raises imapclient errors on failure; not idempotent.
    """
    context = ssl_module.create_default_context(cafile=str(ca_file) if ca_file else None)

    def connect() -> IMAPClient:
        client = IMAPClient(host, port=port, ssl=ssl, ssl_context=context, timeout=60)
        client.login(user, password)
        return client

    wanted = sorted({*folders, *(m.folder for m in messages)})
    by_folder: dict[tuple[str, ...], list[int]] = {}
    for index, msg in enumerate(messages):
        by_folder.setdefault(msg.folder, []).append(index)
    with connect() as admin:
        separator = admin.namespace().personal[0][1] or "/"
        existing = {name for _flags, _sep, name in admin.list_folders()}
        for path in wanted:
            name = encode_folder(path, separator)
            if name not in existing and path != ("INBOX",):
                admin.create_folder(name)
                existing.add(name)

    uids = [0] * len(messages)
    groups: list[list[int]] = [[] for _ in range(max(1, connections))]
    loads = [0] * len(groups)
    for _path, indexes in sorted(by_folder.items(), key=lambda kv: -len(kv[1])):
        lightest = loads.index(min(loads))
        groups[lightest].extend(indexes)
        loads[lightest] += sum(len(messages[i].raw) for i in indexes)

    def work(indexes: list[int]) -> None:
        if not indexes:
            return
        with connect() as client:
            for i in indexes:
                msg = messages[i]
                flags = sorted(msg.flags - {"\\Recent"})
                reply = client.append(
                    encode_folder(msg.folder, separator), msg.raw, flags, msg.internaldate
                )
                found = _APPENDUID.search(reply if isinstance(reply, bytes) else b"")
                uids[i] = int(found.group(1)) if found else 0

    with ThreadPoolExecutor(max_workers=len(groups)) as pool:
        for future in [pool.submit(work, g) for g in groups]:
            future.result()
    return uids
