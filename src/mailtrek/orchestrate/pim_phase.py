"""The contacts-and-calendars phase of a batch user's move, run after the mail.

What a user moves is the CSV's ``Items`` for that line, else the batch's ``--items``.
The source's DAV address comes, in this order, from the endpoint's ``dav_url``, its
preset's DAV service (``stores/dav/presets.py``), or the user's e-mail domain (DNS SRV,
then ``/.well-known``: RFC 6764; ``MAILTREK_NAMESERVER`` names the DNS server to ask, as
for ``batch create --discover``); the login is the user's own (UserName and Password
of the CSV), or a token of the endpoint's service account (Google Workspace). A DAV
destination is found the same way from the destination endpoint, logging in as the
EmailAddress. Into Microsoft 365 they go through the Graph PIM store
(a ``GraphPimSpec`` opened by ``stores.registry``) on the tenant's shared app pool, as mail does.

Exactly once like mail: the PIM state is keyed by the user's route, so re-runs copy
nothing and a lost state adopts (``mailtrek.pim.sync``). The counts land in
``batch_users.pim_json`` for ``batch show`` and the dashboard; problems are added to
the mail report's errors, so the user shows them without failing its mail.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select, update

from mailtrek.errors import MailtrekError, UsageError
from mailtrek.orchestrate.endpoints import Endpoint
from mailtrek.orchestrate.home import Home
from mailtrek.orchestrate.presets import PRESETS
from mailtrek.pim.model import Kind
from mailtrek.secrets import redact
from mailtrek.state.orchestration import batch_users
from mailtrek.stores.dav.address import DavAddress
from mailtrek.sync.options import CopyReport

log = logging.getLogger("mailtrek.pim")

KIND_OF: dict[str, Kind] = {"calendars": "calendar", "contacts": "contacts"}
TokenSource = Callable[[], Awaitable[str]]
NAMESERVER_ENV = "MAILTREK_NAMESERVER"  # as `batch create --discover`: the DNS server to ask


def user_items(home: Home, job: Any) -> list[str]:
    """What ``job``'s user moves: the CSV line's Items, else the batch's option."""
    with home.engine.connect() as c:
        text = c.execute(select(batch_users.c["items"]).where(
            batch_users.c.batch == job.batch.name, batch_users.c.email == job.email.lower())
        ).scalar_one_or_none()
    return text.split(",") if text else list(job.batch.options.items)


def pim_kinds(items: list[str]) -> tuple[Kind, ...]:
    """The PIM kinds among ``items`` (calendars → calendar, contacts → contacts)."""
    return tuple(KIND_OF[i] for i in items if i in KIND_OF)


def dav_address(ep: Endpoint, user: str, email: str, kind: Kind) -> DavAddress:
    """Where ``user``'s ``kind`` service is for endpoint ``ep`` (see the module doc)."""
    if ep.dav_url:
        parts = urlsplit(ep.dav_url)
        scheme = parts.scheme
        port = parts.port or (443 if scheme == "https" else 80)
        path = parts.path or "/"
        return DavAddress(scheme, user, parts.hostname or ep.host, port,
                          path if path.endswith("/") else path + "/")
    preset = PRESETS.get(ep.preset or "")
    dav = preset.dav_preset if preset else None
    if dav is not None:
        return dav.address(user, kind, host=ep.host)
    # RFC 6764: the domain of the user's address names the service (SRV, then .well-known).
    return DavAddress("https", user, email.rsplit("@", 1)[-1], 443, "/")


def _groups(ep: Endpoint, user: str, email: str,
            kinds: tuple[Kind, ...]) -> list[tuple[DavAddress, tuple[Kind, ...]]]:
    """Kinds that share one server, each with its address (iCloud keeps two)."""
    out: dict[DavAddress, list[Kind]] = {}
    for k in kinds:
        out.setdefault(dav_address(ep, user, email, k), []).append(k)
    return [(a, tuple(ks)) for a, ks in out.items()]


def _source_token(home: Home, job: Any) -> TokenSource | None:
    """A Bearer token source for a service-account endpoint (Google Workspace), else None."""
    ep = job.source
    if not ep.uses_service_account:
        return None
    from mailtrek.orchestrate.endpoints import service_account_key
    from mailtrek.stores.gmail.auth import ServiceAccountTokens

    preset = PRESETS.get(ep.preset or "")
    dav = preset.dav_preset if preset else None
    scopes = dav.scopes if dav and dav.scopes else ()
    if not scopes:
        raise UsageError(f"endpoint {ep.name} logs in with a service account, but its preset "
                         "names no contacts/calendars scopes")
    return ServiceAccountTokens(service_account_key(home, ep), ca_file=ep.ca_file,
                                scopes=scopes).for_user(job.username)


async def run_pim_phase(home: Home, job: Any, kinds: tuple[Kind, ...], report: CopyReport
                        ) -> dict[str, Any]:
    """Copy ``job``'s contacts/calendars of ``kinds``; record and return the counts.

    Never raises for server or configuration trouble: it becomes an error of ``report``
    (and of the stored counts), so the user's mail result stands.
    """
    counts: dict[str, Any] = {"at": datetime.now(UTC).isoformat(timespec="seconds"),
                              "kinds": list(kinds)}
    try:
        totals = await _copy(home, job, kinds)
        counts |= totals
        if totals["errors"] or totals["failed"]:
            report.errors.append(f"contacts/calendars: {totals['failed']} object(s) not copied"
                                 + "".join(f"; {e}" for e in totals["errors"][:3]))
    except MailtrekError as e:
        text = redact(e.message)
        counts["error"] = text
        report.errors.append(f"contacts/calendars: {text}")
        log.warning("%s/%s: contacts/calendars: %s", job.batch.name, job.email, text)
    record_counts(home, job.batch.name, job.email, counts)
    return counts


async def _copy(home: Home, job: Any, kinds: tuple[Kind, ...]) -> dict[str, Any]:
    from mailtrek.pim.report import COUNTS
    from mailtrek.pim.sync import copy_pim
    from mailtrek.state.pim import PimState
    from mailtrek.stores import registry
    from mailtrek.stores.spec import DavSpec

    token = _source_token(home, job)
    state = PimState(home.engine, f"pim:{job.mailbox}")
    totals: dict[str, Any] = {k: 0 for k in COUNTS} | {"by_kind": {}, "errors": []}
    dst, release = _open_destination(home, job, kinds)
    try:
        await dst.connect()
        for address, group in _groups(job.source, job.username, job.email, kinds):
            src = registry.open_store(DavSpec(
                address=address, password=job.password, ca_file=job.source.ca_file,
                connections=job.source.connections_per_mailbox, kinds=group, token=token,
                nameserver=os.environ.get(NAMESERVER_ENV) or None))
            try:
                await src.connect()
                result = await copy_pim(src, dst, state, group,
                                        concurrency=job.source.connections_per_mailbox)
            finally:
                await src.close()
            for c in result.collections:
                k = totals["by_kind"].setdefault(c.kind, {n: 0 for n in COUNTS} | {"collections": 0})
                k["collections"] += 1
                for n in COUNTS:
                    k[n] += getattr(c, n)
                    totals[n] += getattr(c, n)
            totals["errors"] += [redact(e) for e in result.errors]
    finally:
        await dst.close()
        release()
    return totals


def _open_destination(home: Home, job: Any, kinds: tuple[Kind, ...]) -> tuple[Any, Callable[[], None]]:
    """The unconnected PIM destination of ``job`` and what to call once it is closed.

    Microsoft 365: the Graph PIM store on the tenant's shared app pool (as mail's);
    an IMAP destination endpoint: its DAV server, logging in as the EmailAddress.
    """
    if job.tenant is not None:
        from mailtrek.orchestrate.mover import destination_spec
        from mailtrek.stores import registry
        from mailtrek.stores.spec import GraphPimSpec, GraphSpec

        spec = destination_spec(home, job)
        assert isinstance(spec, GraphSpec)
        pim = GraphPimSpec(mailbox=job.email, tenant=spec.tenant, client=spec.client,
                           label=spec.label)
        return registry.open_pim_store(pim), spec.on_close or (lambda: None)
    if job.dest_endpoint is None:
        raise UsageError("contacts/calendars need a destination endpoint or tenant")
    from mailtrek.stores import registry
    from mailtrek.stores.spec import DavSpec

    ep = job.dest_endpoint
    dests = _groups(ep, job.email, job.email, kinds)
    if len(dests) > 1:
        raise UsageError(f"the destination {ep.name} keeps calendars and contacts on two "
                         "servers; give it one --dav-url")
    return (registry.open_store(DavSpec(address=dests[0][0], password=job.password,
                                        ca_file=ep.ca_file, kinds=kinds,
                                        nameserver=os.environ.get(NAMESERVER_ENV) or None)),
            lambda: None)


async def count_source(home: Home, job: Any, kinds: tuple[Kind, ...]) -> list[dict[str, Any]]:
    """Pre-flight: every source collection of ``kinds`` with its object count (read only:
    PROPFIND of ETags). Raises the stores' errors (login refused, no DAV server found)."""
    from mailtrek.stores import registry
    from mailtrek.stores.spec import DavSpec

    token = _source_token(home, job)
    out: list[dict[str, Any]] = []
    for address, group in _groups(job.source, job.username, job.email, kinds):
        src = registry.open_store(DavSpec(address=address, password=job.password,
                                          ca_file=job.source.ca_file, connections=1,
                                          kinds=group, token=token,
                                          nameserver=os.environ.get(NAMESERVER_ENV) or None))
        try:
            await src.connect()
            for c in await src.collections(group):
                out.append({"kind": c.kind, "name": c.name,
                            "objects": len(await src.list_items(c))})
        finally:
            await src.close()
    return out


def record_counts(home: Home, batch: str, email: str, counts: dict[str, Any]) -> None:
    """Keep the last contacts/calendars run's counts on the user's row."""
    with home.engine.begin() as c:
        c.execute(update(batch_users).where(batch_users.c.batch == batch,
                                            batch_users.c.email == email.lower())
                  .values(pim_json=json.dumps(counts)))


def pim_summary(pim: dict[str, Any] | None) -> str:
    """``12 events, 30 contacts`` (what the destination holds after the last run), or ``-``."""
    if not pim:
        return "-"
    if pim.get("error"):
        return "error"
    by = pim.get("by_kind") or {}
    names = {"calendar": "calendar objects", "contacts": "contacts"}
    parts = [f"{v['copied'] + v['skipped']} {names.get(k, k)}" for k, v in sorted(by.items())]
    failed = sum(v["failed"] for v in by.values())
    return ", ".join(parts or ["0"]) + (f" ({failed} failed)" if failed else "")
