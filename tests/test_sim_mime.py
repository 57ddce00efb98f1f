"""The simulator's MIME reading and writing survive malformed input."""

from __future__ import annotations

from email import message_from_bytes

from mailtrek.sim.mime import properties_from_mime, synthesise_mime

NASTY = (
    b"From: " + b"(" * 3000 + b"x" + b")" * 3000 + b" <a@example.org>\r\n"
    b"To: =?utf-8?q?Bob=0D=0AInjected?= <bob@example.org>\r\n"
    b"Subject: =?utf-8?q?line=0D=0Abreak?=\r\n"
    b"Date: not a date\r\n"
    b"Received: from a by b; also not a date\r\n"
    b"X-Custom: keep\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"\r\n"
    b"caf\xe9 \xff\xfe invalid utf-8\r\n"
)


def test_malformed_message_still_yields_properties_and_mime() -> None:
    props, received = properties_from_mime(NASTY)
    assert received is None and props["sentDateTime"] is None
    assert "break" in props["subject"]
    assert any(h["name"] == "X-Custom" for h in props["internetMessageHeaders"])
    rendered = synthesise_mime(props, [({"name": "a.bin"}, b"\x00\x01")])
    parsed = message_from_bytes(rendered)
    assert "\n" not in str(parsed["Subject"]).replace("\r\n ", " ")
    assert parsed["X-Custom"] == "keep"
    assert parsed.is_multipart()


def test_received_header_beats_date_and_date_is_fallback() -> None:
    base = b"Date: Mon, 1 Jan 2024 12:00:00 +0000\r\nSubject: s\r\n\r\nb\r\n"
    _, from_date = properties_from_mime(base)
    assert from_date is not None and from_date.isoformat() == "2024-01-01T12:00:00+00:00"
    received = b"Received: from x by y; Tue, 2 Jan 2024 00:00:00 -0500\r\n" + base
    _, from_received = properties_from_mime(received)
    assert from_received is not None and from_received.isoformat() == "2024-01-02T00:00:00-05:00"
