"""Batches of mailbox moves: create from a CSV, start, stop, resume, complete, delete.

Commands only change statuses in the database; the runner (``mailtrek run``) notices and
does the work. Every status change goes through :mod:`mailtrek.orchestrate.states`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from mailtrek.errors import ConflictError, NotFoundError, UsageError
from mailtrek.orchestrate.csvfile import UserRow
from mailtrek.orchestrate.endpoints import check_name, get_endpoint, get_tenant
from mailtrek.orchestrate.home import Home, as_utc, utcnow
from mailtrek.orchestrate.routes import mailbox_route
from mailtrek.orchestrate.states import (
    ACTIVE_USER,
    BatchStatus,
    UserStatus,
    check_batch_move,
    settle_batch,
    user_resume_status,
)
from mailtrek.state.orchestration import batch_users, batches, user_runs

DEFAULT_INCREMENTAL_HOURS = 24.0  # Exchange's IMAP migration syncs every 24 h (m365.md C3)


@dataclass(slots=True)
class BatchOptions:
    """What each mailbox move of the batch copies."""

    exclude: list[str] = field(default_factory=list)
    since: str | None = None  # ISO dates, kept as text so the JSON round-trips
    before: str | None = None
    max_size: int | None = None
    gmail_labels: str = "auto"  # Gmail sources: auto|folders+categories|folders|all-mail|off
    items: list[str] = field(default_factory=lambda: ["mail"])  # and calendars, contacts


@dataclass(slots=True)
class Batch:
    name: str
    status: BatchStatus
    source_endpoint: str
    tenant: str | None
    dest_endpoint: str | None
    options: BatchOptions
    notify: list[str]
    incremental_hours: float
    created_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    notified_status: str | None = None
    start_at: datetime | None = None  # a Created batch starts by itself then
    complete_at: datetime | None = None  # completion asked for then


def user_route(batch: Batch, username: str, email: str) -> str:
    """Return the engine-state key of one user's move (``MailboxState.mailbox``): its route."""
    return mailbox_route(batch.source_endpoint, username, batch.tenant, batch.dest_endpoint, email)


def create_batch(
    home: Home,
    name: str,
    *,
    endpoint: str,
    users: list[UserRow],
    tenant: str | None = None,
    dest_endpoint: str | None = None,
    options: BatchOptions | None = None,
    notify: list[str] | None = None,
    incremental_hours: float = DEFAULT_INCREMENTAL_HOURS,
    start_at: datetime | None = None,
) -> Batch:
    """Store a new batch with one Queued row per user (passwords encrypted).

    With ``start_at`` the batch stays Created until then; the runner starts it.

    Raises UsageError for a taken name, a missing destination, or users already in
    another unfinished batch (two moves into one mailbox would race).
    """
    check_name(name, "batch")
    get_endpoint(home, endpoint)
    _check_destination_and_interval(home, tenant, dest_endpoint, incremental_hours)
    rooted = [u.line for u in users if u.user_root]
    if rooted:
        # The IMAP store cannot yet open a mailbox below a root folder; refusing beats
        # silently migrating the wrong folders.
        raise UsageError(f"UserRoot is not supported yet (lines {', '.join(map(str, rooted[:20]))})",
                         hint="remove the UserRoot column, or use admin logins instead")
    options = options or BatchOptions()
    now = utcnow()
    emails = [u.email.lower() for u in users]
    with home.engine.begin() as c:
        busy = c.execute(
            select(batch_users.c.email, batch_users.c.batch)
            .join(batches, batches.c.name == batch_users.c.batch)
            .where(func.lower(batch_users.c.email).in_(emails))
            .where(batches.c.status.not_in([BatchStatus.COMPLETED, BatchStatus.COMPLETED_WITH_ERRORS]))
        ).all()
        if busy:
            listed = ", ".join(f"{e} ({b})" for e, b in busy[:10])
            raise ConflictError(f"{len(busy)} user(s) are already in an unfinished batch: {listed}",
                             hint="fix them there: `mailtrek batch retry BATCH --csv FILE` takes new "
                                  "passwords, `batch move-user` moves a user; or complete or delete that batch")
        try:
            c.execute(insert(batches).values(
                name=name, status=BatchStatus.CREATED, source_endpoint=endpoint, tenant=tenant,
                dest_endpoint=dest_endpoint,
                options_json=json.dumps({"exclude": options.exclude, "since": options.since,
                                         "before": options.before, "max_size": options.max_size,
                                         "gmail_labels": options.gmail_labels,
                                         "items": options.items}),
                notify_json=json.dumps(notify or []), incremental_hours=incremental_hours,
                created_at=now, start_at=start_at,
            ))
        except IntegrityError:
            raise ConflictError(f"batch {name!r} exists", hint="pick another name") from None
        c.execute(insert(batch_users), [
            {"batch": name, "email": u.email.lower(), "line": u.line, "username": u.username,
             "password_enc": home.box.encrypt(u.password), "user_root": u.user_root,
             "status": UserStatus.QUEUED, "ever_synced": False, "items_synced": 0,
             "items_skipped": 0, "bytes": 0, "runs": 0, "updated_at": now,
             "items": ",".join(u.items) if u.items is not None else None}
            for u in users
        ])
    return get_batch(home, name)


def check_new_batch(
    home: Home,
    name: str,
    *,
    tenant: str | None,
    dest_endpoint: str | None,
    incremental_hours: float = DEFAULT_INCREMENTAL_HOURS,
) -> None:
    """Raise what :func:`create_batch` would for the batch itself, before any slow work.

    Checks the name (valid, not taken), exactly one existing destination and the interval;
    the source endpoint and the users are checked by :func:`create_batch` as always.
    """
    check_name(name, "batch")
    with home.engine.connect() as c:
        if c.execute(select(batches.c.name).where(batches.c.name == name)).first() is not None:
            raise ConflictError(f"batch {name!r} exists", hint="pick another name")
    _check_destination_and_interval(home, tenant, dest_endpoint, incremental_hours)


def check_destination(home: Home, tenant: str | None, dest_endpoint: str | None) -> None:
    """Raise UsageError unless exactly one destination is given, NotFoundError unless stored."""
    if (tenant is None) == (dest_endpoint is None):
        raise UsageError("a batch needs exactly one destination", hint="give --tenant T or --dest-endpoint E")
    if tenant:
        get_tenant(home, tenant)
    if dest_endpoint:
        get_endpoint(home, dest_endpoint)


def _check_destination_and_interval(home: Home, tenant: str | None, dest_endpoint: str | None,
                                    incremental_hours: float) -> None:
    """Raise UsageError unless exactly one stored destination and a positive interval."""
    check_destination(home, tenant, dest_endpoint)
    if incremental_hours <= 0:
        raise UsageError("--incremental-interval must be positive")


def get_batch(home: Home, name: str) -> Batch:
    with home.engine.connect() as c:
        r = c.execute(select(batches).where(batches.c.name == name)).mappings().first()
    if r is None:
        raise NotFoundError(f"no batch named {name!r}", hint="see `mailtrek batch list`")
    return _batch(r)


def list_batches(home: Home) -> list[Batch]:
    with home.engine.connect() as c:
        rows = c.execute(select(batches).order_by(batches.c.created_at)).mappings().all()
    return [_batch(r) for r in rows]


def _batch(r: Any) -> Batch:
    return Batch(
        name=r["name"], status=BatchStatus(r["status"]), source_endpoint=r["source_endpoint"],
        tenant=r["tenant"], dest_endpoint=r["dest_endpoint"],
        options=BatchOptions(**json.loads(r["options_json"])), notify=json.loads(r["notify_json"]),
        incremental_hours=r["incremental_hours"], created_at=as_utc(r["created_at"]),
        started_at=as_utc(r["started_at"]), completed_at=as_utc(r["completed_at"]),
        notified_status=r["notified_status"], start_at=as_utc(r["start_at"]),
        complete_at=as_utc(r["complete_at"]),
    )


USER_FIELDS = ("email", "status", "items_synced", "items_skipped", "bytes", "last_sync",
               "next_sync", "error", "line", "username", "runs", "items_total", "ever_synced")


def user_rows(home: Home, batch: str) -> list[dict[str, Any]]:
    """Return the users of ``batch`` as dicts (no password), in CSV order."""
    with home.engine.connect() as c:
        rows = c.execute(select(batch_users).where(batch_users.c.batch == batch)
                         .order_by(batch_users.c.line)).mappings().all()
    out = []
    for r in rows:
        d = {k: r[k] for k in USER_FIELDS}
        d["last_sync"] = as_utc(d["last_sync"])
        d["next_sync"] = as_utc(d["next_sync"])
        d["skipped"] = json.loads(r["skipped_json"] or "[]")
        d["items"] = r["items"].split(",") if r["items"] else None  # None: the batch's
        d["pim"] = json.loads(r["pim_json"]) if r["pim_json"] else None
        out.append(d)
    return out


def start_batch(home: Home, name: str) -> Batch:
    """Start a Created batch (idempotent when it already runs)."""
    b = get_batch(home, name)
    if b.status != BatchStatus.CREATED:
        if b.status in (BatchStatus.SYNCING, BatchStatus.SYNCED, BatchStatus.SYNCED_WITH_ERRORS):
            return b
        check_batch_move(b.status, BatchStatus.SYNCING, "start")
    _set_batch(home, name, BatchStatus.SYNCING, started_at=utcnow())
    return get_batch(home, name)


def stop_batch(home: Home, name: str) -> Batch:
    """Stop a batch: no new work starts; running moves are interrupted by the runner."""
    b = get_batch(home, name)
    check_batch_move(b.status, BatchStatus.STOPPED, "stop")
    with home.engine.begin() as c:
        c.execute(update(batches).where(batches.c.name == name).values(status=BatchStatus.STOPPED))
        c.execute(update(batch_users).where(
            batch_users.c.batch == name,
            batch_users.c.status.in_([UserStatus.QUEUED, UserStatus.SYNCED, *ACTIVE_USER]),
        ).values(status=UserStatus.STOPPED, updated_at=utcnow()))
    return get_batch(home, name)


def resume_batch(home: Home, name: str) -> Batch:
    """Resume a Stopped or Failed batch, or retry the failed users of a synced one."""
    b = get_batch(home, name)
    if b.status == BatchStatus.CREATED:
        return start_batch(home, name)
    check_batch_move(b.status, BatchStatus.SYNCING, "resume")
    now = utcnow()
    with home.engine.begin() as c:
        for ever in (True, False):
            c.execute(update(batch_users).where(
                batch_users.c.batch == name,
                batch_users.c.status.in_([UserStatus.STOPPED, UserStatus.FAILED]),
                batch_users.c.ever_synced == ever,
            ).values(status=user_resume_status(ever), next_sync=now, error=None, updated_at=now))
        statuses = c.execute(select(batch_users.c.status).where(batch_users.c.batch == name)).scalars().all()
        new = settle_batch(BatchStatus.SYNCING, [UserStatus(s) for s in statuses])
        c.execute(update(batches).where(batches.c.name == name).values(
            status=new, started_at=b.started_at or now))
    return get_batch(home, name)


def complete_batch(home: Home, name: str) -> Batch:
    """Ask for completion: every synced user gets a final incremental sync, then Completed."""
    b = get_batch(home, name)
    check_batch_move(b.status, BatchStatus.COMPLETING, "complete")
    _set_batch(home, name, BatchStatus.COMPLETING)
    return get_batch(home, name)


def delete_batch(home: Home, name: str) -> int:
    """Delete a batch and its users' stored passwords; return users removed.

    Engine state is kept: it belongs to the route (source to destination mailbox), so a
    new batch for the same users adds nothing already copied. Refuses while a runner holds
    a lease on one of its users. Verifies that no password of the batch is left in the
    database (raises StateError otherwise).
    """
    from mailtrek.errors import StateError

    get_batch(home, name)
    now = utcnow()
    with home.engine.begin() as c:
        if home.engine.dialect.name == "sqlite":
            # Overwrite freed pages too, so deleted ciphertexts do not linger in the file.
            c.exec_driver_sql("PRAGMA secure_delete=ON")
        held = c.execute(select(func.count()).select_from(batch_users).where(
            batch_users.c.batch == name, batch_users.c.lease_expires > now)).scalar_one()
        if held:
            raise ConflictError(f"batch {name!r} has {held} move(s) running",
                             hint=f"run `mailtrek batch stop {name}` and wait for the runner to let go")
        # Blank the ciphertexts first, so even a half-failed delete leaves no passwords.
        c.execute(update(batch_users).where(batch_users.c.batch == name).values(password_enc=None))
        c.execute(delete(user_runs).where(user_runs.c.batch == name))
        n = c.execute(delete(batch_users).where(batch_users.c.batch == name)).rowcount
        c.execute(delete(batches).where(batches.c.name == name))
    with home.engine.connect() as c:
        if home.engine.dialect.name == "sqlite":
            # Older WAL frames (the batch's INSERT) still hold the ciphertexts while any
            # process keeps the database open: fold the log into the file and empty it.
            c.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        left = c.execute(select(func.count()).select_from(batch_users).where(
            batch_users.c.batch == name)).scalar_one()
    if left:
        raise StateError(f"{left} user row(s) of batch {name!r} survived the delete")
    return n


def _set_batch(home: Home, name: str, status: BatchStatus, **values: Any) -> None:
    with home.engine.begin() as c:
        c.execute(update(batches).where(batches.c.name == name).values(status=status, **values))


def settle(home: Home, name: str) -> tuple[BatchStatus, BatchStatus]:
    """Recompute the batch status from its users; return (old, new)."""
    with home.engine.begin() as c:
        old = BatchStatus(c.execute(select(batches.c.status).where(batches.c.name == name)).scalar_one())
        statuses = c.execute(select(batch_users.c.status).where(batch_users.c.batch == name)).scalars().all()
        new = settle_batch(old, [UserStatus(s) for s in statuses])
        if new != old:
            values: dict[str, Any] = {"status": new}
            if new in (BatchStatus.COMPLETED, BatchStatus.COMPLETED_WITH_ERRORS):
                values["completed_at"] = utcnow()
            c.execute(update(batches).where(batches.c.name == name, batches.c.status == old).values(**values))
    return old, new
