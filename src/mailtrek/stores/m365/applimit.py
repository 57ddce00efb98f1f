"""One concurrency limit per app registration, shared by every mailbox it moves.

Outlook "executes up to 4 concurrent requests per app ID, regardless of whether the
requests all access the same mailbox, or access different mailboxes"
(learn.microsoft.com/graph/throttling-limits, "Outlook service limits" -> "Limits per app
ID"). The per-mailbox pacer keeps each mailbox's budgets; this limiter keeps the app's
requests in flight under a cap that adapts like TCP's window: it starts at the documented
4, a 429 halves it (never below 1), and every ``cap`` requests answered without one grow it
by one again, up to the ceiling. Under a tenant whose limit is per mailbox (a stored probe
profile says so) the ceiling is raised and the per-mailbox pacer is the real bound.

Across processes (``mailtrek worker``s of one home) the slots are leases in the state
database (``SlotLeases``; ``state/m365.py`` has the table), so all workers together stay
under the app's ceiling; a lease expires on its own when its holder died.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Protocol

log = logging.getLogger(__name__)

APP_CONCURRENCY = 4  # Outlook's concurrent requests per app ID (throttling-limits page)


class SlotLeases(Protocol):
    """Slots of one app shared between processes (the state database implements it)."""

    ttl: float

    def try_acquire(self, app_id: str, ceiling: int) -> int | None:
        """Take a free slot number below ``ceiling``; None when all are taken."""
        ...

    def renew(self, app_id: str, slot: int) -> None:
        """Push the slot's expiry one ttl into the future."""
        ...

    def release(self, app_id: str, slot: int) -> None:
        """Give the slot back."""
        ...


Lease = tuple[int, float, int]  # (slot, taken or renewed at (monotonic), requests it served)
HAND_OVERS = 16  # then the lease goes back to the database, so other workers get their turn


class AppLimiter:
    """Keep one app's requests in flight under an adaptive cap (see module doc).

    A place freed while others wait goes straight to the longest waiter, with its
    database lease: a busy process keeps its leases instead of giving them back and
    taking them again for every request (renewed after half their ttl); they go back to
    the database once nobody here waits for them, or after ``HAND_OVERS`` requests so that
    other workers waiting for the app get their turn.
    """

    def __init__(self, app_id: str, ceiling: int = APP_CONCURRENCY, *,
                 leases: SlotLeases | None = None, poll: float = 0.02) -> None:
        self.app_id = app_id
        self.ceiling = max(1, ceiling)
        self.cap = float(self.ceiling)
        self.leases = leases
        self._poll = poll
        self._in_flight = 0
        self._since_throttle = 0
        # first come, first served; the result is the lease handed over (or None)
        self._waiters: deque[asyncio.Future[Lease | None]] = deque()
        self._releasing: set[asyncio.Task[None]] = set()
        self._trouble_logged = -1e9
        self.stats = {"requests": 0, "throttled": 0, "peak": 0, "waits": 0, "leases_taken": 0}

    @property
    def in_flight(self) -> int:
        """Requests of this app in flight from this process."""
        return self._in_flight

    async def _take_lease(self) -> Lease | None:
        if self.leases is None:
            return None
        while True:
            try:
                slot = await asyncio.to_thread(self.leases.try_acquire, self.app_id, self.ceiling)
            except Exception as exc:  # the database is away: this process's own cap still holds
                self._lease_trouble(exc)
                return None
            if slot is not None:
                self.stats["leases_taken"] += 1
                return slot, time.monotonic(), 0
            self.stats["waits"] += 1
            await asyncio.sleep(self._poll)

    async def _fresh(self, lease: Lease) -> Lease:
        """Renew a handed-over lease that has lived half its ttl."""
        assert self.leases is not None
        if time.monotonic() - lease[1] < self.leases.ttl / 2:
            return lease[0], lease[1], lease[2] + 1
        try:
            await asyncio.to_thread(self.leases.renew, self.app_id, lease[0])
        except Exception as exc:  # it expires on its own; the request goes on
            self._lease_trouble(exc)
        return lease[0], time.monotonic(), lease[2] + 1

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one of the app's places while a request is sent and answered."""
        lease: Lease | None = None
        if self._in_flight >= int(self.cap) or self._waiters:
            self.stats["waits"] += 1
            waiter: asyncio.Future[Lease | None] = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                lease = await waiter  # _free handed the place over: in_flight counts it
            except BaseException:
                if waiter.done() and not waiter.cancelled():
                    self._in_flight -= 1  # handed over just as we were cancelled
                    self._free(waiter.result())
                else:
                    with suppress(ValueError):
                        self._waiters.remove(waiter)
                raise
        else:
            self._in_flight += 1
        self.stats["peak"] = max(self.stats["peak"], self._in_flight)
        try:
            if self.leases is not None:
                lease = await self._fresh(lease) if lease else await self._take_lease()
            yield
        finally:
            self._in_flight -= 1
            self._free(lease)

    def _free(self, lease: Lease | None) -> None:
        """Hand a freed place (and its lease) to the longest waiter, else return the lease."""
        keep = lease is not None and lease[2] < HAND_OVERS
        while keep and self._waiters and self._in_flight < int(self.cap):
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._in_flight += 1
                waiter.set_result(lease)
                lease = None
                break
        if lease is not None and self.leases is not None:
            task = asyncio.get_running_loop().create_task(
                asyncio.to_thread(self.leases.release, self.app_id, lease[0]))
            self._releasing.add(task)
            task.add_done_callback(self._released)
        self._wake()

    def _released(self, task: asyncio.Task[None]) -> None:
        self._releasing.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._lease_trouble(task.exception())  # type: ignore[arg-type]

    def _lease_trouble(self, exc: BaseException) -> None:
        """Log (once a minute) that the shared leases are unavailable; never raise."""
        now = time.monotonic()
        if now - self._trouble_logged > 60:
            self._trouble_logged = now
            log.warning("App %s: the state database does not answer for the shared request "
                        "places (%s); this process keeps its own limit meanwhile",
                        self.app_id, type(exc).__name__)

    def _wake(self) -> None:
        """Let waiters in while the cap allows (they take their own leases)."""
        while self._waiters and self._in_flight < int(self.cap):
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._in_flight += 1
                waiter.set_result(None)

    async def drain(self) -> None:
        """Wait until every lease given back has reached the database."""
        if self._releasing:
            await asyncio.gather(*list(self._releasing), return_exceptions=True)

    def succeeded(self) -> None:
        """Count an answer that was not a throttle; grow the cap after ``cap`` of them."""
        self.stats["requests"] += 1
        self._since_throttle += 1
        if self.cap < self.ceiling and self._since_throttle >= self.cap:
            self._since_throttle = 0
            self.cap = min(float(self.ceiling), self.cap + 1)
            self._wake()

    def throttled(self) -> None:
        """Halve the cap after a 429 (at least 1 stays)."""
        self.stats["throttled"] += 1
        self._since_throttle = 0
        before = self.cap
        self.cap = max(1.0, self.cap / 2)
        if int(before) != int(self.cap):
            log.info("App %s throttled: at most %d requests in flight for now",
                     self.app_id, int(self.cap))

    def set_ceiling(self, ceiling: int) -> None:
        """Change the ceiling (a stored tenant profile knows better than the default)."""
        self.ceiling = max(1, ceiling)
        self.cap = float(self.ceiling)
        self._wake()
