"""Read Graph message properties out of MIME, and write MIME for JSON-created messages."""

from __future__ import annotations

import contextlib
import datetime as dt
from email import policy
from email.header import Header, decode_header, make_header
from email.message import EmailMessage, Message
from email.parser import BytesParser
from email.utils import format_datetime, getaddresses, parsedate_to_datetime
from typing import Any

_PARSER = BytesParser(policy=policy.default)
# Header values come from the lenient compat32 parser: broken headers must not stop an import.
_RAW_PARSER = BytesParser(policy=policy.compat32)


def _text(value: object) -> str:
    """Return ``value`` as a string that encodes to UTF-8.

    Raw 8-bit header bytes (surrogate-escaped by the parser) are read as UTF-8, as
    Exchange reads them; what is not UTF-8 becomes U+FFFD.
    """
    return str(value).encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _decoded(value: object) -> str:
    """Return a header value with RFC 2047 words decoded; the raw text if that fails.

    Raw 8-bit bytes (the compat32 parser wraps them in an ``unknown-8bit`` Header) are
    read as UTF-8, the way Exchange reads unlabelled 8-bit headers.
    """
    if isinstance(value, Header):
        out = []
        for chunk, charset in decode_header(value):
            if isinstance(chunk, bytes):
                try:
                    out.append(chunk.decode(
                        "utf-8" if charset in (None, "unknown-8bit") else charset, "replace"))
                except LookupError:
                    out.append(chunk.decode("utf-8", "replace"))
            else:
                out.append(chunk)
        return _text("".join(out))
    if "=?" not in str(value):
        return _text(value)
    try:
        return _text(make_header(decode_header(str(value))))
    except Exception:
        return _text(value)


def iso(moment: dt.datetime) -> str:
    """Format an instant the way Graph does: UTC, seconds, trailing Z."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_iso() -> str:
    """Return the current instant in Graph's format."""
    return iso(dt.datetime.now(dt.UTC))


def parse_iso(value: str) -> dt.datetime:
    """Parse an ISO-8601 instant (``Z`` or offset); naive values are taken as UTC."""
    moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _date(value: object) -> dt.datetime | None:
    """Return the instant of a Date-like header value, None when absent or unreadable.

    The compat32 parser hands raw 8-bit values over as ``Header`` objects (e.g. a Date
    written in EUC-KR by a Korean client), which ``parsedate_to_datetime`` cannot split:
    the value is read as text first, and anything unparsable counts as no date.
    """
    if not value:
        return None
    try:
        moment = parsedate_to_datetime(_decoded(value))
    except (TypeError, ValueError, IndexError, AttributeError):
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _recipients(value: object) -> list[dict[str, Any]]:
    if not value:
        return []
    try:
        pairs = getaddresses([str(value)])
    except Exception:  # e.g. RecursionError on pathological comment nesting
        return []
    return [
        {"emailAddress": {"name": _decoded(name) if name else addr, "address": addr}}
        for name, addr in pairs
        if addr
    ]


def received_instant(msg: Message) -> dt.datetime | None:
    """Return the date of the topmost Received header, else the Date header.

    The topmost Received header is the last hop, i.e. when the source server accepted the
    message, which is what an IMAP INTERNALDATE usually records.
    """
    for received in msg.get_all("Received") or []:  # topmost first
        _, _, stamp = _decoded(received).rpartition(";")
        moment = _date(stamp.strip())
        if moment:
            return moment
        break
    return _date(msg.get("Date"))


def properties_from_mime(raw: bytes) -> tuple[dict[str, Any], dt.datetime | None]:
    """Return (Graph properties, received instant from headers) of a MIME message."""
    msg = _RAW_PARSER.parsebytes(raw, headersonly=True)
    sender = _recipients(msg.get("From"))
    sent = _date(msg.get("Date"))
    content, content_type, has_attachments = "", "text", False
    try:
        full = _PARSER.parsebytes(raw)
        assert isinstance(full, EmailMessage)
        has_attachments = any(part.is_attachment() for part in full.walk())
        body_part = full.get_body(preferencelist=("html", "plain"))
        if body_part is not None:
            content_type = "html" if body_part.get_content_subtype() == "html" else "text"
            content = _text(body_part.get_content())
    except Exception:  # undecodable bodies must not stop an import; headers still count
        content = ""
    message_id = msg.get("Message-ID")
    props: dict[str, Any] = {
        "subject": _decoded(msg.get("Subject", "")),
        "internetMessageId": str(message_id).strip() if message_id else None,
        "from": sender[0] if sender else None,
        "sender": sender[0] if sender else None,
        "toRecipients": _recipients(msg.get("To")),
        "ccRecipients": _recipients(msg.get("Cc")),
        "bccRecipients": _recipients(msg.get("Bcc")),
        "replyTo": _recipients(msg.get("Reply-To")),
        "sentDateTime": iso(sent) if sent else None,
        "hasAttachments": has_attachments,
        # MS-OXCMAIL: Disposition-Notification-To sets PidTagReadReceiptRequested.
        "isReadReceiptRequested": "Disposition-Notification-To" in msg,
        "internetMessageHeaders": [{"name": k, "value": _decoded(v)} for k, v in msg.items()],
        "body": {"contentType": content_type, "content": content},
        "bodyPreview": " ".join(content.split())[:255] if content_type == "text" else "",
    }
    return props, received_instant(msg)


def _address(entry: dict[str, Any] | None) -> str:
    if not entry:
        return ""
    email = entry.get("emailAddress", {})
    name, addr = email.get("name"), email.get("address", "")
    return f"{name} <{addr}>" if name and name != addr else addr


def synthesise_mime(props: dict[str, Any], attachments: list[tuple[dict[str, Any], bytes]]) -> bytes:
    """Build a MIME message from Graph properties, as Exchange does for non-MIME items."""
    msg = EmailMessage(policy=policy.SMTP)

    def put(name: str, value: object) -> None:
        # Folded or decoded values may hold CR/LF, which EmailMessage refuses; a header that
        # still cannot be written is left out rather than failing the whole rendering.
        with contextlib.suppress(ValueError, TypeError):
            msg[name] = " ".join(_text(value).split())
            try:
                policy.SMTP.fold(name, msg[name])
            except (ValueError, UnicodeError):
                del msg[name]

    if props.get("from"):
        put("From", _address(props["from"]))
    for header, key in (("To", "toRecipients"), ("Cc", "ccRecipients")):
        if props.get(key):
            put(header, ", ".join(_address(r) for r in props[key]))
    put("Subject", props.get("subject") or "")
    stamp = props.get("sentDateTime") or props.get("receivedDateTime")
    if stamp:
        put("Date", format_datetime(parse_iso(stamp)))
    if props.get("internetMessageId"):
        put("Message-ID", props["internetMessageId"])
    for header in props.get("internetMessageHeaders") or []:
        # Only custom headers: the standard ones above come from the properties.
        if str(header.get("name", "")).lower().startswith("x-"):
            put(str(header["name"]), header.get("value", ""))
    body = props.get("body") or {}
    subtype = "html" if str(body.get("contentType", "text")).lower() == "html" else "plain"
    msg.set_content(str(body.get("content") or ""), subtype=subtype)
    for meta, content in attachments:
        ctype = meta.get("contentType") or "application/octet-stream"
        maintype, _, subtype = ctype.partition("/")
        msg.add_attachment(content, maintype=maintype, subtype=subtype or "octet-stream",
                           filename=meta.get("name") or "attachment")
    return msg.as_bytes()
