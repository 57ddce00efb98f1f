"""Distributed workers: mailbox moves as procrastinate jobs on the state's PostgreSQL.

The batch tables stay the truth: a job is only an *attempt* to run one due user. Every
worker runs, besides its jobs, a small maintenance loop (also a procrastinate periodic
task, so it runs even if loops are slow):

1. jobs of dead workers (no heartbeat for ``stalled_seconds``) are marked failed, which
   frees their mailbox lock;
2. every due user (:func:`mailtrek.orchestrate.runner.find_due`: queued, interrupted, or
   due for its incremental sync) gets a job, deduplicated by a ``queueing_lock`` per
   mailbox;
3. batch status changes are mailed (claimed in the database, so once).

A job claims the user's lease exactly like ``mailtrek run`` (so runners and workers can
even share a state), runs the move, and records the outcome. procrastinate's ``lock`` per
mailbox keeps two jobs of one mailbox from running at once; the lease keeps it so even
against a plain runner. Endpoint limits are counted from live leases in the database
(see ``Runner._slot_free``), so they hold across all workers; a job that finds no free
slot ends and its user is re-queued by the next maintenance pass.

A database restart ends procrastinate's worker loop, which cancels its jobs. The moves
themselves go on (a job only *waits* for its move; the runner waits for the database
around every write), keep their leases, and record their outcome when the database is
back; the worker loop starts again after ``RESTART_DELAY``. Only a stop (signal) cancels
moves. When a move ends, the next due users are queued at once, so a job that found its
endpoint's limit full does not leave the slot idle until the next scan.

A worker killed mid-mailbox: its procrastinate heartbeat stops, the job is failed after
``stalled_seconds``, its lease is free at once on the same host (dead pid) or after the
lease time elsewhere, and the next job re-runs the mailbox. The copy engine is idempotent
(append intents recorded first, re-matched by fingerprint), so nothing is lost or doubled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from dataclasses import dataclass, field

import procrastinate
from procrastinate import exceptions as pexc
from sqlalchemy.exc import OperationalError

from mailtrek.errors import StateError
from mailtrek.orchestrate.home import Home
from mailtrek.orchestrate.runner import Runner, find_due

log = logging.getLogger("mailtrek.worker")

QUEUE = "mailtrek"
MOVE_TASK = "mailtrek.move"
MAINTAIN_TASK = "mailtrek.maintain"
RESTART_DELAY = 2  # seconds before a worker whose database went away starts again


def conninfo_of(url: str) -> str:
    """Return a libpq URL for a SQLAlchemy PostgreSQL URL (drops the ``+driver`` part)."""
    scheme, sep, rest = url.partition("://")
    return ("postgresql" if scheme.startswith("postgres") else scheme) + sep + rest


def mailbox_lock(batch: str, email: str) -> str:
    return f"mailbox:{batch}/{email}"


@dataclass
class WorkerContext:
    """What the tasks of one worker process share."""

    home: Home
    runner: Runner
    stalled_seconds: float
    moves: int = 0
    skipped: int = 0
    busy: set[tuple[str, str]] = field(default_factory=set)
    stopping: bool = False  # set on a stop: only then do cancelled jobs cancel their moves
    wake: asyncio.Event = field(default_factory=asyncio.Event)  # a slot freed: scan for due users now


_ctx: WorkerContext | None = None


def make_app(home: Home) -> procrastinate.App:
    """Return a procrastinate app on ``home``'s PostgreSQL with mailtrek's tasks."""
    if home.engine.dialect.name != "postgresql":
        raise StateError("workers need the state on PostgreSQL",
                         hint="mailtrek state migrate-to postgresql://... --use, or --state URL")
    url = home.engine.url.render_as_string(hide_password=False)
    connector = procrastinate.PsycopgConnector(
        conninfo=conninfo_of(url),
        # procrastinate checks pooled connections on checkout, so after a database restart
        # the pool replaces dead ones; reconnect_timeout lets it wait for a slow restart.
        min_size=1, max_size=4, reconnect_timeout=300)
    app = procrastinate.App(connector=connector)
    retry = procrastinate.RetryStrategy(max_attempts=5, wait=3, exponential_wait=2,
                                        retry_exceptions={OperationalError, StateError, OSError})

    @app.task(name=MOVE_TASK, queue=QUEUE, retry=retry, pass_context=False)
    async def move(batch: str, email: str) -> str:
        return await run_move(batch, email)

    @app.periodic(cron="* * * * *", periodic_id="due")
    @app.task(name=MAINTAIN_TASK, queue=QUEUE, queueing_lock=MAINTAIN_TASK, pass_context=False)
    async def maintain(timestamp: int) -> None:
        await maintenance(app)

    return app


async def run_move(batch: str, email: str) -> str:
    """The job: run one due user here, if it is still due and a slot is free."""
    ctx = _require()
    due = next((d for d in find_due(ctx.home) if d.batch == batch and d.email == email), None)
    if due is None:
        return "not due"  # done meanwhile, stopped, or running elsewhere
    key = (batch, email)
    ctx.busy.add(key)
    task = asyncio.create_task(ctx.runner.run_due(due), name=f"job {batch}/{email}")
    try:
        ran = await asyncio.shield(task)
    except asyncio.CancelledError:
        if ctx.stopping:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            ctx.busy.discard(key)
            raise
        # Not a stop: procrastinate's worker lost its database and cancels its jobs. The
        # move goes on here under its lease and records itself when the database is back.
        log.warning("%s/%s: job queue connection lost; the move goes on", batch, email)
        task.add_done_callback(lambda t: _moved_on(ctx, key, t))
        raise
    ctx.busy.discard(key)
    ctx.wake.set()
    if ran:
        ctx.moves += 1
        return "ran"
    ctx.skipped += 1
    return "no slot"


def _moved_on(ctx: WorkerContext, key: tuple[str, str], task: asyncio.Task[bool]) -> None:
    """A move that outlived its job ended: free its mailbox for the next scan."""
    ctx.busy.discard(key)
    ctx.wake.set()
    if task.cancelled():
        return
    if task.exception() is not None:  # the runner records failures itself; this is a bug
        log.error("%s/%s: move ended with %r", *key, task.exception())
    elif task.result():
        ctx.moves += 1


async def enqueue_due(app: procrastinate.App, home: Home) -> int:
    """Defer one job per due user that has none waiting; return how many were deferred."""
    n = 0
    for due in find_due(home):
        lock = mailbox_lock(due.batch, due.email)
        try:
            await app.configure_task(MOVE_TASK, lock=lock, queueing_lock=lock).defer_async(
                batch=due.batch, email=due.email)
            n += 1
        except pexc.AlreadyEnqueued:
            pass
    return n


async def fail_stalled(app: procrastinate.App, seconds: float) -> int:
    """Mark jobs of workers silent for ``seconds`` failed (frees their mailbox locks)."""
    n = 0
    for job in await app.job_manager.get_stalled_jobs(queue=QUEUE, seconds_since_heartbeat=seconds):
        if _ctx is not None and job.task_kwargs.get("batch") is not None and \
                (job.task_kwargs["batch"], job.task_kwargs.get("email")) in _ctx.busy:
            continue  # ours and alive (our own heartbeat may just be late)
        with contextlib.suppress(Exception):  # another worker may have been quicker
            await app.job_manager.finish_job(job, status=procrastinate.jobs.Status.FAILED, delete_job=False)
            log.warning("job %s (%s) of a dead worker failed; its mailbox goes back to the queue",
                        job.id, job.task_kwargs.get("email"))
            n += 1
    await app.job_manager.prune_stalled_workers(seconds)
    return n


async def maintenance(app: procrastinate.App) -> None:
    """One pass: free dead workers' jobs, queue due users, mail status changes."""
    ctx = _require()
    await fail_stalled(app, ctx.stalled_seconds)
    ctx.runner._run_schedules()  # batches whose start or completion time has come
    await enqueue_due(app, ctx.home)
    await ctx.runner._notify_changes()


def _require() -> WorkerContext:
    if _ctx is None:
        raise RuntimeError("mailtrek worker context not set (run through run_worker)")
    return _ctx


async def run_worker(home: Home, *, concurrency: int = 8, poll_seconds: float = 5.0,
                     stalled_seconds: float = 30.0, heartbeat_seconds: float | None = None,
                     stop: asyncio.Event | None = None) -> WorkerContext:
    """Run a worker until ``stop`` is set or a signal ends it; return its counters."""
    global _ctx
    runner = Runner(home)
    _ctx = ctx = WorkerContext(home=home, runner=runner, stalled_seconds=stalled_seconds)
    app = make_app(home)
    heartbeat = heartbeat_seconds or max(1.0, stalled_seconds / 3)
    async with app.open_async():
        log.info("worker %s started (%d at once)", runner.owner, concurrency)
        loop = asyncio.create_task(_maintenance_loop(app, poll_seconds, ctx.wake))
        # Our own signal handling: procrastinate's worker also ends when its database goes
        # away, and only a signal (or ``stop``) means "stop"; anything else means "restart".
        stop = stop or asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                asyncio.get_running_loop().add_signal_handler(sig, stop.set)
        stopper = asyncio.create_task(stop.wait())
        try:
            while True:
                worker = asyncio.create_task(app.run_worker_async(
                    queues=[QUEUE], concurrency=concurrency, name=runner.owner, wait=True,
                    fetch_job_polling_interval=poll_seconds, update_heartbeat_interval=heartbeat,
                    stalled_worker_timeout=stalled_seconds, shutdown_graceful_timeout=5,
                    delete_jobs="successful", install_signal_handlers=False))
                await asyncio.wait([worker, stopper], return_when=asyncio.FIRST_COMPLETED)
                if stop.is_set():
                    ctx.stopping = True
                    worker.cancel()  # procrastinate stops gracefully, then cancels running moves
                    await asyncio.gather(worker, return_exceptions=True)
                    break
                error = worker.exception()
                if error is not None and not _connection_lost(error):
                    raise error
                # The database went away (restart, failover): procrastinate's worker gives
                # up; ours waits and starts it again. Interrupted moves resume from state.
                log.warning("job queue worker ended (%s); restarting it in %ss",
                            error.__class__.__name__ if error else "database gone", RESTART_DELAY)
                await asyncio.sleep(RESTART_DELAY)
        finally:
            loop.cancel()
            stopper.cancel()
            await asyncio.gather(loop, stopper, return_exceptions=True)
            await runner._shutdown()
            log.info("worker %s stopped: %d moves run, %d skipped for limits", runner.owner,
                     ctx.moves, ctx.skipped)
    return ctx


def _connection_lost(e: BaseException | None) -> bool:
    """True for a lost or refused database connection, whoever wrapped it."""
    import psycopg

    from mailtrek.orchestrate.runner import database_unavailable

    while e is not None:
        if isinstance(e, psycopg.OperationalError | pexc.ConnectorException) or database_unavailable(e):
            return True
        e = e.__cause__ or e.__context__
    return False


async def _maintenance_loop(app: procrastinate.App, every: float, wake: asyncio.Event) -> None:
    while True:
        wake.clear()
        try:
            await maintenance(app)
        except Exception as e:  # database away (restart): keep trying, the pool reconnects
            log.warning("maintenance pass failed (%s); retrying", e.__class__.__name__)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), every)
