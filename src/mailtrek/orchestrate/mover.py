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
from datetime import datetime
from typing import Any

from mailtrek.errors import UsageError
from mailtrek.orchestrate.batches import Batch, user_route
from mailtrek.orchestrate.endpoints import Endpoint, Tenant
from mailtrek.orchestrate.home import Home
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


def source_settings(job: MoveJob, home: Home | None = None) -> Any:
    """Return ImapSettings for the source mailbox (read only).

    A service-account endpoint logs in as UserName over XOAUTH2 with a token delegated to
    that user (``home`` decrypts the key); the token is fetched at login, so a refused
    delegation fails this mailbox only. Raises UsageError for endpoints batches cannot use.
    """
    from mailtrek.stores.imap.connection import ConnectParams, Credentials
    from mailtrek.stores.imap.store import ImapSettings

    ep = job.source
    params = ConnectParams(host=ep.host, port=ep.port, security=ep.security, ca_file=ep.ca_file)
    if ep.uses_service_account:
        if home is None:
            raise UsageError(f"endpoint {ep.name} needs its stored service-account key")
        from mailtrek.orchestrate.endpoints import service_account_key
        from mailtrek.stores.gmail.auth import ServiceAccountTokens

        # The endpoint's CA file also pins the token endpoint's CA, as `copy --source-ca-file` does.
        tokens = ServiceAccountTokens(service_account_key(home, ep), ca_file=ep.ca_file)
        creds = Credentials(user=job.username, mechanism="xoauth2", token=tokens.for_user(job.username))
    elif ep.auth != "password":
        raise UsageError(f"endpoint {ep.name} uses {ep.auth} without a service account, which batches cannot use",
                         hint="add the endpoint with --service-account-key KEY.json (Google Workspace), "
                              "or with --auth password and app passwords in the CSV")
    else:
        creds = Credentials(user=job.username, password=job.password)
    return ImapSettings(params=params, credentials=creds, connections=ep.connections_per_mailbox,
                        readonly=True)


def imap_destination_settings(home: Home, job: MoveJob) -> Any:
    """Return ImapSettings for an IMAP destination mailbox.

    With an admin on the endpoint, log in as the admin for the user (SASL PLAIN authzid);
    otherwise log in as the EmailAddress with the CSV password (servers whose passwords
    were carried over).
    """
    from mailtrek.stores.imap.connection import ConnectParams, Credentials
    from mailtrek.stores.imap.store import ImapSettings

    ep = job.dest_endpoint
    assert ep is not None
    params = ConnectParams(host=ep.host, port=ep.port, security=ep.security, ca_file=ep.ca_file)
    from mailtrek.orchestrate.endpoints import admin_credentials

    creds = admin_credentials(home, ep, job.email) or Credentials(user=job.email, password=job.password)
    return ImapSettings(params=params, credentials=creds, connections=ep.connections_per_mailbox,
                        readonly=False)


def _settings_version(t: Tenant) -> int:
    """Return a number that changes when ``t``'s stored settings or its CA file change."""
    import os

    try:
        ca_mtime = os.stat(t.ca_file).st_mtime_ns if t.ca_file else 0
    except OSError:
        ca_mtime = -1
    return hash((t.tenant_id, t.client_id, t.client_secret_enc, t.authority, t.graph_url, t.ca_file, ca_mtime))


async def open_destination(home: Home, job: MoveJob) -> Any:
    """Return a connected destination store for ``job`` (Graph or IMAP).

    Graph stores of one tenant share its app pool (``home.graph_clients``): one client
    per app registration, each mailbox on the least busy app, so a token is fetched once
    per app, not once per mailbox; whoever owns ``home`` closes them.
    """
    if job.tenant is not None:
        import asyncio

        from mailtrek.orchestrate.tenant_apps import open_pool
        from mailtrek.state.m365 import ProfileMemory
        from mailtrek.stores.m365 import GraphOptions, open_graph_store

        # Per event loop too: an httpx client cannot outlive the loop it was made in. Per
        # version of the tenant's settings and CA file, so an edit or a renewed CA reaches a
        # long-running `mailtrek run` (the old clients are closed at shutdown).
        key = f"{job.tenant.name}:{_settings_version(job.tenant)}@{id(asyncio.get_running_loop())}"
        pool = home.graph_clients.get(key)
        if pool is None:
            pool = home.graph_clients[key] = open_pool(home, job.tenant)
        client = pool.client_for(job.email)
        store: Any = open_graph_store(job.email, client.tenant, client=client,
                                      options=GraphOptions(memory=ProfileMemory(home.engine)))
        store.on_close = lambda: pool.done(job.email)
    else:
        from mailtrek.stores.imap.store import ImapStore

        store = ImapStore(imap_destination_settings(home, job), label=f"dest:{job.email}")
    try:
        await store.connect()
    except BaseException:
        await store.close()
        raise
    return store


def tenant_config(home: Home, t: Tenant) -> Any:
    """Return the m365 store's TenantConfig for a stored tenant (secret decrypted)."""
    from pathlib import Path

    from mailtrek.stores.m365.config import DEFAULT_GRAPH_URL, TenantConfig

    return TenantConfig(
        tenant_id=t.tenant_id, client_id=t.client_id,
        client_secret=home.box.decrypt(t.client_secret_enc), authority=t.authority,
        graph_url=t.graph_url or DEFAULT_GRAPH_URL, ca_file=Path(t.ca_file) if t.ca_file else None,
    )


def route_of(job: MoveJob) -> str:
    """Return the route name of ``job`` (source host to Microsoft 365 or an IMAP host)."""
    from mailtrek.orchestrate.rates import route_key

    return route_key(job.source.host, "m365" if job.tenant is not None
                     else job.dest_endpoint.host if job.dest_endpoint else "?")


def _record_rate(home: Home, job: MoveJob, report: CopyReport, seconds: float) -> None:
    """Remember the run's rate for later estimates; a failure here never fails the move."""
    from mailtrek.orchestrate.rates import record_run

    try:
        record_run(home.engine, route_of(job), report.total("copied"), report.total("bytes_copied"), seconds)
    except Exception as e:  # the mail is copied; a lost measurement only costs estimate quality
        logging.getLogger("mailtrek.rates").warning("could not record the rate of %s: %s", job.email,
                                                    e.__class__.__name__)


async def move_mailbox(home: Home, job: MoveJob) -> CopyReport:
    """Copy ``job``'s mailbox once (initial, incremental and final runs are the same call).

    Idempotent: the engine copies only what is missing, so an interrupted run is simply
    run again. Raises the engine's and stores' errors for problems that stop the mailbox.
    """
    from mailtrek.state.db import MailboxState
    from mailtrek.stores.imap.store import ImapStore
    from mailtrek.sync.engine import copy_mailbox

    source = ImapStore(source_settings(job, home), label=f"src:{job.email}")
    dest = None
    try:
        await source.connect()
        dest = await open_destination(home, job)
        state = MailboxState(home.engine, job.mailbox)
        try:
            from mailtrek.stores.gmail.wiring import gmail_view

            view = await gmail_view(source, job.batch.options.gmail_labels,
                                    done=state.messages_of, dest_kind=dest.features.kind,
                                    quota_dir=home.path / "gmail-quota")
            started = time.monotonic()
            report = await copy_mailbox(view, dest, state, copy_options(job),
                                        progress=job.progress)
            _record_rate(home, job, report, time.monotonic() - started)
            deferral = getattr(view, "deferral", None)
            if deferral is not None:  # the day's Gmail quota is used: say when it goes on
                report.errors.append(deferral.describe())
                report.resume_at = deferral.resume_at
            return report
        finally:
            state.flush()
    finally:
        await source.close()
        if dest is not None:
            await dest.close()
