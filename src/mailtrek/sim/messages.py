"""Build stored messages from Graph requests and render them back (no HTTP here).

Rules, each from the page named:
- MIME create (POST .../messages, Content-Type text/plain, base64 body) makes a draft:
  "By default, this operation saves the draft in the Drafts folder"; the example response has
  isDraft true, isRead true, sentDateTime from the MIME, receivedDateTime = time of the call
  (learn.microsoft.com/graph/api/user-post-messages, example "Create a message using MIME").
  Bad base64 gives 400 ErrorMimeContentInvalidBase64String (same page).
- JSON create honours singleValueExtendedProperties set at create time
  (learn.microsoft.com/graph/api/resources/extended-properties-overview): "Integer 0x0E07"
  (PidTagMessageFlags; MSGFLAG_READ 0x1, MSGFLAG_UNSENT 0x8 per MS-OXCMSG) decides isRead and
  isDraft; "SystemTime 0x0E06" (PidTagMessageDeliveryTime) sets receivedDateTime;
  "SystemTime 0x0039" (PidTagClientSubmitTime) sets sentDateTime. Without 0x0E07 the item is
  a draft, as a plain create is.
- importMime (learn.microsoft.com/graph/api/mailfolder-importmime?view=graph-rest-beta): the
  item is not a draft, arrives "as if it was delivered" (unread) and keeps the full MIME.
  The page does not say where receivedDateTime comes from; by default the simulator takes
  the date of the topmost Received header, else the Date header, else now
  (mime.received_instant); ``received_now`` (``--import-mime-received now``) takes the time
  of the import instead, as MIME create does.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
from typing import Any

from mailtrek.sim.errors import GraphError
from mailtrek.sim.mime import iso, now_iso, parse_iso, properties_from_mime, synthesise_mime
from mailtrek.sim.store import StoredMessage, new_id

VERSION_KEY = "_version"  # stored change counter, never rendered
MSGFLAG_READ = 0x1
MSGFLAG_UNSENT = 0x8

# Updatable on any message (learn.microsoft.com/graph/api/message-update); the rest only
# while isDraft is true.
ALWAYS_UPDATABLE = {"isRead", "categories", "flag", "importance", "inferenceClassification",
                    "isDeliveryReceiptRequested", "isReadReceiptRequested"}
DRAFT_UPDATABLE = {"subject", "body", "from", "sender", "toRecipients", "ccRecipients",
                   "bccRecipients", "replyTo", "internetMessageId", "internetMessageHeaders"}
_JSON_CREATE = DRAFT_UPDATABLE | ALWAYS_UPDATABLE | {
    "singleValueExtendedProperties", "multiValueExtendedProperties", "@odata.type",
    "attachments", "receivedDateTime", "sentDateTime", "isDraft"}
_FLAG_STATUSES = {"notFlagged", "flagged", "complete"}
_IMPORTANCE = {"low", "normal", "high"}
_INFERENCE = {"focused", "other"}
_BODY_TYPES = {"text", "html"}
_BOOLEANS = ("isRead", "isReadReceiptRequested", "isDeliveryReceiptRequested", "isDraft")
_MESSAGE_TYPES = {"#microsoft.graph.message", "microsoft.graph.message"}


def decode_mime(text: bytes) -> bytes:
    """Decode a base64 MIME request body or raise 400 ErrorMimeContentInvalidBase64String."""
    try:
        raw = base64.b64decode(b"".join(text.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise GraphError(400, "ErrorMimeContentInvalidBase64String",
                         "Invalid base64 string for MIME content.") from exc
    if not raw.strip():
        raise GraphError(400, "ErrorMimeContentInvalidBase64String",
                         "Invalid base64 string for MIME content.")
    return raw


def _base(mailbox: str, folder_id: str) -> dict[str, Any]:
    now = now_iso()
    return {
        "createdDateTime": now, "lastModifiedDateTime": now, "categories": [],
        "importance": "normal", "flag": {"flagStatus": "notFlagged"},
        "inferenceClassification": "focused", "isReadReceiptRequested": False,
        "isDeliveryReceiptRequested": False, "ccRecipients": [], "bccRecipients": [],
        "replyTo": [], "internetMessageHeaders": [],
    }


def from_mime(mailbox: str, folder_id: str, raw: bytes, *, imported: bool,
              received_now: bool = False) -> StoredMessage:
    """Return the stored form of a MIME create (draft) or importMime (delivered) item."""
    props = _base(mailbox, folder_id)
    parsed, received = properties_from_mime(raw)
    props.update(parsed)
    if imported and received_now:
        props.update(isDraft=False, isRead=False, receivedDateTime=props["createdDateTime"])
    elif imported:
        props.update(isDraft=False, isRead=False,
                     receivedDateTime=iso(received) if received else props["createdDateTime"])
    else:
        props.update(isDraft=True, isRead=True, receivedDateTime=props["createdDateTime"])
    props["size"] = len(raw)
    return StoredMessage(new_id("m"), mailbox, folder_id, raw, imported, props)


def _extended(body: dict[str, Any]) -> dict[str, str]:
    values: dict[str, str] = {}
    for prop in body.get("singleValueExtendedProperties") or []:
        if not isinstance(prop, dict) or "id" not in prop or "value" not in prop:
            raise GraphError(400, "RequestBodyRead",
                             "singleValueExtendedProperties entries need 'id' and 'value'.")
        values[" ".join(str(prop["id"]).split()).lower()] = str(prop["value"])
    return values


def _convert_error(value: object, edm: str) -> GraphError:
    # OData's message for a JSON value of the wrong type (RequestBodyRead), e.g.
    # "Cannot convert the literal 'yes' to the expected type 'Edm.Boolean'."
    return GraphError(400, "RequestBodyRead",
                      f"Cannot convert the literal '{value}' to the expected type '{edm}'.")


def _enum_error(value: object) -> GraphError:
    return GraphError(400, "RequestBodyRead", f"Requested value '{value}' was not found.")


def _check_types(body: dict[str, Any]) -> None:
    """Refuse values whose JSON type or enum member the CSDL does not allow.

    Types per the message resource (learn.microsoft.com/graph/api/resources/message):
    booleans, ``importance`` (low/normal/high), ``inferenceClassification``
    (focused/other), ``flag`` a followupFlag with ``flagStatus`` notFlagged/flagged/complete
    (resources/followupflag), ``body`` an itemBody with ``contentType`` text/html
    (resources/itembody), ``categories`` a string collection. ``@odata.type`` may name the
    type, as Microsoft's SDKs always send it.
    """
    kind = body.get("@odata.type")
    if kind is not None and kind not in _MESSAGE_TYPES:
        raise GraphError(400, "RequestBodyRead",
                         f"A type named '{kind}' could not be resolved by the model.")
    for key in _BOOLEANS:
        if key in body and not isinstance(body[key], bool):
            raise _convert_error(body[key], "Edm.Boolean")
    for key in ("subject",):
        if key in body and body[key] is not None and not isinstance(body[key], str):
            raise _convert_error(body[key], "Edm.String")
    if "importance" in body and body["importance"] not in _IMPORTANCE:
        raise _enum_error(body["importance"])
    if "inferenceClassification" in body and body["inferenceClassification"] not in _INFERENCE:
        raise _enum_error(body["inferenceClassification"])
    flag = body.get("flag")
    if flag is not None:
        if not isinstance(flag, dict):
            raise _convert_error(flag, "microsoft.graph.followupFlag")
        if flag.get("flagStatus", "notFlagged") not in _FLAG_STATUSES:
            raise _enum_error(flag.get("flagStatus"))
    item_body = body.get("body")
    if item_body is not None:
        if not isinstance(item_body, dict):
            raise _convert_error(item_body, "microsoft.graph.itemBody")
        if str(item_body.get("contentType", "text")).lower() not in _BODY_TYPES:
            raise _enum_error(item_body.get("contentType"))
    if "categories" in body and not (isinstance(body["categories"], list)
                                     and all(isinstance(c, str) for c in body["categories"])):
        raise _convert_error(body["categories"], "Collection(Edm.String)")


def _without_odata_type(value: Any) -> Any:
    """Return ``value`` without nested ``@odata.type`` annotations (not stored as data)."""
    if isinstance(value, dict):
        return {k: _without_odata_type(v) for k, v in value.items() if k != "@odata.type"}
    if isinstance(value, list):
        return [_without_odata_type(v) for v in value]
    return value


def _check_common(body: dict[str, Any]) -> None:
    _check_types(body)
    for header in body.get("internetMessageHeaders") or []:
        name = str(header.get("name", "")) if isinstance(header, dict) else ""
        # Graph accepts only custom headers here (research m365.md A1b).
        if not name.lower().startswith("x-"):
            raise GraphError(400, "InvalidInternetMessageHeader",
                             f"The internet message header name '{name}' should start with 'x-' or 'X-'.")


def from_json(mailbox: str, folder_id: str, body: dict[str, Any]) -> StoredMessage:
    """Return the stored form of a JSON create, honouring extended properties."""
    unknown = set(body) - _JSON_CREATE
    if unknown:
        raise GraphError(400, "RequestBodyRead", f"The property '{sorted(unknown)[0]}' does not "
                         "exist on type 'microsoft.graph.message'.")
    _check_common(body)
    props = _base(mailbox, folder_id)
    for key in DRAFT_UPDATABLE | ALWAYS_UPDATABLE:
        if key in body:
            props[key] = _without_odata_type(body[key])
    props.setdefault("subject", "")
    props.setdefault("body", {"contentType": "text", "content": ""})
    props.setdefault("toRecipients", [])
    props.setdefault("from", None)
    props.setdefault("sender", props.get("from"))
    ext = _extended(body)
    try:
        flags = int(ext["integer 0x0e07"], 0) if "integer 0x0e07" in ext else None
        received = parse_iso(ext["systemtime 0x0e06"]) if "systemtime 0x0e06" in ext else None
        sent = parse_iso(ext["systemtime 0x0039"]) if "systemtime 0x0039" in ext else None
    except ValueError as exc:
        raise GraphError(400, "ErrorInvalidExtendedPropertyValue",
                         "The extended property value is invalid.") from exc
    if flags is None:
        props["isDraft"] = True
        props.setdefault("isRead", True)
    else:
        props["isDraft"] = bool(flags & MSGFLAG_UNSENT)
        props.setdefault("isRead", bool(flags & MSGFLAG_READ))
    props["receivedDateTime"] = iso(received) if received else props["createdDateTime"]
    props["sentDateTime"] = iso(sent) if sent else (
        None if props["isDraft"] else props["receivedDateTime"])
    props.setdefault("internetMessageId", f"<{new_id('i')[4:30]}@sim.mailtrek.test>")
    props["hasAttachments"] = False
    props["extendedProperties"] = {k: v for k, v in ext.items()}
    message = StoredMessage(new_id("m"), mailbox, folder_id, None, False, props)
    props["size"] = len(synthesise_mime(props, []))
    return message


def apply_patch(message: StoredMessage, body: dict[str, Any]) -> dict[str, Any]:
    """Return the message's properties after a PATCH; raise 400 for a refused change."""
    _check_common(body)
    props = dict(message.props)
    for key, value in body.items():
        value = _without_odata_type(value)
        if key == "@odata.type":
            continue  # checked by _check_common; Microsoft's SDKs always send it
        if key in ALWAYS_UPDATABLE:
            props[key] = value
        elif key == "singleValueExtendedProperties":
            # Updatable per learn.microsoft.com/graph/api/message-update; PidTagMessageFlags
            # is fixed once the item exists (research m365.md A1, community reports).
            ext = _extended(body)
            if "integer 0x0e07" in ext and not props.get("isDraft"):
                raise GraphError(400, "ErrorInvalidPropertyUpdateSentMessage",
                                 "Update of PidTagMessageFlags is not allowed on a sent message.")
            props["extendedProperties"] = {**(props.get("extendedProperties") or {}), **ext}
        elif key in DRAFT_UPDATABLE:
            if not props.get("isDraft"):
                # EWS/Exchange error name for changing a sent (non-draft) item.
                raise GraphError(400, "ErrorInvalidPropertyUpdateSentMessage",
                                 f"Update of property '{key}' is not allowed on a sent message; "
                                 "it is updatable only if isDraft = true.")
            props[key] = value
        else:
            raise GraphError(400, "RequestBodyRead", f"The property '{key}' does not exist on "
                             "type 'microsoft.graph.message' or is read-only.")
    props["lastModifiedDateTime"] = now_iso()
    props[VERSION_KEY] = int(props.get(VERSION_KEY, 0)) + 1
    return props


def etag_of(message: StoredMessage) -> str:
    """Return the item's ``@odata.etag``; it changes whenever the item does.

    Exchange's etag is the item's change key (``W/"CQAAABYAAAA..."``), which every update
    replaces (learn.microsoft.com/graph/api/resources/message: changeKey, "The version of
    the message"; examples of message-update show a new @odata.etag after a PATCH).
    """
    version = int(message.props.get(VERSION_KEY, 0))
    digest = hashlib.sha256(f"{message.id}:{version}".encode()).digest()[:18]
    return 'W/"CQAAABYAAAA' + base64.b64encode(digest).decode() + '"'


def check_if_match(message: StoredMessage, if_match: str | None) -> None:
    """Raise 412 when an ``If-Match`` header names another version of the item.

    Graph compares If-Match with the item's etag and answers 412 Precondition Failed on a
    mismatch (learn.microsoft.com/graph/api/message-update lists If-Match among the
    optional request headers; Exchange's code for a stale change key is
    ErrorIrresolvableConflict, learn.microsoft.com/exchange/client-developer/web-service-reference/responsecode).
    """
    if not if_match or if_match.strip() == "*":
        return
    wanted = {tag.strip() for tag in if_match.split(",")}
    current = etag_of(message)
    if current not in wanted and current.removeprefix("W/") not in wanted:
        raise GraphError(412, "ErrorIrresolvableConflict",
                         "The send or update operation could not be performed because the change "
                         "key passed in the request does not match the current change key for "
                         "the item.")


def render(message: StoredMessage, version: str) -> dict[str, Any]:
    """Render a stored message as a Graph message resource."""
    props = {k: v for k, v in message.props.items()
             if k not in ("size", "extendedProperties", VERSION_KEY)}
    etag = etag_of(message)
    body: dict[str, Any] = {"@odata.etag": etag, "id": message.id}
    body.update(props)
    body.update(parentFolderId=message.folder_id, changeKey=etag[3:-1],
                conversationId="AAQk" + message.id[4:24], webLink="")
    body.setdefault("bodyPreview", "")
    return body


def size_property(message: StoredMessage) -> dict[str, str]:
    """Return PidTagMessageSize as the extended property Graph exposes (Integer 0x0E08)."""
    return {"id": "Integer 0x0E08", "value": str(message.props.get("size", 0))}


def utc_now() -> dt.datetime:
    """Return now in UTC (for upload-session expiry)."""
    return dt.datetime.now(dt.UTC)
