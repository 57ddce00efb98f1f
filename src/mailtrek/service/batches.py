"""Create batches (with source discovery and clean-up) and start, stop or resume them.

`mailtrek batch create` and the dashboard's New batch form (and ``POST /api/batches``)
fill in one :class:`BatchRequest`; :func:`create_batch` validates all of it before anything
is stored. To add a batch option: a field here, read in :meth:`BatchRequest.options`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from mailtrek.errors import MailtrekError, UsageError
from mailtrek.orchestrate import batches as batch_ops
from mailtrek.orchestrate.csvfile import UserRow, is_address, parse_users_csv, read_users_csv
from mailtrek.orchestrate.home import Home
from mailtrek.service.text import blank, label

if TYPE_CHECKING:  # discovery (httpx, DNS) is imported by the calls that discover
    from mailtrek.orchestrate.discovery import SourceEndpoint

__all__ = ["BatchCreated", "BatchRequest", "DiscoverRequest", "SourceEvent", "create_batch",
           "gmail_label_modes", "list_view", "simple_action",
           "source_view"]


@dataclass(slots=True)
class DiscoverRequest:
    """Find the source server from the CSV's address domains instead of naming an endpoint."""

    nameserver: str | None = None  # DNS server IP[:PORT]; None: the system's resolver
    ca_file: str | None = None  # trusted for HTTPS and IMAP; stored with a new endpoint
    ispdb_url: str | None = None  # Thunderbird ISP database base URL
    https_port: int | None = None  # port of the domain's autoconfig URLs (tests)
    timeout: float = 5.0  # per DNS query, HTTP request or connection
    allow_plain: bool = False  # a server without TLS may be chosen


@dataclass(slots=True)
class BatchRequest:
    """A batch to create: its source, destination and options, as typed (blank = not given)."""

    name: str
    endpoint: str | None = None  # stored source endpoint, or ``discover``
    tenant: str | None = None  # exactly one of tenant and dest_endpoint
    dest_endpoint: str | None = None
    exclude_folder: list[str] = field(default_factory=list)
    since: str | None = None
    before: str | None = None
    max_size: str | None = None
    gmail_labels: str = "auto"
    items: str | None = None  # mail, calendars, contacts (blank: mail only)
    autostart: bool = False
    notify: list[str] = field(default_factory=list)
    incremental_interval: float = batch_ops.DEFAULT_INCREMENTAL_HOURS
    allow_unknown_columns: bool = False
    start_at: str | None = None  # ISO time or +2h: the batch starts by itself then
    discover: DiscoverRequest | None = None
    dry_run: bool = False  # run the pre-flight for these users; store nothing
    cli: bool = False  # name options as the CLI does (--start-at) in messages

    def label(self, option: str) -> str:
        return label(option, cli=self.cli)

    def options(self) -> batch_ops.BatchOptions:
        """What each move copies; UsageError for a bad date, size or Gmail mode."""
        from mailtrek.orchestrate.option_text import date_option, items_option, size_option
        from mailtrek.stores.gmail.wiring import check_mode

        return batch_ops.BatchOptions(
            exclude=[x.strip() for x in self.exclude_folder if x.strip()],
            since=date_option(blank(self.since), self.label("since")),
            before=date_option(blank(self.before), self.label("before")),
            max_size=size_option(blank(self.max_size)),
            gmail_labels=check_mode(blank(self.gmail_labels) or "auto"),
            items=items_option(blank(self.items), self.label("items")))


@dataclass(frozen=True, slots=True)
class SourceEvent:
    """A step of a discovered source: found (and reused or not), stored, removed again."""

    what: Literal["discovered", "saved", "removed"]
    source: SourceEndpoint


@dataclass(slots=True)
class BatchCreated:
    """What :func:`create_batch` did (after a dry run: only the pre-flight report)."""

    name: str
    users: list[UserRow]
    batch: batch_ops.Batch | None = None  # None after a dry run
    start_at: datetime | None = None
    source: SourceEndpoint | None = None  # the discovered source
    preflight: Any = None  # a dry run's mailtrek.orchestrate.preflight.PreflightReport
    warnings: list[str] = field(default_factory=list)

    def view(self) -> dict[str, Any]:
        """The JSON answer: name, status, users; warnings and source only when there are some."""
        assert self.batch is not None
        out: dict[str, Any] = {"name": self.batch.name, "status": self.batch.status.value,
                               "users": len(self.users)}
        if self.warnings:  # only then: the answer keeps its shape for callers that compare it whole
            out["warnings"] = list(self.warnings)
        if self.source is not None:
            out["source"] = source_view(self.source)
        return out


def gmail_label_modes() -> tuple[str, ...]:
    """The values ``gmail_labels`` takes, ``auto`` first."""
    from mailtrek.stores.gmail.wiring import MODES

    return tuple(MODES)


def source_view(src: SourceEndpoint) -> dict[str, Any]:
    """A discovered source as JSON: the endpoint, where it came from, reused or stored."""
    from mailtrek.orchestrate.discovery import source_labels
    from mailtrek.secrets import redact

    c, ep = src.candidate, src.endpoint
    return {"endpoint": ep.name, "host": ep.host, "port": ep.port, "security": ep.security,
            "domains": list(src.domains), "found_by": source_labels(c),
            "sources": [redact(s) for s in c.sources], "notes": [redact(n) for n in c.notes],
            "reused": src.reused, "saved": src.saved}


def _quiet(_: SourceEvent) -> None:
    return None


def create_batch(home: Home, req: BatchRequest, csv: bytes | Path, *,
                 on_source: Callable[[SourceEvent], None] = _quiet) -> BatchCreated:
    """Validate the users CSV and every option, then create the batch (or only pre-flight it).

    With ``req.discover`` the source server is found from the CSV's address domains after
    everything that would refuse the batch anyway is checked; a new endpoint is stored for
    it and removed again when the batch cannot be created. ``on_source`` hears each step.
    Raises CsvInvalidError (every problem with its line) before anything is stored.
    """
    from mailtrek.orchestrate.endpoints import needs_no_passwords
    from mailtrek.orchestrate.schedule import parse_when

    endpoint, tenant, dest = blank(req.endpoint), blank(req.tenant), blank(req.dest_endpoint)
    empty_ok = endpoint is not None and needs_no_passwords(home, endpoint)
    if isinstance(csv, Path):
        users = read_users_csv(csv, allow_unknown_columns=req.allow_unknown_columns, allow_empty_password=empty_ok)
    else:
        users = parse_users_csv(csv, allow_unknown_columns=req.allow_unknown_columns, allow_empty_password=empty_ok)
    notify = [a.strip() for a in req.notify if a.strip()]
    for a in notify:
        if not is_address(a):
            raise UsageError(f"{req.label('notify')} {a!r} is not an e-mail address")
    options = req.options()
    if endpoint is not None and req.discover is not None:
        raise UsageError(f"give {req.label('endpoint')} or {req.label('discover')}, not both",
                         hint=f"{req.label('endpoint')} names a stored source; {req.label('discover')} "
                              "finds one from the CSV's domains")
    if endpoint is None and req.discover is None:
        raise UsageError(f"batch create needs a source: {req.label('endpoint')} E",
                         hint=f"or {req.label('discover')} to find the server from the CSV's address domains")
    when = parse_when(blank(req.start_at), req.label("start-at"))
    if when is not None and req.autostart:
        raise UsageError(f"give {req.label('autostart')} or {req.label('start-at')}, not both")
    found = None
    if req.discover is not None:
        # Everything that would refuse the batch anyway is checked before the network is.
        if req.dry_run:
            batch_ops.check_destination(home, tenant, dest)
        else:
            batch_ops.check_new_batch(home, req.name, tenant=tenant, dest_endpoint=dest,
                                      incremental_hours=req.incremental_interval)
        found = discover_source(home, [u.email for u in users], req.discover, req.label("discover-timeout"))
        on_source(SourceEvent("discovered", found))
    if req.dry_run:
        source = found.endpoint if found is not None else endpoint
        return BatchCreated(req.name, users, start_at=when, source=found,
                            preflight=_preflight(home, users, source, tenant, dest, options))
    if found is not None and not found.reused:
        from mailtrek.orchestrate.discovery import save_source

        save_source(home, found)
        on_source(SourceEvent("saved", found))
    try:
        b = batch_ops.create_batch(home, req.name, endpoint=found.endpoint.name if found else endpoint,
                                   users=users, tenant=tenant, dest_endpoint=dest, options=options,
                                   notify=notify, incremental_hours=req.incremental_interval, start_at=when)
    except Exception:
        if found is not None and found.saved:
            # The endpoint was stored for this batch only: do not leave it behind.
            from mailtrek.orchestrate.endpoints import remove_endpoint

            with contextlib.suppress(MailtrekError):
                remove_endpoint(home, found.endpoint.name)
                on_source(SourceEvent("removed", found))
        raise
    warnings = []
    if notify:
        from mailtrek.orchestrate.notify import cannot_mail

        warning = cannot_mail(home)
        if warning:
            warnings.append(warning)
    if req.autostart:
        b = batch_ops.start_batch(home, req.name)
    return BatchCreated(req.name, users, batch=b, start_at=when, source=found, warnings=warnings)


def discover_source(home: Home, emails: list[str], req: DiscoverRequest,
                    timeout_label: str = "discover timeout") -> SourceEndpoint:
    """Find the one server the addresses' domains agree on; map it to a stored or new endpoint."""
    from mailtrek.orchestrate.discovery import (
        DEFAULT_ISPDB_URL,
        DiscoveryConfig,
        discover_domains,
        source_endpoint,
    )

    ca = blank(req.ca_file)
    if ca is not None:
        if not Path(ca).is_file():
            raise UsageError(f"CA file not found on the server: {ca}")
        ca = str(Path(ca).resolve())
    if req.timeout <= 0:
        raise UsageError(f"{timeout_label} must be positive")
    config = DiscoveryConfig(nameserver=blank(req.nameserver), ca_file=ca,
                             ispdb_url=blank(req.ispdb_url) or DEFAULT_ISPDB_URL,
                             https_port=req.https_port, timeout=req.timeout, allow_plain=req.allow_plain)
    return source_endpoint(home, discover_domains(emails, config), ca)


def _preflight(home: Home, users: list[UserRow], source: Any, tenant: str | None, dest_endpoint: str | None,
               options: batch_ops.BatchOptions) -> Any:
    """Pre-flight ``users`` against a source endpoint (stored name, or a discovered one not stored)."""
    from mailtrek.orchestrate.endpoints import get_endpoint, get_tenant
    from mailtrek.orchestrate.preflight import preflight_users

    batch_ops.check_destination(home, tenant, dest_endpoint)
    src = get_endpoint(home, source) if isinstance(source, str) else source
    return asyncio.run(preflight_users(
        home, users, source=src, tenant=get_tenant(home, tenant) if tenant else None,
        dest_endpoint=get_endpoint(home, dest_endpoint) if dest_endpoint else None, options=options))


def list_view(home: Home) -> list[dict[str, Any]]:
    """Every batch with its status, source, destination, user counts by status and items synced."""
    out = []
    for b in batch_ops.list_batches(home):
        users = batch_ops.user_rows(home, b.name)
        counts: dict[str, int] = {}
        for u in users:
            counts[u["status"]] = counts.get(u["status"], 0) + 1
        out.append({"name": b.name, "status": b.status.value, "endpoint": b.source_endpoint,
                    "destination": b.tenant or b.dest_endpoint, "users": len(users), "by_status": counts,
                    "items_synced": sum(u["items_synced"] for u in users),
                    "created": b.created_at.isoformat(timespec="seconds") if b.created_at else None})
    return out


def simple_action(home: Home, name: str, action: str) -> dict[str, Any]:
    """Start, stop or resume batch ``name``; return its new status."""
    fn = {"start": batch_ops.start_batch, "stop": batch_ops.stop_batch,
          "resume": batch_ops.resume_batch}.get(action)
    if fn is None:
        raise UsageError(f"unknown action {action!r}")
    b = fn(home, name)
    return {"name": name, "status": b.status.value}
