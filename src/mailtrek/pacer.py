"""Pace requests per key (per mailbox): concurrency, request and upload budgets, back-off.

Microsoft 365 throttles per app and mailbox (4 concurrent requests, 10,000 requests per
10 minutes, 150 MB uploaded per 5 minutes, 429 + Retry-After); IMAP servers have their
own per-account limits. One ``Pacer`` serves many keys; each key has its own budget, so
speed comes from many mailboxes in parallel, each kept just under its limits.

Budgets are sliding windows, the way the service counts: the pacer keeps a log of what
each key sent and admits a request only while the last window (ending now) holds room
for it. A request's entry counts from the moment it is admitted until one window after
its answer arrived, so however late the service stamps it (it can only stamp before it
answers), no window the service looks at ever holds more than the budget. Unlike a
token bucket, which must hold back part of the rate to allow any burst, this uses the
whole budget: a long run reaches ``safety`` (99 %) of the documented ceiling.

Usage::

    async with pacer.slot(mailbox, upload_bytes=len(body)):
        response = await send(...)
    # on a 429: pacer.backoff(mailbox, retry_after) and try again in a new slot

Time is read from an injectable ``Clock`` so tests run on virtual time.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Hashable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Protocol


class Clock(Protocol):
    """Where the pacer reads the time and waits."""

    def now(self) -> float:
        """Return a monotonic time in seconds."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds``."""
        ...


class MonotonicClock:
    """The real clock: ``time.monotonic`` and ``asyncio.sleep``."""

    def now(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


@dataclass(frozen=True, slots=True)
class PacerLimits:
    """The budget of one key. Defaults are Microsoft Graph's Outlook limits."""

    max_in_flight: int = 4
    requests_per_window: int = 10_000
    request_window: float = 600.0
    upload_bytes_per_window: int = 150_000_000
    upload_window: float = 300.0
    # Share of each budget used: a little room for what the service may count that the
    # client cannot see (e.g. its own retries), never needed for timing (see the module).
    safety: float = 0.99
    backoff_base: float = 1.0  # first back-off without Retry-After (seconds)
    backoff_max: float = 120.0
    max_retry_after: float = 900.0  # ignore absurd Retry-After values beyond this

    def __post_init__(self) -> None:
        if self.max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        if not 0 < self.safety <= 1:
            raise ValueError("safety must be in (0, 1]")


_POLL = 0.05  # re-check interval while the entries that must expire are still in flight


class SlidingWindow:
    """What one key sent in the last ``window`` seconds, at most ``capacity`` in total.

    Entries are ``[stamp, amount]``; ``stamp`` is ``inf`` while the request is in flight
    and becomes its answer time when it ends, so an entry expires one window after the
    answer. An amount larger than the whole capacity waits for an empty window.
    """

    def __init__(self, capacity: float, window: float) -> None:
        self.capacity = capacity
        self.window = window
        self.entries: deque[list[float]] = deque()
        self.total = 0.0

    def _prune(self, now: float) -> None:
        entries = self.entries
        while entries and entries[0][0] <= now - self.window:
            self.total -= entries.popleft()[1]

    def empty(self, now: float) -> bool:
        """True when nothing sent counts any more (all answered a window ago or more)."""
        self._prune(now)
        return not self.entries

    def wait_for(self, amount: float, now: float) -> float:
        """Return how long to wait before ``amount`` fits in the window (0 = now)."""
        self._prune(now)
        excess = self.total + amount - self.capacity if amount <= self.capacity else self.total
        if excess <= 1e-9:
            return 0.0
        freed = 0.0
        for stamp, size in self.entries:
            if math.isinf(stamp):
                return _POLL  # expires one window after an answer that has not come yet
            freed += size
            if freed >= excess - 1e-9:
                return max(_POLL / 10, stamp + self.window - now)
        return _POLL

    def take(self, amount: float) -> list[float]:
        """Record ``amount`` as in flight; pass the entry to ``done`` when it ends."""
        entry = [math.inf, float(amount)]
        self.entries.append(entry)
        self.total += amount
        return entry

    @staticmethod
    def done(entry: list[float], now: float) -> None:
        """Start the entry's window: the service has stamped it by the time it answered."""
        entry[0] = now


@dataclass(slots=True)
class _KeyState:
    in_flight: asyncio.Semaphore
    gate: asyncio.Lock  # waiters for budget queue up in order
    requests: SlidingWindow
    uploads: SlidingWindow
    paused_until: float = 0.0
    failures: int = 0  # consecutive back-offs, for the exponential delay
    users: int = 0  # tasks inside or waiting for a slot
    stats: dict[str, float] = field(default_factory=lambda: {
        "requests": 0, "upload_bytes": 0, "backoffs": 0, "waited": 0.0})


class Pacer:
    """Keep each key within its concurrency and budget; honour Retry-After per key.

    Safe to share between any number of tasks of one event loop.
    """

    def __init__(
        self,
        limits: PacerLimits | None = None,
        *,
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.limits = limits or PacerLimits()
        self.clock: Clock = clock or MonotonicClock()
        self._rng = rng or random.Random()
        self._keys: dict[Hashable, _KeyState] = {}
        self._sweep_at = 64

    def _sweep(self) -> None:
        """Forget keys with nothing in flight or in their windows (bounded memory).

        A log holds up to a window's requests (10,000 for Graph), so a worker that moves
        thousands of mailboxes keeps only those active within the last window.
        """
        now = self.clock.now()
        for key, st in list(self._keys.items()):
            if (st.users == 0 and st.paused_until <= now
                    and st.requests.empty(now) and st.uploads.empty(now)):
                del self._keys[key]
        self._sweep_at = max(64, 2 * len(self._keys))

    def active_keys(self) -> int:
        """Return how many keys the pacer remembers (tests, diagnostics)."""
        return len(self._keys)

    def _state(self, key: Hashable) -> _KeyState:
        st = self._keys.get(key)
        if st is None:
            if len(self._keys) >= self._sweep_at:
                self._sweep()
            lim = self.limits
            st = _KeyState(
                in_flight=asyncio.Semaphore(lim.max_in_flight),
                gate=asyncio.Lock(),
                requests=SlidingWindow(lim.requests_per_window * lim.safety, lim.request_window),
                uploads=SlidingWindow(lim.upload_bytes_per_window * lim.safety, lim.upload_window),
            )
            self._keys[key] = st
        return st

    @asynccontextmanager
    async def slot(self, key: Hashable, *, upload_bytes: int = 0,
                   requests: int = 1) -> AsyncIterator[None]:
        """Hold one of the key's in-flight places once its budgets allow one more request.

        ``upload_bytes`` is the size of the request body (counts against the upload
        budget); ``requests`` is what the service counts it as (a sequential ``$batch``
        of 20 counts 20 but runs one at a time). Leaving the block normally resets the
        key's back-off streak.
        """
        st = self._state(key)
        st.users += 1
        try:
            async with st.in_flight:
                entries = await self._wait_for_budget(st, upload_bytes, requests)
                try:
                    yield
                finally:
                    now = self.clock.now()
                    for entry in entries:
                        SlidingWindow.done(entry, now)
        finally:
            st.users -= 1
        st.failures = 0

    async def _wait_for_budget(self, st: _KeyState, upload_bytes: int,
                               requests: int = 1) -> list[list[float]]:
        clock = self.clock
        started = clock.now()
        async with st.gate:
            while True:
                now = clock.now()
                wait = max(
                    st.paused_until - now,
                    st.requests.wait_for(requests, now),
                    st.uploads.wait_for(upload_bytes, now) if upload_bytes else 0.0,
                )
                if wait <= 0:
                    break
                await clock.sleep(wait)
            entries = [st.requests.take(requests)]
            if upload_bytes:
                entries.append(st.uploads.take(upload_bytes))
        st.stats["requests"] += requests
        st.stats["upload_bytes"] += upload_bytes
        st.stats["waited"] += clock.now() - started
        return entries

    def backoff(self, key: Hashable, retry_after: float | None = None) -> float:
        """Pause ``key``: ``retry_after`` seconds if given, else exponential with jitter.

        Returns the pause chosen. Requests already in flight are not affected; new
        slots for this key wait until the pause is over.
        """
        st = self._state(key)
        lim = self.limits
        st.failures += 1
        st.stats["backoffs"] += 1
        if retry_after is not None and retry_after >= 0:
            delay = min(float(retry_after), lim.max_retry_after)
        else:
            # "equal jitter": at least half the ceiling, the rest random so that many tasks
            # of one mailbox do not come back at the same instant
            ceiling = min(lim.backoff_max, lim.backoff_base * 2 ** (st.failures - 1))
            delay = ceiling / 2 + self._rng.uniform(0, ceiling / 2)
        st.paused_until = max(st.paused_until, self.clock.now() + delay)
        return delay

    def paused_for(self, key: Hashable) -> float:
        """Return how many seconds ``key`` is still paused (0 when not)."""
        st = self._keys.get(key)
        return max(0.0, st.paused_until - self.clock.now()) if st else 0.0

    def stats(self, key: Hashable) -> dict[str, float]:
        """Return counters for ``key``: requests, upload_bytes, backoffs, waited seconds."""
        return dict(self._state(key).stats)
