"""The scheduler: find due work, lease it, run many mailbox moves at once, record outcomes.

Crash safety: before a move starts, its user row is *leased* (owner + expiry in the
database) and the lease is renewed while it runs. A runner killed with ``kill -9`` leaves
an expired (or, on this host, orphaned) lease behind; the next runner re-runs that user
from the start of its phase. That is safe because the engine is idempotent: it copies
only what the destination does not have yet.

Concurrency: per source endpoint at most ``max_concurrent_migrations`` initial syncs and
``max_concurrent_incremental`` incremental/final syncs run at once (Exchange's model);
each move opens at most ``connections_per_mailbox`` connections to the source.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import and_, case, func, or_, select, text, update

from mailtrek.errors import MailtrekError
from mailtrek.orchestrate.batches import get_batch, list_batches, settle
from mailtrek.orchestrate.endpoints import get_endpoint, get_tenant
from mailtrek.orchestrate.home import Home, utcnow
from mailtrek.orchestrate.mover import MoveJob, Mover, move_mailbox
from mailtrek.orchestrate.notify import Notifier
from mailtrek.orchestrate.states import BatchStatus, UserStatus
from mailtrek.secrets import redact
from mailtrek.state.db import MailboxState
from mailtrek.state.orchestration import batch_users, batches, user_runs
from mailtrek.sync.options import CopyReport

log = logging.getLogger("mailtrek.runner")

LEASE_ENV = "MAILTREK_LEASE_SECONDS"
DEFAULT_LEASE = 120.0
PROGRESS_ENV = "MAILTREK_PROGRESS_SECONDS"
DEFAULT_PROGRESS = 2.0  # how often a running sync writes its live counts
PHASE_STATUS = {"initial": UserStatus.SYNCING, "incremental": UserStatus.INCREMENTAL_SYNCING,
                "final": UserStatus.COMPLETING}
RUNNING_BATCHES = (BatchStatus.SYNCING, BatchStatus.SYNCED, BatchStatus.SYNCED_WITH_ERRORS,
                   BatchStatus.COMPLETING)
INCREMENTAL_BATCHES = (BatchStatus.SYNCING, BatchStatus.SYNCED, BatchStatus.SYNCED_WITH_ERRORS)
RETRIES = 2  # extra attempts for errors a retry may cure (dropped links, timeouts)
DB_RETRIES = 15  # waits (2..10 s each) for a restarting state database before giving up


@dataclass(frozen=True, slots=True)
class Due:
    batch: str
    email: str
    status: UserStatus  # the status the row has now
    phase: str
    endpoint: str
    lease_owner: str | None


def new_owner() -> str:
    """Return a lease owner id: host, pid and a random part (pids get reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def owner_is_dead(owner: str | None) -> bool:
    """True when ``owner`` was a process on this host that no longer exists."""
    if not owner:
        return False
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def database_unavailable(e: BaseException | None) -> bool:
    """True when ``e`` (or what caused it) is a lost or refused database connection."""
    from sqlalchemy.exc import DBAPIError, OperationalError

    while e is not None:
        if isinstance(e, OperationalError) or (isinstance(e, DBAPIError) and e.connection_invalidated):
            return True
        e = e.__cause__ or e.__context__
    return False


def find_due(home: Home, now: Any = None) -> list[Due]:
    """Return the user rows that need work now and whose lease is free or stale (pure read)."""
    now = now or utcnow()
    b, u = batches.c, batch_users.c
    q = (
        select(u.batch, u.email, u.status, u.lease_owner, u.lease_expires, b.status.label("bstatus"),
               b.source_endpoint)
        .join(batches, b.name == u.batch)
        .where(b.status.in_([s.value for s in RUNNING_BATCHES]))
        .where(or_(
            u.status.in_([UserStatus.QUEUED, UserStatus.SYNCING, UserStatus.INCREMENTAL_SYNCING,
                          UserStatus.COMPLETING]),
            and_(u.status == UserStatus.SYNCED, b.status == BatchStatus.COMPLETING),
            and_(u.status == UserStatus.SYNCED, u.next_sync <= now),
        ))
        .order_by(u.batch, u.line)
    )
    out = []
    with home.engine.connect() as c:
        for r in c.execute(q).mappings():
            if not (r["lease_owner"] is None or _expired(r["lease_expires"], now)
                    or owner_is_dead(r["lease_owner"])):
                continue
            status = UserStatus(r["status"])
            if status in (UserStatus.QUEUED, UserStatus.SYNCING):
                phase = "initial"
            elif status == UserStatus.COMPLETING or r["bstatus"] == BatchStatus.COMPLETING:
                phase = "final"
            else:
                phase = "incremental"
            out.append(Due(r["batch"], r["email"], status, phase, r["source_endpoint"], r["lease_owner"]))
    return out


def _expired(expires: Any, now: Any) -> bool:
    from mailtrek.orchestrate.home import as_utc

    return expires is None or as_utc(expires) < now


class Runner:
    """Run due mailbox moves until idle (``until_idle``) or until asked to stop."""

    def __init__(self, home: Home, *, mover: Mover = move_mailbox, notifier: Notifier | None = None,
                 lease_seconds: float | None = None, poll_seconds: float = 5.0,
                 owner: str | None = None) -> None:
        self.home = home
        self.mover = mover
        self.notifier = notifier or Notifier.from_home(home)
        self.lease = timedelta(seconds=lease_seconds or float(os.environ.get(LEASE_ENV, DEFAULT_LEASE)))
        self.poll = poll_seconds
        self.retry_delay = 2.0  # seconds, times the attempt number
        self.owner = owner or new_owner()
        self.stopping = asyncio.Event()
        self._tasks: dict[tuple[str, str], tuple[asyncio.Task[None], Due]] = {}
        self._wake = asyncio.Event()
        self._blocked = False
        self.progress_every = float(os.environ.get(PROGRESS_ENV, DEFAULT_PROGRESS))
        self._copied: dict[tuple[str, str], tuple[int, int]] = {}  # messages, bytes this run
        self._base: dict[tuple[str, str], tuple[int, int]] = {}  # state's messages, bytes at start
        self._total: dict[tuple[str, str], int] = {}  # the source's messages, once planned
        self._run_id: dict[tuple[str, str], int] = {}  # the user_runs row of the running sync
        self._route: dict[tuple[str, str], str] = {}  # engine-state key of the running sync

    def stop(self) -> None:
        """Ask the runner to stop: no new work; running moves are interrupted and released."""
        self.stopping.set()
        self._wake.set()

    async def run(self, *, until_idle: bool = False) -> None:
        """Schedule until stopped (or, with ``until_idle``, until nothing is due or running)."""
        log.info("runner %s started (lease %ss)", self.owner, int(self.lease.total_seconds()))
        try:
            while not self.stopping.is_set():
                self._run_schedules()
                await self._notify_changes()
                started = self._start_due()
                if until_idle and not self._tasks and not started and not self._blocked:
                    break
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=self.poll)
        finally:
            await self._shutdown()
            await self._notify_changes()
            log.info("runner %s stopped", self.owner)

    # -- scheduling --------------------------------------------------------------------
    def _run_schedules(self) -> None:
        """Start and complete batches whose scheduled time has come."""
        from mailtrek.orchestrate.schedule import run_schedules

        try:
            run_schedules(self.home)
        except MailtrekError as e:  # a schedule that cannot run must not stop the runner
            log.warning("schedule: %s", redact(str(e)))

    def _start_due(self) -> int:
        self._blocked = False
        started = 0
        limits: dict[tuple[str, str], int] = {}
        for due in find_due(self.home):
            key = (due.batch, due.email)
            if key in self._tasks:
                continue
            kind = "initial" if due.phase == "initial" else "incremental"
            if (due.endpoint, kind) not in limits:
                ep = get_endpoint(self.home, due.endpoint)
                limits[due.endpoint, "initial"] = ep.max_concurrent_migrations
                limits[due.endpoint, "incremental"] = ep.max_concurrent_incremental
            running = sum(1 for _, d in self._tasks.values() if d.endpoint == due.endpoint
                          and ("initial" if d.phase == "initial" else "incremental") == kind)
            if running >= limits[due.endpoint, kind]:
                self._blocked = True  # "Queued": every endpoint slot is in use
                continue
            if not self._claim(due):
                continue
            task = asyncio.create_task(self._run_one(due), name=f"move {due.batch}/{due.email}")
            self._tasks[key] = (task, due)
            started += 1
        return started

    def _claim(self, due: Due) -> bool:
        """Lease ``due``'s row and set its phase status; False when someone else was quicker."""
        now = utcnow()
        u = batch_users.c
        cond = [u.batch == due.batch, u.email == due.email, u.status == due.status]
        if due.lease_owner is None:
            cond.append(or_(u.lease_owner.is_(None), u.lease_expires < now))
        else:  # stale: only take it if nobody re-leased it since we looked
            cond.append(u.lease_owner == due.lease_owner)
        with self.home.engine.begin() as c:
            if not self._slot_free(c, due, now):
                self._blocked = True  # every slot of the endpoint is held, maybe by another process
                return False
            n = c.execute(update(batch_users).where(*cond).values(
                lease_owner=self.owner, lease_expires=now + self.lease,
                status=PHASE_STATUS[due.phase], updated_at=now)).rowcount
        if n == 1:
            with self.home.engine.begin() as c:
                # A run a killed runner left "running" ended when it died: we hold the lease now.
                c.execute(update(user_runs).where(
                    user_runs.c.batch == due.batch, user_runs.c.email == due.email,
                    user_runs.c.outcome == "running").values(outcome="interrupted", finished_at=now))
                pk = c.execute(user_runs.insert().values(
                    batch=due.batch, email=due.email, phase=due.phase, started_at=now, outcome="running",
                    items_copied=0, bytes_copied=0)).inserted_primary_key
                assert pk is not None
                self._run_id[due.batch, due.email] = int(pk[0])
            again = " (again: the previous run was interrupted)" if due.status in PHASE_STATUS.values() else ""
            log.info("%s/%s: %s sync started%s", due.batch, due.email, due.phase, again)
        return n == 1

    def _slot_free(self, c: Any, due: Due, now: Any) -> bool:
        """True while fewer live leases than the endpoint's limit exist, across all processes.

        The leases in the database are the semaphore: every runner and worker counts them,
        so the limits hold however many processes share the state. On PostgreSQL an advisory
        lock per endpoint (held to the end of the claim's transaction) makes count-then-claim
        atomic; SQLite serialises writers itself.
        """
        initial = due.phase == "initial"
        ep = get_endpoint(self.home, due.endpoint)
        limit = ep.max_concurrent_migrations if initial else ep.max_concurrent_incremental
        statuses = [UserStatus.SYNCING] if initial else [UserStatus.INCREMENTAL_SYNCING, UserStatus.COMPLETING]
        if c.dialect.name == "postgresql":
            c.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": f"mailtrek-endpoint:{due.endpoint}"})
        u, b = batch_users.c, batches.c
        held = c.execute(
            select(func.count()).select_from(batch_users.join(batches, b.name == u.batch)).where(
                b.source_endpoint == due.endpoint, u.status.in_([s.value for s in statuses]),
                u.lease_owner.is_not(None), u.lease_expires >= now,
                or_(u.batch != due.batch, u.email != due.email))).scalar_one()
        return int(held) < limit

    async def run_due(self, due: Due) -> bool:
        """Claim ``due`` and run it to the end here; False when it was not claimable.

        For job engines (``mailtrek worker``): one job runs one user, while the lease,
        heartbeat, limits and recording stay the scheduler's.
        """
        key = (due.batch, due.email)
        if key in self._tasks or not self._claim(due):
            return False
        task = asyncio.create_task(self._run_one(due), name=f"move {due.batch}/{due.email}")
        self._tasks[key] = (task, due)
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            task.cancel()  # the job itself was cancelled: interrupt and release the move
            await asyncio.gather(task, return_exceptions=True)
            raise
        return True

    async def _run_one(self, due: Due) -> None:
        heartbeat = None
        try:
            # Database calls run on worker threads: a slow database (a lock, a busy server)
            # must not stall the event loop every other move's connections run on.
            job = await asyncio.to_thread(self._job, due)
            key = (due.batch, due.email)
            self._route[key] = job.mailbox
            self._base[key] = await asyncio.to_thread(
                MailboxState(self.home.engine, job.mailbox).totals)
            job.progress = self._progress_of(due)
            heartbeat = asyncio.create_task(self._heartbeat(due))
            report = await self._attempts(job)
        except asyncio.CancelledError:
            self._release(due)
            raise
        except MailtrekError as e:
            await asyncio.to_thread(self._record_failure, due, e)
        except Exception as e:  # a bug must fail one mailbox, not the runner
            log.exception("%s/%s: unexpected error", due.batch, due.email)
            await asyncio.to_thread(self._record_failure, due, e)
        else:
            await asyncio.to_thread(self._record_success, due, report)
        finally:
            if heartbeat is not None:
                heartbeat.cancel()
            key = (due.batch, due.email)
            self._tasks.pop(key, None)
            for d in (self._copied, self._base, self._total, self._run_id, self._route):
                d.pop(key, None)  # type: ignore[attr-defined]
            self._wake.set()
        settle(self.home, due.batch)  # synchronous: the run loop must see the batch settled

    async def _attempts(self, job: MoveJob) -> CopyReport:
        attempt = db_waits = 0
        while True:
            try:
                return await self.mover(self.home, job)
            except Exception as e:
                if database_unavailable(e) and db_waits < DB_RETRIES:
                    # The state database restarts or fails over: wait for it, then go on
                    # (the engine resumes from what state and the destination hold).
                    db_waits += 1
                    log.warning("%s/%s: state database unavailable; retrying in %ds", job.batch.name,
                                job.email, min(2 * db_waits, 10))
                    await asyncio.sleep(min(2 * db_waits, 10))
                    continue
                if not isinstance(e, MailtrekError) or not e.retryable or attempt == RETRIES:
                    raise
                attempt += 1
                delay = self.retry_delay * attempt
                log.warning("%s/%s: %s; retrying in %.0fs", job.batch.name, job.email,
                            redact(str(e)), delay)
                await asyncio.sleep(delay)

    def _job(self, due: Due) -> MoveJob:
        batch = get_batch(self.home, due.batch)
        with self.home.engine.connect() as c:
            r = c.execute(select(batch_users).where(batch_users.c.batch == due.batch,
                                                    batch_users.c.email == due.email)).mappings().one()
        if not r["password_enc"]:
            raise MailtrekError("the stored password is gone (batch deleted?)")
        return MoveJob(
            batch=batch, email=due.email, username=r["username"],
            password=self.home.box.decrypt(r["password_enc"]), user_root=r["user_root"],
            phase=due.phase, source=get_endpoint(self.home, batch.source_endpoint),
            tenant=get_tenant(self.home, batch.tenant) if batch.tenant else None,
            dest_endpoint=get_endpoint(self.home, batch.dest_endpoint) if batch.dest_endpoint else None,
        )

    def _progress_of(self, due: Due) -> Callable[..., None]:
        """Count the engine's copied messages and learn the source's total from its plan,
        so `batch show` and the dashboard move during a long sync."""
        key = (due.batch, due.email)
        self._copied[key] = (0, 0)

        def progress(event: str, **fields: Any) -> None:
            if event == "message":
                n, b = self._copied.get(key, (0, 0))
                self._copied[key] = (n + 1, b + int(fields.get("size") or 0))
            elif event == "plan":
                # What state already holds plus what this run will copy: the whole source.
                self._total[key] = self._base.get(key, (0, 0))[0] + int(fields.get("messages") or 0)
        return progress

    def live_counts(self, due: Due) -> tuple[int, int, int | None]:
        """Return (messages, bytes, known total) of ``due``'s mailbox right now."""
        key = (due.batch, due.email)
        (n0, b0), (n, b) = self._base.get(key, (0, 0)), self._copied.get(key, (0, 0))
        return n0 + n, b0 + b, self._total.get(key)

    async def _heartbeat(self, due: Due) -> None:
        """Write live counts every few seconds and renew the lease; interrupt the move when
        the user or its batch was stopped, removed or deleted."""
        u = batch_users.c
        key = (due.batch, due.email)
        every = max(0.2, min(self.progress_every, self.lease.total_seconds() / 4))
        while True:
            await asyncio.sleep(every)
            now = utcnow()
            items, size, total = self.live_counts(due)
            values: dict[str, Any] = {
                "lease_expires": now + self.lease,
                # Never backwards: a reader must not see the count drop between two looks.
                "items_synced": case((u.items_synced > items, u.items_synced), else_=items),
                "bytes": case((u.bytes > size, u.bytes), else_=size)}
            if total is not None:
                values["items_total"] = max(total, items)
            try:
                n = await asyncio.to_thread(self._beat, due, values, self._run_id.get(key),
                                            self._copied.get(key, (0, 0)))
            except Exception as e:
                if not database_unavailable(e):
                    raise
                continue  # keep beating: the database is restarting, the lease outlives a blip
            if n != 1:
                log.info("%s/%s: %s; interrupting", due.batch, due.email, self._why_lost(due))
                entry = self._tasks.get((due.batch, due.email))
                if entry:
                    entry[0].cancel()
                return

    def _beat(self, due: Due, values: dict[str, Any], run_id: int | None,
              copied: tuple[int, int]) -> int:
        """Renew the lease and write the live counts (on a worker thread); return the rows
        still ours (0: the lease is gone)."""
        u = batch_users.c
        with self.home.engine.begin() as c:
            n = int(c.execute(update(batch_users).where(
                u.batch == due.batch, u.email == due.email, u.lease_owner == self.owner,
                u.status == PHASE_STATUS[due.phase]).values(**values)).rowcount)
            if run_id is not None:
                c.execute(update(user_runs).where(user_runs.c.id == run_id).values(
                    items_copied=copied[0], bytes_copied=copied[1]))
        return n

    def _why_lost(self, due: Due) -> str:
        """Say why our lease is gone: another runner took it over, or a command changed the user."""
        u = batch_users.c
        try:
            with self.home.engine.connect() as c:
                owner = c.execute(select(u.lease_owner).where(
                    u.batch == due.batch, u.email == due.email)).scalar_one_or_none()
        except Exception:
            return "lease lost"
        if owner and owner != self.owner:
            return f"lease taken over by {owner} (ours had expired)"
        return "stopped by a command"

    # -- recording -----------------------------------------------------------------------
    def _finish(self, due: Due, values: dict[str, Any], status: UserStatus,
                run: dict[str, Any] | None = None) -> None:
        u = batch_users.c
        now = utcnow()
        with self.home.engine.begin() as c:
            self._end_run(c, due, now, run or {"outcome": "ok" if status != UserStatus.FAILED else "failed"})
            # Counters are ours while we hold the lease; the status only if no command changed it.
            c.execute(update(batch_users).where(
                u.batch == due.batch, u.email == due.email, u.lease_owner == self.owner,
                u.status == PHASE_STATUS[due.phase]).values(status=status))
            c.execute(update(batch_users).where(
                u.batch == due.batch, u.email == due.email, u.lease_owner == self.owner,
            ).values(lease_owner=None, lease_expires=None, updated_at=now, **values))

    def _end_run(self, c: Any, due: Due, now: Any, values: dict[str, Any]) -> None:
        """Close the user_runs row of ``due``'s sync (outcome, counts, error)."""
        run_id = self._run_id.pop((due.batch, due.email), None)
        if run_id is None:
            return
        copied, size = self._copied.get((due.batch, due.email), (0, 0))
        c.execute(update(user_runs).where(user_runs.c.id == run_id).values(
            **{"items_copied": copied, "bytes_copied": size, **values, "finished_at": now}))

    def _record_success(self, due: Due, report: CopyReport) -> None:
        now = utcnow()
        batch = get_batch(self.home, due.batch)
        state = MailboxState(self.home.engine, self._route[due.batch, due.email])
        items, size = state.totals()
        with self.home.engine.connect() as c:
            prev = c.execute(select(batch_users.c.runs).where(
                batch_users.c.batch == due.batch, batch_users.c.email == due.email)).one()
        problems = "; ".join(redact(e) for e in report.errors) or None
        skipped = [asdict(s) for s in report.skipped]
        status = UserStatus.COMPLETED if due.phase == "final" else UserStatus.SYNCED
        self._finish(due, {
            # Items and bytes both count what the destination holds (copied or found there).
            "ever_synced": True, "items_synced": items, "items_skipped": len(skipped),
            "bytes": size, "items_total": items + len(skipped), "last_sync": now,
            # A quota that held mail back (Gmail: 2,500 MB a day) sets the next run.
            "next_sync": report.resume_at or now + timedelta(hours=batch.incremental_hours),
            "error": problems,
            "skipped_json": json.dumps(skipped), "runs": (prev.runs or 0) + 1,
        }, status, {"outcome": "ok", "items_copied": report.total("copied"),
                    "bytes_copied": report.total("bytes_copied"), "error": problems})
        log.info("%s/%s: %s sync done: %d copied, %d already there, %d skipped -> %s", due.batch,
                 due.email, due.phase, report.total("copied"),
                 report.total("already") + report.total("adopted"), len(skipped), status)

    def _record_failure(self, due: Due, e: BaseException) -> None:
        text = redact(str(e)) or e.__class__.__name__
        with self.home.engine.connect() as c:
            runs = c.execute(select(batch_users.c.runs).where(
                batch_users.c.batch == due.batch, batch_users.c.email == due.email)).scalar_one_or_none() or 0
        # A failed user is not retried by itself: no next sync until a retry or resume.
        self._finish(due, {"error": text, "next_sync": None, "runs": runs + 1}, UserStatus.FAILED,
                     {"outcome": "failed", "error": text})
        log.warning("%s/%s: %s sync failed: %s", due.batch, due.email, due.phase, text)

    def _release(self, due: Due) -> None:
        """Let go of an interrupted move; its status stays, so it is re-run later."""
        u = batch_users.c
        now = utcnow()
        with self.home.engine.begin() as c:
            self._end_run(c, due, now, {"outcome": "interrupted"})
            c.execute(update(batch_users).where(
                u.batch == due.batch, u.email == due.email, u.lease_owner == self.owner,
            ).values(lease_owner=None, lease_expires=None, updated_at=now))
        log.info("%s/%s: interrupted; will resume", due.batch, due.email)

    async def _shutdown(self) -> None:
        tasks = [t for t, _ in self._tasks.values()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        clients, self.home.graph_clients = self.home.graph_clients, {}
        for client in clients.values():
            with contextlib.suppress(Exception):
                await client.close()

    async def _notify_changes(self) -> None:
        """Mail the notify addresses about batch status changes not mailed yet."""
        for b in list_batches(self.home):
            if b.status == BatchStatus.CREATED or b.status == b.notified_status:
                continue
            with self.home.engine.begin() as c:
                # Claim the notification first: two runners must not both send it.
                n = c.execute(update(batches).where(
                    batches.c.name == b.name, batches.c.status == b.status,
                    or_(batches.c.notified_status.is_(None), batches.c.notified_status != b.status),
                ).values(notified_status=b.status)).rowcount
            if n == 1 and b.notify:
                await self.notifier.batch_changed(self.home, b)
