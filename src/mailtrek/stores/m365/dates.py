"""Received dates: did Exchange keep the source's INTERNALDATE, and which route keeps it here.

Microsoft does not document where importMime takes ``receivedDateTime`` from
(learn.microsoft.com/graph/api/mailfolder-importmime, beta); MIME create takes the time of
the call (learn.microsoft.com/graph/api/user-post-messages, example 3). The JSON create
sets it from ``SystemTime 0x0E06`` (PidTagMessageDeliveryTime, research m365.md A1b),
which costs exact MIME (the message is re-synthesised) and one request per attachment.

So every create's answer is compared with the source. When importMime stamped the time
of the import, the tenant takes the JSON route from then on (kept here per process, and
in the tenant's stored profile when the caller gives a memory). When it took a header
date that differs from INTERNALDATE the exact MIME is kept and the message listed: the
header date is often the truer one (a server that reset INTERNALDATE in an earlier move).
Every message whose received date differs from INTERNALDATE is listed in the report with
both dates.
"""

from __future__ import annotations

import email
import email.utils
import logging
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

log = logging.getLogger(__name__)

TOLERANCE = timedelta(seconds=2)
IMPORT_MIME_RECEIVED = "import_mime_received"  # profile key: "headers" | "now"

_LOSES_DATES: set[str] = set()  # tenants whose importMime stamps the time of the import


class ProfileMemory(Protocol):
    """Where a tenant's learned facts are kept (``state.m365.ProfileMemory``)."""

    def load(self, tenant_id: str) -> dict[str, Any]: ...

    def remember(self, tenant_id: str, facts: dict[str, Any]) -> None: ...


def parse(value: str | None) -> datetime | None:
    """Return an aware datetime of a Graph timestamp (None when absent or malformed)."""
    if not value:
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def kept(internaldate: datetime | None, received: str | None) -> bool:
    """True when Exchange's ``received`` is the source date (within 2 s) or unknowable."""
    got = parse(received)
    if internaldate is None or got is None:
        return True
    source = internaldate if internaldate.tzinfo else internaldate.replace(tzinfo=UTC)
    return abs(got - source) <= TOLERANCE


def iso(when: datetime | None) -> str | None:
    """Return ``when`` as ISO-8601 UTC (Z), None for None."""
    if when is None:
        return None
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def header_date(raw: bytes) -> datetime | None:
    """Return the date of the topmost Received header, else the Date header (None: none)."""
    head = email.message_from_bytes(raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0] + b"\r\n\r\n")
    candidates = [str(r).rpartition(";")[2] for r in (head.get_all("Received") or [])[:1]]
    candidates.append(str(head.get("Date") or ""))
    for text in candidates:
        try:
            when = email.utils.parsedate_to_datetime(text.strip())
        except (TypeError, ValueError, IndexError):
            continue
        if when is not None:
            return when if when.tzinfo else when.replace(tzinfo=UTC)
    return None


def stamped_now(raw: bytes, received: str | None, sent_at: datetime) -> bool:
    """True when ``received`` is the time of the call although the message carried a date.

    Evidence that the tenant's importMime ignores the message's dates: a message without
    any (or dated within two minutes of the call) proves nothing, so False then.
    """
    got = parse(received)
    carried = header_date(raw)
    if got is None or carried is None:
        return False
    near = timedelta(seconds=120)
    return abs(got - sent_at) <= near and abs(carried - sent_at) > near


def loss_extra(internaldate: datetime | None, received: str | None) -> dict[str, object]:
    """Return the AppendResult extras that list a message whose date was not kept."""
    source, dest = iso(internaldate), iso(parse(received))
    return {"note": f"received date not kept: source {source}, Exchange {dest}",
            "lossy": True, "date_source": source, "date_dest": dest}


def import_mime_loses_dates(tenant_id: str) -> bool:
    """True when importMime was seen (or probed) to lose received dates in this tenant."""
    return tenant_id in _LOSES_DATES


def apply_profile(tenant_id: str, profile: dict[str, Any]) -> None:
    """Take the tenant's stored knowledge (a probe or an earlier copy) into this process."""
    if profile.get(IMPORT_MIME_RECEIVED) == "now":
        _LOSES_DATES.add(tenant_id)


def learn_loss(tenant_id: str, memory: ProfileMemory | None) -> None:
    """Record that importMime lost a date here: the JSON route is used from now on."""
    if tenant_id in _LOSES_DATES:
        return
    _LOSES_DATES.add(tenant_id)
    log.warning("importMime in tenant %s stamps the time of the import as the received date: "
                "using the JSON create with PidTagMessageDeliveryTime from now on (exact MIME "
                "is not kept)", tenant_id)
    if memory is not None:
        try:
            memory.remember(tenant_id, {IMPORT_MIME_RECEIVED: "now"})
        except Exception as exc:  # a lost memo costs one more detection only
            log.warning("Could not store the tenant's profile: %s", type(exc).__name__)


def forget(tenant_id: str) -> None:
    """Drop what this process learned about ``tenant_id`` (tests, a fresh probe)."""
    _LOSES_DATES.discard(tenant_id)
