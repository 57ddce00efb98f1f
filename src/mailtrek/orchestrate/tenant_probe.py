"""``mailtrek tenant probe``: a live canary that asks the real tenant what the docs leave open.

In a hidden folder of the mailbox the admin names (``isHidden`` can only be set at create,
learn.microsoft.com/graph/api/mailfolder-post-childfolders), it
1. gets a token (client credentials);
2. imports one tiny marked message with importMime (beta) whose Received and Date headers
   carry a date years back, and reads back isDraft, isRead, receivedDateTime and the MIME
   (``$value``): does importMime keep the header date or stamp the time of the import?
3. creates one through the JSON route with PidTagMessageDeliveryTime and PidTagMessageFlags
   and reads back receivedDateTime and isDraft;
4. with a second mailbox, sends one burst of 3 cheap GETs to each mailbox at once (6 in
   flight: over the documented 4 per app ID, under 4 per mailbox); a 429 means the
   concurrency limit is per app, none means per mailbox. One burst, no retries: the probe
   never hammers the tenant;
5. deletes the folder with everything in it (learn.microsoft.com/graph/api/mailfolder-delete)
   and checks it is gone;
6. stores the findings as the tenant's profile (``state.m365.tenant_profiles``), which
   ``copy`` and batches read to choose the route and the app-wide cap.
"""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from mailtrek.errors import MailtrekError, ThrottledError
from mailtrek.orchestrate.home import Home
from mailtrek.state.m365 import save_profile
from mailtrek.stores.m365 import GraphClient
from mailtrek.stores.m365.api import (
    GraphAccessDeniedError,
    GraphNotFoundError,
    GraphRejectedError,
)
from mailtrek.stores.m365.applimit import AppLimiter
from mailtrek.stores.m365.auth import GRAPH_SCOPE
from mailtrek.stores.m365.dates import kept, parse
from mailtrek.stores.m365.mime_json import DELIVERY_TIME

PROBE_DATE = datetime(2001, 2, 3, 4, 5, 6, tzinfo=UTC)
BURST_PER_MAILBOX = 3


def probe_mime(marker: str) -> bytes:
    """Return the tiny marked test message (dated PROBE_DATE in Received and Date)."""
    stamp = PROBE_DATE.strftime("%a, %d %b %Y %H:%M:%S +0000")
    return (f"Received: from probe.mailtrek.invalid by mx.mailtrek.invalid; {stamp}\r\n"
            f"From: mailtrek probe <probe@mailtrek.invalid>\r\nTo: probe@mailtrek.invalid\r\n"
            f"Subject: mailtrek tenant probe {marker}\r\nDate: {stamp}\r\n"
            f"Message-ID: <{marker}@probe.mailtrek.invalid>\r\nMIME-Version: 1.0\r\n"
            f"Content-Type: text/plain; charset=us-ascii\r\n\r\n"
            f"A test item of mailtrek tenant probe; it deletes it again.\r\n").encode()


class TenantProbe:
    """Run the probe steps against one mailbox (and optionally a second one)."""

    def __init__(self, config: Any, mailbox: str, other: str | None = None) -> None:
        self.config = config
        self.mailbox = mailbox
        self.other = other
        # A ceiling above 4 so that the burst can show where the service draws the line.
        self.client = GraphClient(config, app_limiter=AppLimiter(config.client_id, 16),
                                  max_throttle_retries=0, max_transient_retries=1)
        self.user = f"users/{quote(mailbox, safe='@')}"
        self.marker = f"mailtrek-probe-{uuid.uuid4().hex[:12]}"
        self.findings: dict[str, Any] = {"mailbox": mailbox, "other_mailbox": other}
        self.steps: list[tuple[str, str, str]] = []  # (step, result, detail)

    def _step(self, name: str, result: str, detail: str = "") -> None:
        self.steps.append((name, result, detail))

    async def _json(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
        response = await self.client.request(self.mailbox, method, path, **kw)
        return response.json() if response.content else {}

    async def run(self) -> dict[str, Any]:
        """Run every step; clean up whatever happens. Returns the findings."""
        started = time.monotonic()
        try:
            await self.client.tokens.get_token(GRAPH_SCOPE)
            self._step("token", "ok", f"{time.monotonic() - started:.1f} s")
            folder = await self._json("POST", f"{self.user}/mailFolders/msgfolderroot/childFolders",
                                      json_body={"displayName": self.marker, "isHidden": True})
            self._step("hidden folder", "created", self.marker)
            try:
                await self._import_mime(folder["id"])
                await self._json_create(folder["id"])
                await self._concurrency()
            finally:
                await self._clean_up(folder["id"])
        finally:
            await self.client.close()
        self.findings["probed_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        return self.findings

    async def _import_mime(self, folder_id: str) -> None:
        raw = probe_mime(self.marker)
        try:
            item = await self._json("POST", f"{self.user}/mailFolders/{folder_id}/importMime",
                                    beta=True, content=base64.b64encode(raw),
                                    headers={"Content-Type": "text/plain"})
        except GraphAccessDeniedError:
            self.findings["import_mime"] = "denied"
            self._step("importMime", "denied", "grant Mail-Advanced.ReadWrite.All for exact MIME")
            return
        self.findings["import_mime"] = "allowed"
        received = item.get("receivedDateTime")
        got = parse(received)
        if kept(PROBE_DATE, received):
            how = "headers"
        elif got is not None and abs((got - datetime.now(UTC)).total_seconds()) < 300:
            how = "now"
        else:
            how = "other"
        self.findings["import_mime_received"] = how
        self.findings["import_mime_is_draft"] = item.get("isDraft")
        self.findings["import_mime_is_read"] = item.get("isRead")
        self.findings["import_mime_message_id_kept"] = (
            item.get("internetMessageId") == f"<{self.marker}@probe.mailtrek.invalid>")
        self._step("importMime received date", how, f"sent {PROBE_DATE:%Y-%m-%d}, got {received}")
        mime = await self.client.request(self.mailbox, "GET",
                                         f"{self.user}/messages/{item['id']}/$value")
        self.findings["import_mime_exact"] = mime.content == raw
        self._step("importMime MIME via $value", "exact" if mime.content == raw else "changed",
                   f"isDraft={item.get('isDraft')} isRead={item.get('isRead')}")

    async def _json_create(self, folder_id: str) -> None:
        body = {"subject": f"mailtrek tenant probe {self.marker} (JSON)",
                "body": {"contentType": "text", "content": "A test item of mailtrek."},
                "singleValueExtendedProperties": [
                    {"id": DELIVERY_TIME, "value": PROBE_DATE.strftime("%Y-%m-%dT%H:%M:%SZ")},
                    {"id": "Integer 0x0E07", "value": "1"}]}
        # Whether internetMessageId may be set at create on a non-draft is undocumented
        # (message-update: "updatable only if isDraft = true"): try, and without on a 400.
        wanted = f"<{self.marker}.json@probe.mailtrek.invalid>"
        path = f"{self.user}/mailFolders/{folder_id}/messages"
        try:
            item = await self._json("POST", path, json_body=body | {"internetMessageId": wanted})
            self.findings["json_message_id_kept"] = item.get("internetMessageId") == wanted
        except GraphRejectedError:
            self.findings["json_message_id_kept"] = False
            item = await self._json("POST", path, json_body=body)
        keeps = kept(PROBE_DATE, item.get("receivedDateTime"))
        self.findings["json_keeps_received"] = keeps
        self.findings["json_is_draft"] = item.get("isDraft")
        self._step("JSON create received date", "kept" if keeps else "lost",
                   f"got {item.get('receivedDateTime')}, isDraft={item.get('isDraft')}, "
                   f"internetMessageId {'kept' if self.findings['json_message_id_kept'] else 'not kept'}")

    async def _concurrency(self) -> None:
        if not self.other:
            self._step("concurrency scope", "not measured", "needs --other-mailbox")
            return
        paths = [(m, f"users/{quote(m, safe='@')}/mailFolders/inbox")
                 for m in (self.mailbox, self.other) for _ in range(BURST_PER_MAILBOX)]

        async def one(mailbox: str, path: str) -> str:
            try:
                await self.client.request(mailbox, "GET", path, params={"$select": "id"})
                return "ok"
            except ThrottledError:
                return "429"
        answers = await asyncio.gather(*(one(m, p) for m, p in paths))
        refused = answers.count("429")
        scope = "app" if refused else "mailbox"
        self.findings["concurrency_scope"] = scope
        self.findings["concurrency_burst"] = {"sent": len(answers), "throttled": refused}
        self._step("concurrency scope", scope,
                   f"{len(answers)} at once over 2 mailboxes: {refused} answered 429")

    async def _clean_up(self, folder_id: str) -> None:
        path = f"{self.user}/mailFolders/{folder_id}"
        try:
            await self.client.request(self.mailbox, "DELETE", path)
            try:
                await self.client.request(self.mailbox, "GET", path)
                gone = False
            except GraphNotFoundError:
                gone = True
        except MailtrekError as exc:
            self.findings["cleaned_up"] = False
            self._step("clean up", "FAILED", f"delete folder {self.marker} by hand: {exc}")
            return
        self.findings["cleaned_up"] = gone
        self._step("clean up", "deleted" if gone else "FAILED",
                   f"folder {self.marker} and its items")


async def probe_tenant(home: Home, tenant: Any, mailbox: str, other: str | None) -> dict[str, Any]:
    """Probe ``tenant`` (a stored Tenant) and store its profile; return the findings + steps."""
    from mailtrek.orchestrate.specs import tenant_config

    config = tenant_config(home, tenant)
    probe = TenantProbe(config, mailbox, other)
    findings = await probe.run()
    profile = {k: v for k, v in findings.items()
               if k in ("import_mime", "import_mime_received", "json_keeps_received",
                        "concurrency_scope", "probed_at")}
    stored = save_profile(home.engine, config.tenant_id, profile)
    return {"tenant": tenant.name, "findings": findings, "profile": stored,
            "steps": [{"step": s, "result": r, "detail": d} for s, r, d in probe.steps]}
