"""Turn RFC 5322 bytes into Graph's JSON message create (the non-MIME import route).

Used for messages too big for ``importMime`` (one Graph request is at most 4 MB) and for
tenants without ``Mail-Advanced.ReadWrite.All``. The item is created non-draft through
extended properties at create time (m365.md A1b):

- ``Integer 0x0E07`` PidTagMessageFlags = 1 (read) or 0: no MSGFLAG_UNSENT, so not a draft;
- ``SystemTime 0x0E06`` PidTagMessageDeliveryTime = INTERNALDATE (receivedDateTime);
- ``SystemTime 0x0039`` PidTagClientSubmitTime = the Date header (sentDateTime);
- ``Integer 0x1081`` PidTagLastVerbExecuted = 102 (replied) / 104 (forwarded), when set;
- a named string property holding the source fingerprint, so listings match this item to
  its source although its MIME is re-synthesised.

Only ``x-`` headers survive as internetMessageHeaders (Graph refuses others). Parsing
uses ``email`` with ``policy.default`` and never fails: a message that cannot be parsed
becomes a plain-text item holding its raw text. Attachments are returned separately;
they are added one request (or upload session) at a time after the create.
"""

from __future__ import annotations

import base64
import email
import email.utils
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage, Message
from typing import Any

from mailtrek.fingerprint import fingerprint, parse_header_fields
from mailtrek.stores.m365.flags import flag_fields, last_verb_of

FINGERPRINT_PROPERTY = "String {6d61696c-7472-656b-0000-66696e676572} Name mailtrekFingerprint"
MESSAGE_FLAGS = "Integer 0x0E07"
DELIVERY_TIME = "SystemTime 0x0E06"
SUBMIT_TIME = "SystemTime 0x0039"
LAST_VERB = "Integer 0x1081"
MESSAGE_SIZE = "Integer 0x0E08"

MAX_CUSTOM_HEADERS = 20  # Exchange keeps a small per-item header quota; stay well inside it
MAX_CUSTOM_HEADER_BYTES = 8000
MAX_BODY_CHARS = 2_500_000  # a body bigger than this moves to an attachment (4 MB request)


@dataclass(slots=True)
class AttachmentPart:
    """One attachment to add after the item exists."""

    name: str
    content_type: str
    data: bytes
    content_id: str | None = None
    is_inline: bool = False

    def inline_json(self) -> dict[str, Any]:
        """Return the fileAttachment JSON of a small attachment (one POST)."""
        out: dict[str, Any] = {
            "@odata.type": "#microsoft.graph.fileAttachment",
            "name": self.name,
            "contentType": self.content_type,
            "contentBytes": base64.b64encode(self.data).decode("ascii"),
            "isInline": self.is_inline,
        }
        if self.content_id:
            out["contentId"] = self.content_id
        return out

    def upload_session_json(self) -> dict[str, Any]:
        """Return the createUploadSession body of a large attachment."""
        item: dict[str, Any] = {"attachmentType": "file", "name": self.name,
                                "size": len(self.data), "contentType": self.content_type,
                                "isInline": self.is_inline}
        if self.content_id:
            item["contentId"] = self.content_id
        return {"AttachmentItem": item}


@dataclass(slots=True)
class JsonMessage:
    """A message create payload plus the attachments that follow it."""

    payload: dict[str, Any]
    attachments: list[AttachmentPart] = field(default_factory=list)
    parsed: bool = True  # False: best-effort item from unparsable bytes


def graph_time(when: datetime) -> str:
    """Return ``when`` as Graph's UTC ISO-8601 (naive datetimes count as UTC)."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _header(msg: Message, name: str) -> str | None:
    """Return a decoded header value, or its raw text when the policy cannot parse it."""
    try:
        value = msg.get(name)
    except Exception:  # policy.default parses lazily and may choke on junk
        raw = msg.get_all(name, failobj=[]) if hasattr(msg, "get_all") else []
        value = raw[0] if raw else None
    return None if value is None else str(value).strip()


def _addresses(msg: Message, name: str) -> list[dict[str, Any]]:
    """Return Graph recipients for an address header; tolerant of broken syntax."""
    values: list[str] = []
    for raw in msg.get_all(name, failobj=[]) if hasattr(msg, "get_all") else []:
        try:
            values.append(str(raw))
        except Exception:
            continue
    out = []
    for display, addr in email.utils.getaddresses(values):
        if not addr and not display:
            continue
        entry: dict[str, Any] = {"address": addr or display}
        if display:
            entry["name"] = display
        out.append({"emailAddress": entry})
    return out


def _importance(msg: Message) -> str | None:
    imp = (_header(msg, "Importance") or "").lower()
    if imp in ("high", "low", "normal"):
        return imp
    prio = (_header(msg, "X-Priority") or "").strip()[:1]
    return {"1": "high", "2": "high", "4": "low", "5": "low"}.get(prio)


def _text_of(part: Message) -> str:
    try:
        content = part.get_content()  # type: ignore[attr-defined]
        if isinstance(content, str):
            return content
    except Exception:
        pass
    payload = part.get_payload(decode=True)
    if isinstance(payload, bytes):
        charset = part.get_content_charset() or "utf-8"
        try:
            return payload.decode(charset, "replace")
        except LookupError:
            return payload.decode("utf-8", "replace")
    return str(part.get_payload())


def _bytes_of(part: Message) -> bytes:
    payload = part.get_payload(decode=True)
    if isinstance(payload, bytes):
        return payload
    if part.get_content_type() == "message/rfc822" or part.is_multipart():
        return _as_bytes(part)
    return str(part.get_payload()).encode("utf-8", "replace")


def _as_bytes(part: Message) -> bytes:
    inner = part.get_payload()
    target = inner[0] if isinstance(inner, list) and len(inner) == 1 else part
    try:
        return target.as_bytes()  # type: ignore[union-attr]
    except Exception:
        return str(target).encode("utf-8", "replace")


def _body_and_attachments(msg: EmailMessage) -> tuple[dict[str, str], list[AttachmentPart]]:
    body_part: Message | None = None
    try:
        body_part = msg.get_body(preferencelist=("html", "plain"))
    except Exception:
        body_part = None
    body = ({"contentType": "html" if body_part.get_content_type() == "text/html" else "text",
             "content": _text_of(body_part)} if body_part is not None
            else {"contentType": "text", "content": ""})
    attachments: list[AttachmentPart] = []
    counter = 0

    def walk(part: Message, in_alternative: bool) -> None:
        nonlocal counter
        ctype = part.get_content_type()
        if ctype == "message/rfc822":
            counter += 1
            attachments.append(AttachmentPart(_filename(part, counter, ".eml"), ctype,
                                              _as_bytes(part)))
            return
        if part.is_multipart():
            for child in part.get_payload():  # type: ignore[union-attr]
                assert not isinstance(child, str)
                walk(child, ctype == "multipart/alternative")
            return
        if part is body_part:
            return
        disposition = (part.get_content_disposition() or "").lower()
        is_text = ctype in ("text/plain", "text/html")
        if is_text and in_alternative and disposition != "attachment":
            return  # the other rendering of the body
        if is_text and not part.get_filename() and disposition != "attachment" and \
                not _text_of(part).strip():
            return
        counter += 1
        cid = (part.get("Content-ID") or "").strip().strip("<>") or None
        attachments.append(AttachmentPart(
            name=_filename(part, counter, ""), content_type=ctype, data=_bytes_of(part),
            content_id=cid, is_inline=disposition == "inline" and cid is not None))

    walk(msg, False)
    return body, attachments


def _filename(part: Message, counter: int, ext: str) -> str:
    try:
        name = part.get_filename()
    except Exception:
        name = None
    if name:
        return str(name).replace("/", "_").replace("\\", "_")[:255]
    guess = {"text/plain": ".txt", "text/html": ".html", "message/rfc822": ".eml"}.get(
        part.get_content_type(), ext or ".bin")
    return f"part-{counter}{guess}"


def _custom_headers(msg: Message) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    used = 0
    for name, value in msg.raw_items() if hasattr(msg, "raw_items") else []:
        if not name.lower().startswith("x-"):
            continue
        text = " ".join(str(value).split())
        if not text.isascii() or not name.isascii():
            continue  # Graph takes plain strings; encoded words stay encoded, others skip
        used += len(name) + len(text)
        if len(out) >= MAX_CUSTOM_HEADERS or used > MAX_CUSTOM_HEADER_BYTES:
            break
        out.append({"name": name, "value": text})
    return out


def requests_receipt(raw: bytes) -> bool:
    """True when the message's header asks for a read receipt (Disposition-Notification-To).

    Exchange maps that field to PidTagReadReceiptRequested / isReadReceiptRequested
    (MS-OXCMAIL, "Disposition-Notification-To").
    """
    head = raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    return any(line[:28].lower() == b"disposition-notification-to:"
               for line in head.splitlines())


def build_json_message(raw: bytes, flags: frozenset[str], internaldate: datetime | None,
                       *, with_message_id: bool = True, with_headers: bool = True,
                       keep_read_receipt: bool = False) -> JsonMessage:
    """Return the non-draft JSON create for ``raw`` and the attachments to add after it.

    Never raises: unparsable input becomes a text item with the raw bytes as its body.
    """
    fields = parse_header_fields(raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0])
    received = internaldate or datetime.now(UTC)
    props: list[dict[str, str]] = [
        {"id": MESSAGE_FLAGS, "value": "1" if "\\Seen" in flags else "0"},
        {"id": DELIVERY_TIME, "value": graph_time(received)},
        {"id": FINGERPRINT_PROPERTY, "value": fingerprint(raw)},
    ]
    verb = last_verb_of(flags)
    if verb is not None:
        props.append({"id": LAST_VERB, "value": str(verb)})
    payload: dict[str, Any] = {
        "isReadReceiptRequested": keep_read_receipt and requests_receipt(raw),
        **flag_fields(flags)}
    attachments: list[AttachmentPart] = []
    parsed = True
    try:
        msg = email.message_from_bytes(raw, policy=policy.default)
        assert isinstance(msg, EmailMessage)
        body, attachments = _body_and_attachments(msg)
        payload["subject"] = _header(msg, "Subject") or ""
        for key, header in (("toRecipients", "To"), ("ccRecipients", "Cc"),
                            ("bccRecipients", "Bcc"), ("replyTo", "Reply-To")):
            found = _addresses(msg, header)
            if found:
                payload[key] = found
        for key, header in (("from", "From"), ("sender", "Sender")):
            found = _addresses(msg, header)
            if found:
                payload[key] = found[0]
        if "sender" not in payload and "from" in payload:
            payload["sender"] = payload["from"]
        importance = _importance(msg)
        if importance:
            payload["importance"] = importance
        if with_headers:
            custom = _custom_headers(msg)
            if custom:
                payload["internetMessageHeaders"] = custom
    except Exception:
        parsed = False
        body = {"contentType": "text", "content": raw.decode("utf-8", "replace")}
        payload["subject"] = fields.get("SUBJECT", b"").decode("utf-8", "replace")
        attachments = []
    if len(body["content"]) > MAX_BODY_CHARS:
        # One request may not exceed 4 MB: the body travels as an attachment instead.
        ext = ".html" if body["contentType"] == "html" else ".txt"
        attachments.insert(0, AttachmentPart(f"message-body{ext}",
                                             f"text/{'html' if ext == '.html' else 'plain'}",
                                             body["content"].encode("utf-8")))
        body = {"contentType": "text",
                "content": "The message body is attached (too large for the body field)."}
    payload["body"] = body
    sent = _date_of(fields.get("DATE"))
    if sent is not None:
        props.append({"id": SUBMIT_TIME, "value": graph_time(sent)})
    message_id = fields.get("MESSAGE-ID", b"").decode("utf-8", "replace").strip()
    if with_message_id and message_id:
        payload["internetMessageId"] = message_id
    payload["singleValueExtendedProperties"] = props
    return JsonMessage(payload=payload, attachments=attachments, parsed=parsed)


def _date_of(value: bytes | None) -> datetime | None:
    if not value:
        return None
    try:
        when = email.utils.parsedate_to_datetime(value.decode("ascii", "replace"))
    except (TypeError, ValueError, IndexError):
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)
