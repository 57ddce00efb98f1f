"""The Microsoft 365 destination over Microsoft Graph: lands messages as if delivered.

Append routes (DESIGN.md "Microsoft 365 destination"):
1. ``importMime`` (beta) when the base64 MIME fits one request (4 MB) and the tenant
   granted ``Mail-Advanced.ReadWrite.All``: exact MIME, non-draft; the item arrives unread,
   so isRead/flag/categories are PATCHed afterwards when the flags need it.
2. Otherwise the v1.0 JSON create with extended properties (``mime_json``) plus
   attachments (one POST up to 3 MB, upload sessions in 4 MB chunks above).
A 403 on importMime is remembered per tenant and every later message takes route 2.
So is an importMime that stamps the time of the import as receivedDateTime (``dates``):
that item is deleted and sent again by route 2, which sets PidTagMessageDeliveryTime,
and the tenant's profile remembers it. An item that took a header date other than the
INTERNALDATE keeps its exact MIME (that header date is often the truer one, e.g. after an
earlier migration reset INTERNALDATE). Every message whose received date differs from
INTERNALDATE carries both dates in its AppendResult (listed in the report).
The plain v1.0 MIME create is never used (it makes drafts dated "now").

Exactly once: a create whose answer is lost (InDoubtError) is looked up by
internetMessageId in the target folder before anything is sent again; if the message has
no Message-ID, ``AppendResult(in_doubt=True)`` is returned for the engine to resolve by
fingerprint. Nothing is raised once an item exists, so an engine retry never duplicates.

Fingerprints in listings (``list_messages(fingerprints=True)``), first that applies:
1. the mailtrek fingerprint property written by the JSON route (the source's own
   fingerprint, since re-synthesised MIME has other headers);
2. Message-ID, Date, From, Subject taken from ``internetMessageHeaders`` (the headers of the
   imported MIME), digested like ``fingerprint(raw_header_block)`` of the source bytes;
3. None (items created by other means without those headers).

Every request goes through the GraphClient, paced per mailbox (4 in flight, budgets).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from mailtrek.errors import (
    ConfigError,
    FolderRejectedError,
    MailtrekError,
    ProtocolError,
    TransientError,
)
from mailtrek.fingerprint import (
    FINGERPRINT_FIELDS,
    fingerprint,
    fingerprint_fields,
    message_id_of,
)
from mailtrek.model import FolderInfo, Message, MessageMeta, SpecialUse
from mailtrek.pacer import Pacer
from mailtrek.stores.base import AppendResult, FlagChange, StoreDefaults, StoreFeatures
from mailtrek.stores.m365 import dates
from mailtrek.stores.m365 import flags as flagmap
from mailtrek.stores.m365.api import (
    MAILBOX_ADVICE,
    GraphAccessDeniedError,
    GraphClient,
    GraphConflictError,
    GraphNotFoundError,
    GraphRejectedError,
    InDoubtError,
    MailboxUnavailableError,
)
from mailtrek.stores.m365.config import TenantConfig
from mailtrek.stores.m365.folders import RESERVED_NAMES, WELL_KNOWN, exchange_name, name_key
from mailtrek.stores.m365.mime_json import (
    FINGERPRINT_PROPERTY,
    LAST_VERB,
    MESSAGE_SIZE,
    AttachmentPart,
    build_json_message,
    requests_receipt,
)

log = logging.getLogger(__name__)

MB = 1024 * 1024
MAX_MESSAGE_SIZE_LIMIT = 150 * MB  # Exchange Online's ceiling
_DENIED_IMPORT_MIME: set[str] = set()  # tenants whose app lacks Mail-Advanced.ReadWrite.All
_LIST_SELECT = ("id,isRead,flag,categories,internetMessageId,receivedDateTime,subject")


BATCH_LIMIT = 20  # requests per JSON batch (learn.microsoft.com/graph/json-batching)


@dataclass(frozen=True, slots=True)
class GraphOptions:
    """Tunables of the Graph store; defaults follow Microsoft's documented limits."""

    max_message_size: int = 35 * MB  # tenant default; admins may raise it to 150 MB
    use_import_mime: bool = True
    dest_root: tuple[str, ...] = ()  # put non-special folders under this path
    max_request_bytes: int = 4 * MB - 64 * 1024  # one Graph write, with room for headers
    # "If the file size is under 3 MB, do a single POST"; from 3 MB an upload session, which
    # refuses smaller files (ErrorAttachmentSizeShouldNotBeLessThanMinimumSize)
    # (learn.microsoft.com/graph/outlook-large-attachments). The POST must also fit the
    # 4 MB write limit once base64-encoded (``attachment_body_limit``).
    inline_attachment_limit: int = 3 * MB - 1
    attachment_body_limit: int = 4 * MB  # learn.microsoft.com/graph/use-the-api
    upload_chunk_bytes: int = 12 * 320 * 1024  # 3.75 MB: under 4 MB, multiple of 320 KiB
    page_size: int = 100
    # Exchange turns Disposition-Notification-To into isReadReceiptRequested, and Outlook
    # then sends (or offers) receipts for years-old mail when it is opened (imapsync FAQ,
    # FAQ.Office365). True: clear the request on migrated items, exact MIME kept.
    disarm_read_receipts: bool = True
    # Where learned tenant facts go and come from (state.m365.ProfileMemory); None: only
    # this process remembers them.
    memory: dates.ProfileMemory | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not 0 < self.max_message_size <= MAX_MESSAGE_SIZE_LIMIT:
            raise ConfigError("The Microsoft 365 message size limit must be at most 150 MB")


def _uid_of(item_id: str) -> int:
    """Return a stable positive int for a Graph id (listings need an int ``uid``)."""
    return int.from_bytes(hashlib.sha256(item_id.encode()).digest()[:6], "big")


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _extended(item: dict[str, Any]) -> dict[str, str]:
    return {" ".join(str(p.get("id", "")).split()).lower(): str(p.get("value", ""))
            for p in item.get("singleValueExtendedProperties") or []}


def fingerprint_of_item(item: dict[str, Any]) -> str | None:
    """Return the fingerprint of a listed Graph message (rule in the module doc)."""
    stored = _extended(item).get(FINGERPRINT_PROPERTY.lower())
    if stored:
        return stored
    if "internetMessageHeaders" not in item:
        return None
    fields: dict[str, bytes] = {}
    for header in item.get("internetMessageHeaders") or []:
        name = str(header.get("name", "")).upper()
        if name in FINGERPRINT_FIELDS and name not in fields:
            fields[name] = str(header.get("value", "")).encode("utf-8")
    # A message with none of the fields (a bare body) still has a fingerprint: the
    # source computes the same digest of empty fields.
    return fingerprint_fields(fields)


class GraphStore(StoreDefaults):
    """One Exchange Online mailbox as a DestinationStore (see module doc)."""

    def __init__(self, address: str, tenant: TenantConfig, *, client: GraphClient | None = None,
                 pacer: Pacer | None = None, options: GraphOptions | None = None) -> None:
        self.address = address
        self.tenant = tenant
        self.options = options or GraphOptions()
        self._own_client = client is None
        self.client = client or GraphClient(tenant, pacer=pacer)
        self._user = f"users/{quote(address, safe='@')}"
        self.features = StoreFeatures(
            kind="graph",
            exact_mime=False,  # only importMime keeps bytes; matching must ignore size
            keywords=True,  # as categories
            uids=True,
            max_message_size=self.options.max_message_size,
            case_insensitive_names=True,
            reserved_names=frozenset(n.capitalize() for n in RESERVED_NAMES),
            delimiter="/",
            special_folders=frozenset(WELL_KNOWN),
            dropped_flags=flagmap.GRAPH_DROPPED,
            # Received dates come back rounded to the second; the route promises +-2 s,
            # both ends included. importMime dates an item by its headers.
            date_tolerance_s=math.nextafter(2.0, math.inf),
            dates_from_headers=True,
        )
        self._well_known: dict[str, dict[str, Any]] = {}
        self._children: dict[str, dict[str, dict[str, Any]]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._verb_patch_ok = True
        self.routes = {"importMime": 0, "json": 0, "upload_sessions": 0, "redated": 0}
        self.profile: dict[str, Any] = {}
        self.memory: dates.ProfileMemory | None = None
        self.on_close: Callable[[], None] | None = None  # the owner's hook (app pools)
        if self.options.memory is not None:
            self.use_memory(self.options.memory)

    def use_memory(self, memory: dates.ProfileMemory) -> None:
        """Read the tenant's stored profile (probe, earlier copies) and write what is learned.

        A profile saying the concurrency limit is per mailbox lifts the app-wide cap of a
        client this store owns (a shared client is set up by its owner).
        """
        self.memory = memory
        self.profile = memory.load(self.tenant.tenant_id)
        dates.apply_profile(self.tenant.tenant_id, self.profile)
        if self._own_client:
            apply_scope(self.client, self.profile)

    # -- plumbing ---------------------------------------------------------------------

    async def _call(self, method: str, path: str, **kw: Any) -> Any:
        response = await self.client.request(self.address, method, path, **kw)
        if not response.content:
            return {}
        try:
            return response.json()
        except ValueError as exc:
            raise ProtocolError(f"Graph answered {path} with something that is not JSON") from exc

    def _lock(self, key: str) -> asyncio.Lock:
        return self._locks.setdefault(key, asyncio.Lock())

    @property
    def import_mime_allowed(self) -> bool:
        """True while importMime may be tried for this tenant."""
        return (self.options.use_import_mime and self.tenant.tenant_id not in _DENIED_IMPORT_MIME
                and not dates.import_mime_loses_dates(self.tenant.tenant_id))

    # -- lifecycle and pre-flight -----------------------------------------------------

    async def connect(self) -> None:
        """Get a token and check that the mailbox exists. Raises with advice when not."""
        await self.check_mailbox()

    async def close(self) -> None:
        """Release the HTTP pool (when this store owns it); idempotent."""
        if self._own_client:
            await self.client.close()
        else:
            await self.client.release(self.address)
        done = self.on_close
        if done is not None:
            self.on_close = None
            done()

    async def check_mailbox(self) -> dict[str, Any]:
        """Check that the user exists and has an Exchange Online mailbox; return the user.

        Raises ConfigError (unknown user) or MailboxUnavailableError (no cloud mailbox),
        each with what to do; AuthenticationError when the app cannot sign in.
        """
        user: dict[str, Any] = {}
        try:
            user = await self._call("GET", self._user, params={
                "$select": "id,userPrincipalName,mail,assignedPlans"})
        except GraphNotFoundError as exc:
            raise ConfigError(f"{self.address} is not a user of tenant {self.tenant.tenant_id}",
                              hint="check the address (user principal name or primary SMTP "
                                   "address) and the tenant") from exc
        except GraphAccessDeniedError:
            log.info("No User.Read.All for %s: checking the mailbox only", self.address)
        plans = user.get("assignedPlans") or []
        exchange = [p for p in plans if str(p.get("service", "")).lower() == "exchange"]
        enabled = any(p.get("capabilityStatus") in ("Enabled", "Warning") for p in exchange)
        try:
            inbox = await self._well_known_folder("inbox")
        except (GraphNotFoundError, MailboxUnavailableError) as exc:
            state = ("its Exchange plan is not enabled" if exchange and not enabled
                     else "it has no Exchange Online licence" if not exchange and plans
                     else "Graph does not see a cloud mailbox")
            raise MailboxUnavailableError(f"{self.address} has no usable mailbox: {state}",
                                          hint=MAILBOX_ADVICE) from exc
        user["inbox"] = inbox
        return user

    # -- folders ----------------------------------------------------------------------

    async def _well_known_folder(self, name: str) -> dict[str, Any]:
        if name not in self._well_known:
            self._well_known[name] = await self._call(
                "GET", f"{self._user}/mailFolders/{name}")
        return self._well_known[name]

    async def _children_of(self, parent_id: str, *, refresh: bool = False) -> dict[str, dict]:
        if refresh or parent_id not in self._children:
            kids: dict[str, dict[str, Any]] = {}
            async for item in self.client.pages(
                    self.address, f"{self._user}/mailFolders/{parent_id}/childFolders",
                    params={"$top": "250", "includeHiddenFolders": "true"}):
                kids.setdefault(name_key(item.get("displayName", "")), item)
            self._children[parent_id] = kids
        return self._children[parent_id]

    async def _child(self, parent_id: str, name: str) -> dict[str, Any]:
        """Return the child ``name`` of ``parent_id``, creating it if missing.

        The parent is listed once; siblings are then created side by side (a lock per
        name, not per parent), so a mailbox's folder tree costs a few round trips.
        """
        key = name_key(name)
        async with self._lock(parent_id):
            kids = await self._children_of(parent_id)
        if key in kids:
            return kids[key]
        async with self._lock(f"{parent_id}/{key}"):
            kids = self._children[parent_id]
            if key in kids:
                return kids[key]  # a sibling task made it meanwhile
            try:
                created = await self._call(
                    "POST", f"{self._user}/mailFolders/{parent_id}/childFolders",
                    json_body={"displayName": name, "isHidden": False},
                    idempotent=True)  # a repeat answers 409 and is looked up below
            except GraphConflictError:
                kids = await self._children_of(parent_id, refresh=True)
                if key in kids:
                    return kids[key]
                raise FolderRejectedError(
                    f"Exchange says folder {name!r} exists but it cannot be found "
                    "(a hidden or system folder?)") from None
            except GraphRejectedError as exc:
                raise FolderRejectedError(f"Exchange refused the folder name {name!r}: "
                                          f"{exc.reason}") from exc
            self._children[parent_id][key] = created
            self._children.setdefault(created["id"], {})  # new: no children to list
            return created

    def _info(self, item: dict[str, Any], path: tuple[str, ...],
              special_use: SpecialUse | None = None) -> FolderInfo:
        return FolderInfo(path=path, special_use=special_use, store_id=item["id"],
                          messages=item.get("totalItemCount"))

    async def ensure_folder(self, path: tuple[str, ...],
                            special_use: SpecialUse | None = None) -> FolderInfo:
        """Return the folder for ``path`` (or the well-known one of ``special_use``).

        Creates missing folders under the mailbox root (or ``dest_root``); names are
        matched case-insensitively and renamed by ``folders.exchange_name``. Idempotent.
        Raises FolderRejectedError.
        """
        if not path:
            raise FolderRejectedError("An empty folder path cannot be created")
        if special_use in WELL_KNOWN:
            item = await self._well_known_folder(WELL_KNOWN[special_use])
            label: tuple[str, ...] = (
                ("INBOX",) if special_use is SpecialUse.INBOX else (item["displayName"],))
            return self._info(item, label, special_use)
        names = list(path)
        if names[0].upper() == "INBOX":
            parent = await self._well_known_folder("inbox")
            shown: tuple[str, ...] = ("INBOX",)
            names = names[1:]
            if not names:
                return self._info(parent, shown, SpecialUse.INBOX)
        else:
            parent = await self._well_known_folder("msgfolderroot")
            shown = ()
            for name in self.options.dest_root:
                parent = await self._child(parent["id"], exchange_name(name))
                shown += (parent["displayName"],)
        for name in names:
            parent = await self._child(parent["id"], exchange_name(name))
            shown += (parent["displayName"],)
        return self._info(parent, shown, special_use)

    async def list_folders(self) -> list[FolderInfo]:
        """Return every visible folder, paths of display names, well-known roles marked."""
        roles: dict[str, SpecialUse] = {}
        for use, wk in WELL_KNOWN.items():
            try:
                roles[(await self._well_known_folder(wk))["id"]] = use
            except GraphNotFoundError:
                continue  # e.g. no archive folder yet
        root = await self._well_known_folder("msgfolderroot")
        out: list[FolderInfo] = []

        async def walk(parent_id: str, prefix: tuple[str, ...], path_api: str) -> None:
            async for item in self.client.pages(self.address, path_api,
                                                params={"$top": "250"}):
                use = roles.get(item["id"])
                name = "INBOX" if use is SpecialUse.INBOX else item.get("displayName", "")
                path = (*prefix, name)
                out.append(self._info(item, path, use))
                if item.get("childFolderCount", 1):
                    await walk(item["id"], path,
                               f"{self._user}/mailFolders/{item['id']}/childFolders")

        await walk(root["id"], (), f"{self._user}/mailFolders")
        return out

    async def _folder_id(self, folder: FolderInfo) -> str:
        if folder.store_id:
            return folder.store_id
        return (await self.ensure_folder(folder.path, folder.special_use)).store_id or ""

    # -- listing and lookup -----------------------------------------------------------

    async def list_messages(self, folder: FolderInfo, *, fingerprints: bool = False,
                            changed_since: int | None = None,
                            uids: Sequence[int] | None = None) -> list[MessageMeta]:
        """List the folder's messages: store id, size, flags, received time, fingerprint.

        ``uid`` is a stable hash of the Graph id (Graph has no UIDs); ``changed_since`` is
        ignored (no CONDSTORE); ``uids`` filters on those hashes.
        """
        fid = await self._folder_id(folder)
        wanted = [MESSAGE_SIZE, LAST_VERB, FINGERPRINT_PROPERTY]
        expand = "singleValueExtendedProperties($filter=" + " or ".join(
            f"id eq '{w}'" for w in wanted) + ")"
        select = _LIST_SELECT + (",internetMessageHeaders" if fingerprints else "")
        keep = set(uids) if uids is not None else None
        out: list[MessageMeta] = []
        async for item in self.client.pages(
                self.address, f"{self._user}/mailFolders/{fid}/messages",
                params={"$select": select, "$expand": expand,
                        "$top": str(self.options.page_size)}):
            uid = _uid_of(item["id"])
            if keep is not None and uid not in keep:
                continue
            ext = _extended(item)
            verb = ext.get(LAST_VERB.lower())
            out.append(MessageMeta(
                uid=uid,
                size=int(ext.get(MESSAGE_SIZE.lower(), "0") or 0),
                flags=flagmap.flags_of(item, int(verb) if verb and verb.isdigit() else None),
                internaldate=_parse_time(item.get("receivedDateTime")),
                fingerprint=fingerprint_of_item(item) if fingerprints else None,
                message_id=item.get("internetMessageId"),
                subject=item.get("subject"),
                store_id=item["id"],
            ))
        return out

    async def find_by_message_id(self, folder: FolderInfo, internet_message_id: str) -> list[str]:
        """Return the ids of the folder's items whose internetMessageId is exactly this."""
        fid = await self._folder_id(folder)
        return await self._find(fid, internet_message_id)

    async def _find(self, folder_id: str, internet_message_id: str) -> list[str]:
        literal = internet_message_id.replace("'", "''")  # OData string literal
        return [item["id"] async for item in self.client.pages(
            self.address, f"{self._user}/mailFolders/{folder_id}/messages",
            params={"$filter": f"internetMessageId eq '{literal}'", "$select": "id"})]

    # -- append -----------------------------------------------------------------------

    async def append(self, folder: FolderInfo, message: Message) -> AppendResult:
        """Store ``message`` in ``folder`` exactly once (routes in the module doc).

        Returns AppendResult(error=...) for refused items, in_doubt=True when the answer
        was lost and the item has no Message-ID to look it up by. Raises
        Transient/Throttled/QuotaExceededError before any item was created.
        """
        if message.size > self.options.max_message_size:
            return AppendResult(error=(
                f"message of {message.size / MB:.1f} MB exceeds the mailbox limit of "
                f"{self.options.max_message_size / MB:.0f} MB (raise MaxReceiveSize up to 150 MB)"))
        fid = await self._folder_id(folder)
        mid = message_id_of(message.raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0])
        b64 = base64.b64encode(message.raw)
        note: str | None = None
        if self.import_mime_allowed and len(b64) <= self.options.max_request_bytes:
            try:
                return await self._append_import_mime(fid, message, b64, mid)
            except GraphAccessDeniedError:
                _DENIED_IMPORT_MIME.add(self.tenant.tenant_id)
                log.warning("The app lacks Mail-Advanced.ReadWrite.All (importMime refused) in "
                            "tenant %s: using the JSON route, which does not keep exact MIME",
                            self.tenant.tenant_id)
            except GraphRejectedError as exc:
                note = f"importMime refused ({exc.reason}); sent as JSON"
        result = await self._append_json(fid, message, mid)
        if note:
            result.extra["note"] = note
        return result

    async def _append_import_mime(self, fid: str, message: Message, b64: bytes,
                                  mid: str | None) -> AppendResult:
        for _attempt in range(2):
            sent_at = datetime.now(UTC)
            try:
                item = await self._call(
                    "POST", f"{self._user}/mailFolders/{fid}/importMime", beta=True,
                    content=b64, headers={"Content-Type": "text/plain"})
            except InDoubtError:
                found = await self._resolve(fid, mid, message.raw)
                if found is None and mid is None:
                    return AppendResult(in_doubt=True, extra={"route": "importMime"})
                if found is None:
                    continue  # not there: sending again cannot duplicate
                item = {"id": found}
            if dates.stamped_now(message.raw, item.get("receivedDateTime"), sent_at):
                redone = await self._redate(fid, message, mid, item)
                if redone is not None:
                    return redone
            self.routes["importMime"] += 1
            current = flagmap.flags_of(item) if "isRead" in item else None
            result = AppendResult(dest_id=item["id"], extra={"route": "importMime"})
            # Folded into the flags PATCH when there is one: no request of its own then.
            extra = {}
            if self.options.disarm_read_receipts and item.get(
                    "isReadReceiptRequested", requests_receipt(message.raw)):
                extra["isReadReceiptRequested"] = False
                result.extra["note"] = "read receipt request disarmed"
            if not dates.kept(message.internaldate, item.get("receivedDateTime")):
                lost = dates.loss_extra(message.internaldate, item.get("receivedDateTime"))
                if "note" in result.extra:
                    lost["note"] = f"{result.extra['note']}; {lost['note']}"
                result.extra.update(lost)
            await self._settle_flags(item["id"], message.flags, current, result, extra)
            return result
        # Failed twice and verifiably not there: the JSON route may still take it.
        raise GraphRejectedError("importMime failed repeatedly", status=500,
                                 code="ImportMimeFailed")

    async def _redate(self, fid: str, message: Message, mid: str | None,
                      item: dict[str, Any]) -> AppendResult | None:
        """Replace an importMime item stamped with the time of the import by a JSON create.

        The tenant learns to skip importMime (``dates.learn_loss``). Returns None when the
        item could not be removed (it stays, listed with both dates).
        """
        dates.learn_loss(self.tenant.tenant_id, self.memory)
        if not await self._discard(item["id"]):
            return None
        self.routes["redated"] += 1
        return await self._append_json(fid, message, mid)

    async def _resolve(self, folder_id: str, mid: str | None, raw: bytes) -> str | None:
        """Look up an item whose create answer was lost; None when absent or unknowable.

        Distinct messages may share a Message-ID, so a candidate must also carry the
        source's fingerprint (from its headers or the mailtrek property) when it shows one.
        """
        if mid is None:
            return None
        want = fingerprint(raw)
        literal = mid.replace("'", "''")
        found = None
        async for item in self.client.pages(
                self.address, f"{self._user}/mailFolders/{folder_id}/messages",
                params={"$filter": f"internetMessageId eq '{literal}'",
                        "$select": "id,internetMessageHeaders",
                        "$expand": f"singleValueExtendedProperties($filter=id eq "
                                   f"'{FINGERPRINT_PROPERTY}')"}):
            have = fingerprint_of_item(item)
            if have is None or have == want:
                found = item["id"]
                break
        # "not there" is the common answer on a clean run (the create simply had not been
        # confirmed yet): worth a debug line, not one in every run's log.
        log.log(logging.INFO if found else logging.DEBUG, "Resolved an in-doubt create of %s in %s: %s",
                mid, self.address, "found" if found else "not there")
        return found

    async def _settle_flags(self, item_id: str, flags: frozenset[str],
                            current: frozenset[str] | None, result: AppendResult,
                            extra: dict[str, Any] | None = None) -> None:
        """PATCH flags (and ``extra`` fields) onto a fresh item; failures are noted, never
        raised (the item exists)."""
        try:
            await self._patch_flags(item_id, flags, current, extra)
        except MailtrekError as exc:
            log.warning("Flags of new item in %s not set (%s); the next run re-syncs them",
                        self.address, exc)
            result.extra["flags_error"] = str(exc)

    def _flag_body(self, flags: frozenset[str], current: frozenset[str] | None,
                   extra: dict[str, Any] | None = None) -> tuple[dict[str, Any], bool]:
        """Return (PATCH body, whether it carries the last-verb property); {} = nothing."""
        body = flagmap.patch_for(flags, current) | (extra or {})
        verb = flagmap.last_verb_of(flags)
        if self._verb_patch_ok and flagmap.verb_changed(flags, current) and (
                verb is not None or current is not None):
            return dict(body, singleValueExtendedProperties=[
                {"id": LAST_VERB, "value": str(verb if verb is not None else 0)}]), True
        return body, False

    def _verb_refused(self, reason: str) -> None:
        self._verb_patch_ok = False  # not allowed here: flags still go through
        log.info("Exchange refused PidTagLastVerbExecuted on %s (%s); replied/forwarded "
                 "state is not carried for this mailbox", self.address, reason)

    async def _patch_flags(self, item_id: str, flags: frozenset[str],
                           current: frozenset[str] | None,
                           extra: dict[str, Any] | None = None) -> None:
        body, with_verb = self._flag_body(flags, current, extra)
        if with_verb:
            try:
                await self._call("PATCH", f"{self._user}/messages/{item_id}", json_body=body)
                return
            except GraphRejectedError as exc:
                self._verb_refused(exc.reason)
                body, _ = self._flag_body(flags, current, extra)
        if body:
            await self._call("PATCH", f"{self._user}/messages/{item_id}", json_body=body)

    async def _append_json(self, fid: str, message: Message, mid: str | None) -> AppendResult:
        built = build_json_message(message.raw, message.flags, message.internaldate,
                                   keep_read_receipt=not self.options.disarm_read_receipts)
        item_id: str | None = None
        received: str | None = None  # unknown for an item found after a lost answer
        minimal = False
        for _attempt in range(3):
            try:
                item = await self._call("POST", f"{self._user}/mailFolders/{fid}/messages",
                                        json_body=built.payload)
                item_id = item["id"]
                received = item.get("receivedDateTime")
                break
            except InDoubtError:
                found = await self._resolve(fid, mid if not minimal else None, message.raw)
                if found is not None:
                    item_id = found
                    break
                if mid is None or minimal:
                    return AppendResult(in_doubt=True, extra={"route": "json"})
            except GraphRejectedError as exc:
                if minimal:
                    return AppendResult(error=f"Exchange refused the message: {exc.reason}")
                # Retry without the parts Exchange is pickiest about (id syntax, headers).
                minimal = True
                built = build_json_message(
                    message.raw, message.flags, message.internaldate, with_message_id=False,
                    with_headers=False, keep_read_receipt=not self.options.disarm_read_receipts)
        if item_id is None:
            return AppendResult(in_doubt=True, extra={"route": "json"})
        self.routes["json"] += 1
        try:
            await self._add_attachments(item_id, built.attachments)
        except GraphRejectedError as exc:
            gone = await self._discard(item_id)
            return AppendResult(dest_id=None if gone else item_id,
                                error=f"Exchange refused an attachment: {exc.reason}")
        except MailtrekError:
            if not await self._discard(item_id):
                return AppendResult(dest_id=item_id, error="attachments incomplete and the "
                                    f"partial item {item_id} could not be removed")
            raise
        extra: dict[str, object] = {"route": "json", "attachments": len(built.attachments)}
        if not built.parsed:
            extra["note"] = "unparsable MIME: stored as text"
        elif self.options.disarm_read_receipts and requests_receipt(message.raw):
            extra["note"] = "read receipt request disarmed"  # as on the importMime route
        if not dates.kept(message.internaldate, received):
            lost = dates.loss_extra(message.internaldate, received)
            if "note" in extra:
                lost["note"] = f"{extra['note']}; {lost['note']}"
            extra.update(lost)
        return AppendResult(dest_id=item_id, extra=extra)

    async def _discard(self, item_id: str) -> bool:
        """Delete a half-built item so a retry cannot duplicate it; True when gone."""
        try:
            await self.client.request(self.address, "DELETE", f"{self._user}/messages/{item_id}")
            return True
        except GraphNotFoundError:
            return True
        except MailtrekError as exc:
            log.warning("Could not remove partial item in %s: %s", self.address, exc)
            return False

    async def _add_attachments(self, item_id: str, attachments: list[AttachmentPart]) -> None:
        base = f"{self._user}/messages/{item_id}/attachments"
        for part in attachments:
            inline = part.inline_json()
            if len(part.data) <= self.options.inline_attachment_limit and \
                    len(json.dumps(inline).encode()) <= self.options.attachment_body_limit:
                await self._call("POST", base, json_body=inline)
                continue
            # Also the few bytes just under 3 MB whose base64 no longer fits 4 MB: a tenant
            # that keeps the documented 3 MB session minimum refuses them, and the message
            # is reported as refused (measured tenants accept sessions from 2 MB).
            self.routes["upload_sessions"] += 1
            session = await self._call("POST", f"{base}/createUploadSession",
                                       json_body=part.upload_session_json())
            url = session.get("uploadUrl")
            if not url:
                raise ProtocolError("Graph created an upload session without an uploadUrl")
            size, step = len(part.data), self.options.upload_chunk_bytes
            for start in range(0, size, step):
                chunk = part.data[start:start + step]
                await self.client.request(
                    self.address, "PUT", url, absolute=True, authenticated=False,
                    content=chunk, headers={
                        "Content-Type": "application/octet-stream",
                        "Content-Range": f"bytes {start}-{start + len(chunk) - 1}/{size}"})

    # -- flags ------------------------------------------------------------------------

    async def set_flags(self, folder: FolderInfo, changes: Sequence[FlagChange]) -> None:
        """Make each item carry exactly its flags (isRead, flag, categories, last verb).

        The PATCHes travel in ``$batch`` requests of up to 20 chained with ``dependsOn``:
        Outlook runs such a batch in order on one of the mailbox's four concurrent places
        and counts every inner request against the budget
        (learn.microsoft.com/graph/throttling-limits#outlook-service-limits), so the
        pacer counts a batch as its size; an incremental run with thousands of flag
        changes then needs a twentieth of the round trips. Items that no longer exist
        are skipped with a warning.
        """
        todo = [c for c in changes if self._flag_body(c.flags, c.previous)[0]]
        chunks = [todo[i:i + BATCH_LIMIT] for i in range(0, len(todo), BATCH_LIMIT)]
        await asyncio.gather(*(self._patch_batch(chunk) for chunk in chunks))

    async def _patch_one(self, change: FlagChange) -> None:
        try:
            await self._patch_flags(change.dest_id, change.flags, change.previous)
        except GraphNotFoundError:
            log.warning("Item %s vanished from %s; flags not set", change.dest_id, self.address)

    async def _patch_batch(self, chunk: list[FlagChange]) -> None:
        pending = chunk
        for _attempt in range(8):
            if len(pending) <= 1:
                for change in pending:
                    await self._patch_one(change)
                return
            bodies = [self._flag_body(c.flags, c.previous) for c in pending]
            requests = []
            for i, (change, (body, _verb)) in enumerate(zip(pending, bodies, strict=True)):
                item: dict[str, Any] = {
                    "id": str(i), "method": "PATCH", "url": f"/{self._user}/messages/{change.dest_id}",
                    "headers": {"Content-Type": "application/json"}, "body": body}
                if i:
                    item["dependsOn"] = [str(i - 1)]
                requests.append(item)
            answer = await self._call("POST", "$batch", json_body={"requests": requests},
                                      counts_as=len(requests), idempotent=True)
            by_id = {str(a.get("id")): a for a in answer.get("responses") or []}
            retry: list[FlagChange] = []
            pause = 0.0
            for i, (change, (_body, with_verb)) in enumerate(zip(pending, bodies, strict=True)):
                inner = by_id.get(str(i)) or {}
                status = int(inner.get("status") or 0)
                if 200 <= status < 300:
                    continue
                if status == 404:
                    log.warning("Item %s vanished from %s; flags not set", change.dest_id,
                                self.address)
                elif status == 429:
                    headers = {k.lower(): v for k, v in (inner.get("headers") or {}).items()}
                    pause = max(pause, float(headers.get("retry-after") or 1))
                    retry.append(change)
                elif status in (0, 401, 424) or status >= 500:
                    retry.append(change)  # not run (dependency) or worth another go
                elif with_verb and status == 400 and self._verb_patch_ok:
                    error = (inner.get("body") or {}).get("error") or {}
                    self._verb_refused(str(error.get("message") or status))
                    retry.append(change)
                else:
                    error = (inner.get("body") or {}).get("error") or {}
                    raise GraphRejectedError(str(error.get("message") or "flag update refused"),
                                             status=status, code=str(error.get("code") or ""))
            if pause:
                self.client.app_limiter.throttled()
                self.client.pacer.backoff(self.address, pause)
            pending = retry
        if pending:
            raise TransientError(f"Flag updates in {self.address} kept failing inside $batch")


MAILBOX_SCOPE_CEILING = 64  # app-wide cap when a tenant counts concurrency per mailbox


def apply_scope(client: GraphClient, profile: dict[str, Any]) -> None:
    """Set the client's app-wide cap from a tenant profile's ``concurrency_scope``.

    "mailbox": the pacer's 4 per mailbox are the limit, the app cap only guards against
    runaway parallelism; "app" or unknown: Microsoft's documented 4 per app ID.
    """
    from mailtrek.stores.m365.applimit import APP_CONCURRENCY

    scope = profile.get("concurrency_scope")
    client.app_limiter.set_ceiling(MAILBOX_SCOPE_CEILING if scope == "mailbox" else APP_CONCURRENCY)


def open_graph_store(address: str, tenant: TenantConfig, *, pacer: Pacer | None = None,
                     client: GraphClient | None = None, options: GraphOptions | None = None
                     ) -> GraphStore:
    """Return the Graph destination store for the mailbox ``address`` (not yet connected).

    Share one ``client`` (and so one token cache and pacer) between the stores of a tenant.
    """
    if "@" not in address:
        raise ConfigError(f"Not a mailbox address: {address!r}",
                          hint="use m365://user@domain")
    return GraphStore(address, tenant, client=client, pacer=pacer, options=options)
