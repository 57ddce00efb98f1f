"""Pre-flight of a batch: can every user start, how much is there, what will not arrive?

Per user: a source login, messages and bytes per folder (STATUS counts, sizes from one
UID FETCH of RFC822.SIZE per folder), the items that will be skipped or are at risk and
why, the destination mailbox (Graph ``check_mailbox``: existence and Exchange licence; or
an IMAP login), and an ETA. Read only on both sides: EXAMINE and BODY.PEEK on the source,
GETs on Graph.

Checks, and how they are made:
- **size**: a message over the batch's ``max_size`` (35 MB by default) is skipped.
- **folder names**: Exchange reserves ``Files`` (any case) and treats ``/`` as the hierarchy
  separator; the Graph store copies such folders under a changed name (``Files (migrated)``),
  which is reported so nobody looks for the old name.
- **long lines** (Exchange IMAP destinations only; Graph takes them): Exchange rejects, over
  IMAP, a message holding a line longer than about 10,000 characters (imapsync's Office 365
  preset wraps at 10,239); mailtrek re-encodes such a message losslessly on the way, and the
  finding says so. A message no bigger than
  ``LONG_LINE`` bytes cannot hold such a line, so only larger ones are fetched (BODY.PEEK)
  and scanned, up to ``scan_budget`` bytes per user; messages beyond the budget are counted
  as not checked. Headers and body are scanned alike.
- **Message-ID**: a message without one cannot be matched by Message-ID on the destination,
  so re-runs by other tools (and Exchange's own duplicate detection) cannot recognise it;
  mailtrek still copies it and matches it by its fingerprint.
- **ETA**: from the rate earlier runs of the same route reached, in messages and in bytes
  (:mod:`mailtrek.orchestrate.rates`; before any run, an assumed message rate), the byte
  rate capped by the slowest of: the download rate measured while fetching the scanned
  messages (at least ``SAMPLE_BYTES`` are fetched), the destination's upload limit (Graph:
  150 MB per 5 minutes per mailbox), and the source provider's daily download quota. The
  report says what the estimate rests on (``eta_basis``).
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from sqlalchemy import select

from mailtrek.errors import MailtrekError
from mailtrek.model import FolderInfo, MessageMeta
from mailtrek.orchestrate.batches import Batch, BatchOptions, get_batch
from mailtrek.orchestrate.csvfile import UserRow
from mailtrek.orchestrate.csvsafe import render_rows
from mailtrek.orchestrate.endpoints import Endpoint, Tenant, get_endpoint, get_tenant
from mailtrek.orchestrate.home import Home
from mailtrek.orchestrate.pim_phase import pim_kinds
from mailtrek.orchestrate.presets import PRESETS
from mailtrek.orchestrate.states import BatchStatus
from mailtrek.secrets import redact, remember
from mailtrek.state.orchestration import batch_users
from mailtrek.stores.m365.folders import RESERVED_NAMES, exchange_name
from mailtrek.stores.registry import open_store
from mailtrek.stores.spec import GraphSpec
from mailtrek.sync.filters import folder_selected
from mailtrek.sync.options import DEFAULT_MAX_SIZE

LONG_LINE = 10_000  # characters; Exchange's IMAP APPEND refuses longer lines
SCAN_BUDGET = 64 * 1024 * 1024  # bytes fetched per user to look for long lines
SAMPLE_BYTES = 1024 * 1024  # fetch at least this much to measure the download rate
GRAPH_UPLOAD_RATE = 150 * 1024 * 1024 / 300  # bytes/s: 150 MB per 5 minutes per mailbox
EXCHANGE_HOSTS = ("outlook.office365.com", "outlook.office.com")
FINDING_COLUMNS = ("line", "email", "kind", "folder", "uid", "size", "reason")


@dataclass(slots=True)
class FolderEstimate:
    folder: str
    messages: int  # from STATUS
    bytes: int  # sum of RFC822.SIZE
    selected: bool = True  # False: left out by the batch's folder filters


@dataclass(slots=True)
class Finding:
    """One thing about a user worth knowing before the move; ``blocking`` stops the user."""

    kind: str  # login | destination | folder | skip | long-line | no-message-id | unchecked
    reason: str
    folder: str | None = None
    uid: int | None = None
    size: int | None = None
    blocking: bool = False


@dataclass(slots=True)
class UserPreflight:
    line: int
    email: str
    username: str
    login_ok: bool = False
    destination_ok: bool | None = None  # None: not checked
    destination: str = ""
    folders: list[FolderEstimate] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    messages: int = 0
    bytes: int = 0
    sampled_bytes: int = 0
    sampled_seconds: float = 0.0
    eta_seconds: float | None = None
    # contacts/calendars (users whose move carries them): each collection and its objects
    pim: list[dict[str, Any]] = field(default_factory=list)
    pim_objects: int | None = None  # None: not asked for, or not countable

    @property
    def can_start(self) -> bool:
        return self.login_ok and self.destination_ok is not False

    @property
    def skipped(self) -> int:
        return sum(1 for f in self.findings if f.kind == "skip")


@dataclass(slots=True)
class PreflightReport:
    users: list[UserPreflight]
    rate_limits: dict[str, float | None] = field(default_factory=dict)  # bytes/s
    eta_seconds: float | None = None
    eta_basis: str = ""  # what the estimate rests on ("from 3 earlier runs on this route ...")

    @property
    def ok(self) -> bool:
        return all(u.can_start for u in self.users)

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "eta_seconds": self.eta_seconds, "eta_basis": self.eta_basis,
                "rate_limits": self.rate_limits,
                "users": [asdict(u) | {"can_start": u.can_start} for u in self.users]}


# -- per-message checks ------------------------------------------------------------------
def longest_line(raw: bytes) -> int:
    """Return the length of the longest line of ``raw`` (CR and LF not counted)."""
    return max((len(x.rstrip(b"\r")) for x in raw.split(b"\n")), default=0)


def folder_findings(path: tuple[str, ...], exchange: bool) -> list[Finding]:
    """Return what Exchange will do with a folder's name (nothing for other destinations)."""
    if not exchange:
        return []
    out = []
    for name in path:
        if name.lower() in RESERVED_NAMES:
            out.append(Finding("folder", f"'{name}' is a reserved folder name in Exchange Online: "
                                         f"copied as '{exchange_name(name)}'", "/".join(path)))
        elif "/" in name:
            out.append(Finding("folder", f"'/' is not allowed in an Exchange folder name: "
                                         f"'{name}' copied as '{exchange_name(name)}'", "/".join(path)))
    return out


def message_findings(folder: str, metas: list[MessageMeta], max_size: int | None) -> list[Finding]:
    """Return size and Message-ID findings of one folder's messages."""
    out = []
    for m in metas:
        if max_size is not None and m.size > max_size:
            out.append(Finding("skip", f"larger than the {max_size / 1048576:.0f} MB limit "
                                       f"({m.size / 1048576:.1f} MB): skipped", folder, m.uid, m.size))
        elif not m.message_id:
            out.append(Finding("no-message-id", "no Message-ID header: copied, but other tools cannot "
                                                "recognise it on the destination", folder, m.uid, m.size))
    return out


# -- one user ----------------------------------------------------------------------------
def _is_exchange(tenant: Tenant | None, dest: Endpoint | None) -> bool:
    """True when the destination is Exchange Online, by Graph or by IMAP (its folder rules apply)."""
    return tenant is not None or _is_exchange_imap(dest)


def _is_exchange_imap(dest: Endpoint | None) -> bool:
    """True for Exchange Online's IMAP service, whose APPEND refuses long lines (Graph does not)."""
    return dest is not None and dest.host.lower() in EXCHANGE_HOSTS


async def _check_source(u: UserPreflight, home: Home, job: Any, options: BatchOptions,
                        exchange: bool, scan_budget: int, long_lines: bool = False) -> None:
    from mailtrek.orchestrate.mover import source_spec

    store = open_store(replace(source_spec(job, home), connections=1, label=f"preflight:{u.email}"))
    try:
        try:
            await store.connect()
        except MailtrekError as e:
            u.findings.append(Finding("login", f"source login as {u.username} failed: {redact(e.message)}",
                                      blocking=True))
            return
        u.login_ok = True
        max_size = options.max_size if options.max_size is not None else DEFAULT_MAX_SIZE
        to_scan: list[tuple[FolderInfo, MessageMeta]] = []
        small: list[tuple[FolderInfo, MessageMeta]] = []
        for f in await store.list_folders():
            if not f.selectable:
                continue
            selected = folder_selected(f, [], options.exclude)
            metas = await store.list_messages(f, fingerprints=True) if selected else []
            est = FolderEstimate(f.display, f.messages or 0, sum(m.size for m in metas), selected)
            u.folders.append(est)
            if not selected:
                continue
            u.messages += len(metas)
            u.bytes += est.bytes
            u.findings += folder_findings(f.path, exchange)
            u.findings += message_findings(f.display, metas, max_size)
            for m in metas:
                if m.size > max_size:
                    continue
                (to_scan if long_lines and m.size > LONG_LINE else small).append((f, m))
        await _scan(u, store, to_scan, small, scan_budget)
    finally:
        await store.close()


async def _scan(u: UserPreflight, store: Any, to_scan: list[tuple[FolderInfo, MessageMeta]],
                small: list[tuple[FolderInfo, MessageMeta]], budget: int) -> None:
    """Fetch the long-line suspects (within budget) and a sample; time the download."""
    chosen, unchecked, used = [], 0, 0
    for f, m in to_scan:
        if used + m.size > budget:
            unchecked += 1
            continue
        chosen.append((f, m))
        used += m.size
    for f, m in small:  # top up the sample so the rate is measured on real bytes
        if used >= SAMPLE_BYTES:
            break
        chosen.append((f, m))
        used += m.size
    suspects = {(f.path, m.uid) for f, m in to_scan}
    by_folder: dict[tuple[str, ...], tuple[FolderInfo, list[int]]] = {}
    for f, m in chosen:
        by_folder.setdefault(f.path, (f, []))[1].append(m.uid)
    t0 = time.monotonic()
    for f, uids in by_folder.values():
        async for msg in store.fetch(f, uids):
            u.sampled_bytes += len(msg.raw)
            n = longest_line(msg.raw)
            if (f.path, msg.uid) in suspects and n > LONG_LINE:
                u.findings.append(Finding("long-line", f"a line of {n:,} characters (Exchange IMAP refuses "
                                                       f"lines over about {LONG_LINE:,}): re-encoded on the way, "
                                                       "content unchanged", f.display, msg.uid, len(msg.raw)))
    u.sampled_seconds = time.monotonic() - t0
    if unchecked:
        u.findings.append(Finding("unchecked", f"{unchecked} message(s) over {LONG_LINE:,} bytes not scanned "
                                               f"for long lines (scan budget {budget // 1048576} MB)"))


async def _count_pim(u: UserPreflight, home: Home, job: Any, kinds: tuple[Any, ...]) -> None:
    """Count the user's source events/contacts per collection; trouble is a finding."""
    from mailtrek.orchestrate.pim_phase import count_source

    try:
        u.pim = await count_source(home, job, kinds)
    except MailtrekError as e:
        u.findings.append(Finding("pim", f"contacts/calendars not countable: {redact(e.message)}"))
        return
    u.pim_objects = sum(c["objects"] for c in u.pim)


async def _check_destination(u: UserPreflight, home: Home, job: Any, graph_client: Any) -> None:
    if job.tenant is not None:
        store = open_store(GraphSpec(mailbox=u.email, tenant=graph_client.tenant, client=graph_client))
        try:
            user = await store.check_mailbox()
        except MailtrekError as e:
            u.destination_ok, u.destination = False, redact(e.message)
            u.findings.append(Finding("destination", u.destination, blocking=True))
            return
        finally:
            await store.close()
        plans = [p for p in user.get("assignedPlans") or [] if str(p.get("service", "")).lower() == "exchange"]
        licence = ("Exchange Online licence enabled" if any(p.get("capabilityStatus") == "Enabled" for p in plans)
                   else "licence not readable (no User.Read.All)" if not user.get("assignedPlans")
                   else "Exchange plan present")
        u.destination_ok, u.destination = True, f"mailbox found; {licence}"
        return
    if job.dest_endpoint is not None:
        from mailtrek.orchestrate.mover import imap_destination_spec

        imap = open_store(replace(imap_destination_spec(home, job), connections=1,
                                  label=f"preflight-dest:{u.email}"))
        try:
            await imap.connect()
            u.destination_ok, u.destination = True, f"IMAP login on {job.dest_endpoint.host} works"
        except MailtrekError as e:
            u.destination_ok, u.destination = False, redact(e.message)
            u.findings.append(Finding("destination", f"destination login failed: {u.destination}", blocking=True))
        finally:
            await imap.close()


# -- the batch -----------------------------------------------------------------------------
async def preflight_users(
    home: Home,
    users: list[UserRow],
    *,
    source: Endpoint,
    tenant: Tenant | None = None,
    dest_endpoint: Endpoint | None = None,
    options: BatchOptions | None = None,
    concurrency: int = 4,
    scan_budget: int = SCAN_BUDGET,
) -> PreflightReport:
    """Check every user of a (planned) batch; never writes to either side.

    Server trouble becomes a finding on the user's line; only bugs raise.
    """
    from mailtrek.orchestrate.mover import MoveJob

    options = options or BatchOptions()
    batch = Batch(name="(pre-flight)", status=BatchStatus.CREATED, source_endpoint=source.name,
                  tenant=tenant.name if tenant else None, dest_endpoint=dest_endpoint.name if dest_endpoint else None,
                  options=options, notify=[], incremental_hours=24.0)
    exchange = _is_exchange(tenant, dest_endpoint)
    graph_client = None
    if tenant is not None:
        from mailtrek.orchestrate.specs import tenant_client

        graph_client = tenant_client(home, tenant)
    gate = asyncio.Semaphore(max(1, concurrency))

    async def one(row: UserRow) -> UserPreflight:
        remember(row.password)
        u = UserPreflight(row.line, row.email, row.username)
        job = MoveJob(batch=batch, email=row.email, username=row.username, password=row.password,
                      user_root=row.user_root, phase="initial", source=source, tenant=tenant,
                      dest_endpoint=dest_endpoint)
        items = list(row.items) if row.items is not None else list(options.items)
        async with gate:
            checks = [_check_destination(u, home, job, graph_client)]
            if "mail" in items:
                checks.append(_check_source(u, home, job, options, exchange, scan_budget,
                                            _is_exchange_imap(dest_endpoint)))
            else:
                u.login_ok = True  # no mail to move: the mail login is not needed
            kinds = pim_kinds(items)
            if kinds:
                checks.append(_count_pim(u, home, job, kinds))
            await asyncio.gather(*checks)
        return u

    try:
        results = await asyncio.gather(*(one(r) for r in users))
    finally:
        if graph_client is not None:
            await graph_client.close()
    report = PreflightReport(list(results))
    _estimate(report, home, source, tenant, dest_endpoint)
    return report


def _estimate(report: PreflightReport, home: Home, source: Endpoint, tenant: Tenant | None,
              dest: Endpoint | None) -> None:
    """Fill in per-user and batch ETAs from the route's measured rate and the known limits."""
    from mailtrek.orchestrate.rates import batch_route, estimate, measured_rate

    sampled = sum(u.sampled_bytes for u in report.users)
    seconds = sum(u.sampled_seconds for u in report.users)
    measured = sampled / seconds if sampled and seconds > 0 else None
    preset = PRESETS.get(source.preset or "")
    quota = preset.daily_download_mb * 1048576 / 86400 if preset and preset.daily_download_mb else None
    upload = GRAPH_UPLOAD_RATE if tenant is not None else None
    route = batch_route(source.host, to_m365=tenant is not None,
                        dest_host=dest.host if dest else None)
    rate = measured_rate(home.engine, route)
    report.rate_limits = {"measured_download": measured, "destination_upload": upload, "source_daily_quota": quota,
                          "route_messages_per_second": rate.messages_per_second if rate else None,
                          "route_bytes_per_second": rate.bytes_per_second if rate else None}
    names = {measured: "the sampled download rate", upload: "the destination's upload limit",
             quota: "the provider's daily download quota"}
    limits = [r for r in (measured, upload, quota) if r]
    cap = min(limits) if limits else None
    for u in report.users:
        if u.can_start:
            e = estimate(u.messages, u.bytes, rate, byte_limit=cap, byte_limit_name=names.get(cap, ""))
            u.eta_seconds = e.seconds
            report.eta_basis = e.basis if not report.eta_basis or "limited" in e.basis else report.eta_basis
    etas = [u.eta_seconds for u in report.users if u.eta_seconds is not None]
    if etas:
        # Users move in parallel (one rate each) up to the endpoint's concurrency limit.
        report.eta_seconds = max(max(etas), sum(etas) / max(1, source.max_concurrent_migrations))


async def preflight_batch(home: Home, name: str, **kw: Any) -> PreflightReport:
    """Pre-flight the stored batch ``name`` with its users' stored passwords."""
    b = get_batch(home, name)
    with home.engine.connect() as c:
        rows = c.execute(select(batch_users).where(batch_users.c.batch == name)
                         .order_by(batch_users.c.line)).mappings().all()
    users = [UserRow(r["line"], r["email"], r["username"],
                     home.box.decrypt(r["password_enc"]) if r["password_enc"] else "", r["user_root"],
                     tuple(r["items"].split(",")) if r["items"] else None)
             for r in rows]
    report = await preflight_users(
        home, users, source=get_endpoint(home, b.source_endpoint),
        tenant=get_tenant(home, b.tenant) if b.tenant else None,
        dest_endpoint=get_endpoint(home, b.dest_endpoint) if b.dest_endpoint else None,
        options=b.options, **kw)
    remember_totals(home, name, report)
    return report


def remember_totals(home: Home, name: str, report: PreflightReport) -> None:
    """Keep each user's counted messages as the known total until a sync plans its own,
    so the first sync's progress counts against it instead of a total that grows."""
    from sqlalchemy import update

    with home.engine.begin() as c:
        for u in report.users:
            if u.messages and u.can_start:
                c.execute(update(batch_users).where(batch_users.c.batch == name, batch_users.c.email == u.email.lower(),
                                                    batch_users.c.ever_synced.is_(False))
                          .values(items_total=u.messages))


# -- output --------------------------------------------------------------------------------
def duration(seconds: float | None) -> str:
    """Return ``seconds`` as a short human duration ("-" when unknown)."""
    if seconds is None:
        return "-"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def summary_rows(report: PreflightReport) -> list[dict[str, Any]]:
    """One row per user for the table."""
    return [{"line": u.line, "email": u.email, "start": "yes" if u.can_start else "NO",
             "login": "ok" if u.login_ok else "FAILED",
             "destination": "-" if u.destination_ok is None else "ok" if u.destination_ok else "FAILED",
             "messages": u.messages, "MB": f"{u.bytes / 1048576:.1f}", "skipped": u.skipped,
             "warnings": sum(1 for f in u.findings if f.kind not in ("skip", "login", "destination")),
             "eta": duration(u.eta_seconds),
             "contacts/calendars": pim_text(u)} for u in report.users]


def pim_text(u: UserPreflight) -> str:
    """``2 calendars: 14 objects; 1 address book: 30 contacts`` (``-`` when not asked for)."""
    if u.pim_objects is None:
        return "not countable" if any(f.kind == "pim" for f in u.findings) else "-"
    cals = [c for c in u.pim if c["kind"] == "calendar"]
    books = [c for c in u.pim if c["kind"] == "contacts"]
    parts = []
    if cals:
        parts.append(f"{len(cals)} calendar(s): {sum(c['objects'] for c in cals)} objects")
    if books:
        parts.append(f"{len(books)} address book(s): {sum(c['objects'] for c in books)} contacts")
    return "; ".join(parts) or "none"


def finding_rows(report: PreflightReport) -> list[dict[str, Any]]:
    """One row per finding, each on its CSV line."""
    return [{"line": u.line, "email": u.email, "kind": f.kind, "folder": f.folder, "uid": f.uid,
             "size": f.size, "reason": f.reason} for u in report.users for f in u.findings]


def finding_groups(report: PreflightReport) -> list[dict[str, Any]]:
    """Non-blocking findings grouped by kind, most frequent first: kind, items, users, example.

    At 200 users the same warning repeats per message; a count per kind keeps the few
    blockers visible. The details stay in the CSV and JSON.
    """
    groups: dict[str, dict[str, Any]] = {}
    for u in report.users:
        for f in u.findings:
            if f.blocking:
                continue
            g = groups.setdefault(f.kind, {"kind": f.kind, "items": 0, "users": set(), "example": f.reason})
            g["items"] += 1
            g["users"].add(u.email)
    rows = [g | {"users": len(g["users"])} for g in groups.values()]
    return sorted(rows, key=lambda g: (-g["items"], g["kind"]))


def blocker_rows(report: PreflightReport) -> list[dict[str, Any]]:
    """One row per finding that stops a user from starting."""
    return [{"line": u.line, "email": u.email, "kind": f.kind, "reason": f.reason}
            for u in report.users for f in u.findings if f.blocking]


def render_csv(report: PreflightReport) -> str:
    """The findings as CSV; no cell runs as a formula."""
    rows = ([r.get(c) for c in FINDING_COLUMNS] for r in finding_rows(report))
    return redact(render_rows(FINDING_COLUMNS, rows))


def render_json(report: PreflightReport) -> str:
    return redact(json.dumps(report.as_dict(), indent=2, ensure_ascii=False)) + "\n"
