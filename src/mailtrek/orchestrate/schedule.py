"""When a batch runs: the incremental interval, a start time and a completion time.

``set_schedule`` changes them (CLI ``batch set``, the dashboard, the API);
``run_schedules`` is called by the runner and the workers' maintenance on every pass and
starts or completes the batches whose time has come.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, update

from mailtrek.errors import UsageError
from mailtrek.orchestrate.batches import Batch, complete_batch, get_batch, start_batch
from mailtrek.orchestrate.home import Home, as_utc, utcnow
from mailtrek.orchestrate.states import TERMINAL_BATCH, BatchStatus, UserStatus, can_move
from mailtrek.state.orchestration import batch_users, batches

log = logging.getLogger("mailtrek.schedule")
CLEAR = ("", "none", "never", "-")


def parse_when(text: str | None, opt: str) -> datetime | None:
    """Return an aware UTC datetime from ISO-8601 text, ``now``, or ``+2h``/``+30m``/``+1d``.

    Naive times are UTC. Raises UsageError for anything else.
    """
    if text is None:
        return None
    t = text.strip().lower()
    if t == "now":
        return utcnow()
    if t.startswith("+") and t[-1:] in ("m", "h", "d"):
        try:
            n = float(t[1:-1])
        except ValueError:
            n = -1
        if n >= 0:
            unit = {"m": "minutes", "h": "hours", "d": "days"}[t[-1]]
            return utcnow() + timedelta(**{unit: n})
    try:
        dt = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(f"bad {opt} time {text!r}",
                         hint="use an ISO-8601 time (2026-12-24T18:00, UTC unless it has an offset), "
                              "now, or +30m / +2h / +1d") from None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def set_schedule(home: Home, name: str, *, interval_hours: float | None = None,
                 start_at: str | None = None, complete_at: str | None = None) -> Batch:
    """Change a batch's incremental interval, start time or completion time.

    A new interval reschedules every synced user's next sync from its last one. A start
    time needs a Created batch; a completion time a batch that is not finished. ``none``
    clears a time. Raises UsageError otherwise.
    """
    b = get_batch(home, name)
    values: dict[str, Any] = {}
    if interval_hours is not None:
        if interval_hours <= 0:
            raise UsageError("--interval must be a positive number of hours")
        values["incremental_hours"] = interval_hours
    if start_at is not None:
        if start_at.strip().lower() in CLEAR:
            values["start_at"] = None
        else:
            if b.status != BatchStatus.CREATED:
                raise UsageError(f"batch {name} has already started ({b.status})",
                                 hint="a start time is for batches that are still Created")
            values["start_at"] = parse_when(start_at, "--start-at")
    if complete_at is not None:
        if b.status in TERMINAL_BATCH:
            raise UsageError(f"batch {name} is already {b.status}")
        values["complete_at"] = None if complete_at.strip().lower() in CLEAR else parse_when(complete_at, "--complete-at")
    if not values:
        raise UsageError("nothing to change", hint="give --interval, --start-at or --complete-at")
    with home.engine.begin() as c:
        c.execute(update(batches).where(batches.c.name == name).values(**values))
        if interval_hours is not None:
            rows = c.execute(select(batch_users.c.email, batch_users.c.last_sync).where(
                batch_users.c.batch == name, batch_users.c.status == UserStatus.SYNCED)).all()
            for email, last in rows:
                if last is not None:
                    c.execute(update(batch_users).where(batch_users.c.batch == name, batch_users.c.email == email)
                              .values(next_sync=as_utc(last) + timedelta(hours=interval_hours)))
    return get_batch(home, name)


def run_schedules(home: Home, now: datetime | None = None) -> list[str]:
    """Start and complete the batches whose time has come; return what was done (for the log).

    A completion waits while initial syncs still run (a batch completes from Synced or
    SyncedWithErrors); the MX was checked when the time was set.
    """
    now = now or utcnow()
    done = []
    with home.engine.connect() as c:
        rows = c.execute(select(batches.c.name, batches.c.status, batches.c.start_at, batches.c.complete_at)
                         .where((batches.c.start_at.is_not(None)) | (batches.c.complete_at.is_not(None)))).all()
    for name, status, start_at, complete_at in rows:
        if start_at is not None and status == BatchStatus.CREATED and as_utc(start_at) <= now:
            start_batch(home, name)
            _clear(home, name, "start_at")
            done.append(f"batch {name}: started as scheduled")
            status = BatchStatus.SYNCING
        if complete_at is not None and as_utc(complete_at) <= now:
            if status in TERMINAL_BATCH or status == BatchStatus.COMPLETING:
                _clear(home, name, "complete_at")
            elif can_move("batch", status, BatchStatus.COMPLETING):
                complete_batch(home, name)
                _clear(home, name, "complete_at")
                done.append(f"batch {name}: completion started as scheduled")
    for line in done:
        log.info("%s", line)
    return done


def _clear(home: Home, name: str, column: str) -> None:
    with home.engine.begin() as c:
        c.execute(update(batches).where(batches.c.name == name).values(**{column: None}))
