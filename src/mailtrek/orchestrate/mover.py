"""Run one user's mailbox move: open the source and destination stores, copy, close.

The runner calls a :data:`Mover` for each due piece of work. The default one,
:func:`move_mailbox`, is a plain function of one :class:`MoveJob`, so any job engine
could call it; tests of the scheduler may pass their own.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from mailtrek.errors import UsageError
from mailtrek.orchestrate.batches import Batch, user_route
from mailtrek.orchestrate.endpoints import Endpoint, Tenant
from mailtrek.orchestrate.home import Home
from mailtrek.orchestrate.specs import admin_spec, endpoint_spec
from mailtrek.orchestrate.specs import tenant_config as tenant_config  # where callers found it
from mailtrek.stores import registry
from mailtrek.stores.base import DestinationStore
from mailtrek.stores.spec import GraphSpec, ImapSpec, MailSpec
from mailtrek.sync.options import CopyOptions, CopyReport


@dataclass(slots=True)
class MoveJob:
    """One piece of due work: which user, which phase, and how to reach both sides."""

    batch: Batch
    email: str
    username: str
    password: str = field(repr=False)
    user_root: str | None
    phase: str  # "initial" | "incremental" | "final"
    source: Endpoint
    tenant: Tenant | None = None
    dest_endpoint: Endpoint | None = None
    progress: Callable[..., None] | None = field(default=None, repr=False)  # engine events

    @property
    def mailbox(self) -> str:
        return user_route(self.batch, self.username, self.email)


Mover = Callable[[Home, MoveJob], Awaitable[CopyReport]]


def copy_options(job: MoveJob) -> CopyOptions:
    """Return the engine options of ``job``'s batch."""
    o = job.batch.options
    opts = CopyOptions(exclude=list(o.exclude), connections=job.source.connections_per_mailbox)
    if o.since:
        opts.since = datetime.fromisoformat(o.since)
    if o.before:
        opts.before = datetime.fromisoformat(o.before)
    if o.max_size is not None:
        opts.max_size = o.max_size
    return opts


def source_spec(job: MoveJob, home: Home | None = None) -> ImapSpec:
    """Return the spec of the source mailbox (read only).

    A service-account endpoint logs in as UserName over XOAUTH2 with a token delegated to
    that user (``home`` decrypts the key); the token is fetched at login, so a refused
    delegation fails this mailbox only. Raises UsageError for endpoints batches cannot use.
    """
    ep = job.source
    label = f"src:{job.email}"
    if ep.uses_service_account:
        if home is None:
            raise UsageError(f"endpoint {ep.name} needs its stored service-account key")
        from mailtrek.orchestrate.endpoints import service_account_key
        from mailtrek.stores.gmail.auth import ServiceAccountTokens

        # The endpoint's CA file also pins the token endpoint's CA, as `copy --source-ca-file` does.
        tokens = ServiceAccountTokens(service_account_key(home, ep), ca_file=ep.ca_file)
        return endpoint_spec(ep, job.username, mechanism="xoauth2",
                             token=tokens.for_user(job.username), label=label)
    if ep.auth != "password":
        raise UsageError(f"endpoint {ep.name} uses {ep.auth} without a service account, which batches cannot use",
                         hint="add the endpoint with --service-account-key KEY.json (Google Workspace), "
                              "or with --auth password and app passwords in the CSV")
    return endpoint_spec(ep, job.username, password=job.password, label=label)


def imap_destination_spec(home: Home, job: MoveJob) -> ImapSpec:
    """Return the spec of an IMAP destination mailbox.

    With an admin on the endpoint, log in as the admin for the user (SASL PLAIN authzid);
    otherwise log in as the EmailAddress with the CSV password (servers whose passwords
    were carried over).
    """
    ep = job.dest_endpoint
    assert ep is not None
    label = f"dest:{job.email}"
    return admin_spec(home, ep, job.email, label=label) or endpoint_spec(
        ep, job.email, password=job.password, readonly=False, label=label)


def _settings_version(t: Tenant) -> int:
    """Return a number that changes when ``t``'s stored settings or its CA file change."""
    import os

    try:
        ca_mtime = os.stat(t.ca_file).st_mtime_ns if t.ca_file else 0
    except OSError:
        ca_mtime = -1
    return hash((t.tenant_id, t.client_id, t.client_secret_enc, t.authority, t.graph_url, t.ca_file, ca_mtime))


def destination_spec(home: Home, job: MoveJob) -> MailSpec:
    """Return the spec of ``job``'s destination (Graph or IMAP).

    Graph stores of one tenant share its app pool (``home.graph_clients``): one client
    per app registration, each mailbox on the least busy app, so a token is fetched once
    per app, not once per mailbox; whoever owns ``home`` closes them.
    """
    if job.tenant is None:
        return imap_destination_spec(home, job)
    import asyncio

    from mailtrek.orchestrate.tenant_apps import open_pool
    from mailtrek.state.m365 import ProfileMemory
    from mailtrek.stores.m365 import GraphOptions

    # Per event loop too: an httpx client cannot outlive the loop it was made in. Per
    # version of the tenant's settings and CA file, so an edit or a renewed CA reaches a
    # long-running `mailtrek run` (the old clients are closed at shutdown).
    key = f"{job.tenant.name}:{_settings_version(job.tenant)}@{id(asyncio.get_running_loop())}"
    pool = home.graph_clients.get(key)
    if pool is None:
        pool = home.graph_clients[key] = open_pool(home, job.tenant)
    client = pool.client_for(job.email)
    return GraphSpec(mailbox=job.email, tenant=client.tenant, client=client,
                     options=GraphOptions(memory=ProfileMemory(home.engine)),
                     on_close=lambda: pool.done(job.email), label=f"dest:{job.email}")


async def connect_destination(home: Home, job: MoveJob) -> DestinationStore:
    """Return a connected destination store for ``job`` (Graph or IMAP)."""
    store = registry.open_destination(destination_spec(home, job))
    try:
        await store.connect()
    except BaseException:
        await store.close()
        raise
    return store


def route_of(job: MoveJob) -> str:
    """Return the route name of ``job`` (source host to Microsoft 365 or an IMAP host)."""
    from mailtrek.orchestrate.rates import batch_route

    return batch_route(job.source.host, to_m365=job.tenant is not None,
                       dest_host=job.dest_endpoint.host if job.dest_endpoint else None)


def _record_rate(home: Home, job: MoveJob, report: CopyReport, seconds: float) -> None:
    """Remember the run's rate for later estimates; a failure here never fails the move."""
    from mailtrek.orchestrate.rates import record_run

    try:
        record_run(home.engine, route_of(job), report.total("copied"), report.total("bytes_copied"), seconds)
    except Exception as e:  # the mail is copied; a lost measurement only costs estimate quality
        logging.getLogger("mailtrek.rates").warning("could not record the rate of %s: %s", job.email,
                                                    e.__class__.__name__)


async def move_mailbox(home: Home, job: MoveJob) -> CopyReport:
    """Copy ``job``'s mailbox once (initial, incremental and final runs are the same call),
    then its contacts and calendars when the user's items say so (``pim_phase``).

    Idempotent: the engine copies only what is missing, so an interrupted run is simply
    run again. Raises the engine's and stores' errors for problems that stop the mailbox;
    contacts/calendars trouble becomes an error of the report.
    """
    from mailtrek.orchestrate.pim_phase import pim_kinds, run_pim_phase, user_items

    items = user_items(home, job)
    if "mail" in items:
        report = await _move_mail(home, job)
    else:
        report = CopyReport(source=job.source.name, destination=job.email,
                            started=datetime.now(UTC), finished=datetime.now(UTC))
    kinds = pim_kinds(items)
    if kinds:
        await run_pim_phase(home, job, kinds, report)
    return report


async def _move_mail(home: Home, job: MoveJob) -> CopyReport:
    """The mail part of :func:`move_mailbox`."""
    from mailtrek.state.db import MailboxState
    from mailtrek.sync.engine import copy_mailbox

    source = registry.open_source(source_spec(job, home))
    dest = None
    try:
        await source.connect()
        dest = await connect_destination(home, job)
        state = MailboxState(home.engine, job.mailbox)
        try:
            view = await registry.source_view(source, job.batch.options.gmail_labels,
                                              done=state.messages_of, atom_keywords=dest.features.atom_keywords,
                                              quota_dir=home.path / "gmail-quota")
            started = time.monotonic()
            report = await copy_mailbox(view, dest, state, copy_options(job),
                                        progress=job.progress)
            _record_rate(home, job, report, time.monotonic() - started)
            registry.note_deferral(view, report)  # the day's Gmail quota is used: say when it goes on
            return report
        finally:
            state.flush()
    finally:
        await source.close()
        if dest is not None:
            await dest.close()
