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
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Protocol

log = logging.getLogger(__name__)

APP_CONCURRENCY = 4  # Outlook's concurrent requests per app ID (throttling-limits page)


class SlotLeases(Protocol):
    """Slots of one app shared between processes (the state database implements it)."""

    def try_acquire(self, app_id: str, ceiling: int) -> int | None:
        """Take a free slot number below ``ceiling``; None when all are taken."""
        ...

    def release(self, app_id: str, slot: int) -> None:
        """Give the slot back."""
        ...


class AppLimiter:
    """Keep one app's requests in flight under an adaptive cap (see module doc)."""

    def __init__(self, app_id: str, ceiling: int = APP_CONCURRENCY, *,
                 leases: SlotLeases | None = None, poll: float = 0.02) -> None:
        self.app_id = app_id
        self.ceiling = max(1, ceiling)
        self.cap = float(self.ceiling)
        self.leases = leases
        self._poll = poll
        self._in_flight = 0
        self._since_throttle = 0
        self._waiters: deque[asyncio.Future[None]] = deque()  # first come, first served
        self.stats = {"requests": 0, "throttled": 0, "peak": 0, "waits": 0}

    @property
    def in_flight(self) -> int:
        """Requests of this app in flight from this process."""
        return self._in_flight

    async def _take_lease(self) -> int | None:
        if self.leases is None:
            return None
        while True:
            slot = await asyncio.to_thread(self.leases.try_acquire, self.app_id, self.ceiling)
            if slot is not None:
                return slot
            self.stats["waits"] += 1
            await asyncio.sleep(self._poll)

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one of the app's places while a request is sent and answered."""
        if self._in_flight >= int(self.cap) or self._waiters:
            self.stats["waits"] += 1
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter  # _wake hands the place over: in_flight already counts it
            except BaseException:
                if waiter.done() and not waiter.cancelled():
                    self._in_flight -= 1  # handed over just as we were cancelled
                    self._wake()
                else:
                    with suppress(ValueError):
                        self._waiters.remove(waiter)
                raise
        else:
            self._in_flight += 1
        self.stats["peak"] = max(self.stats["peak"], self._in_flight)
        lease: int | None = None
        try:
            lease = await self._take_lease()
            yield
        finally:
            if lease is not None and self.leases is not None:
                await asyncio.to_thread(self.leases.release, self.app_id, lease)
            self._in_flight -= 1
            self._wake()

    def _wake(self) -> None:
        """Hand free places to the longest waiters (each counted as in flight at once)."""
        while self._waiters and self._in_flight < int(self.cap):
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._in_flight += 1
                waiter.set_result(None)

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
