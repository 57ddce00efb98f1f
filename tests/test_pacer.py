"""The pacer on virtual time: concurrency, budgets per window, Retry-After, back-off."""

from __future__ import annotations

import asyncio
import random

import pytest

from mailtrek.pacer import Pacer, PacerLimits


class FakeClock:
    """Virtual time: sleeping jumps the clock forward instead of waiting."""

    def __init__(self) -> None:
        self.t = 1000.0
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        target = self.t + seconds
        await asyncio.sleep(0)
        self.t = max(self.t, target)


def max_in_any_window(stamps: list[tuple[float, float]], window: float) -> float:
    """Return the largest sum of amounts started within any ``window`` seconds."""
    stamps = sorted(stamps)
    best, lo, total = 0.0, 0, 0.0
    for t, amount in stamps:
        total += amount
        while stamps[lo][0] <= t - window:
            total -= stamps[lo][1]
            lo += 1
        best = max(best, total)
    return best


async def test_at_most_n_in_flight_per_key_and_keys_independent() -> None:
    clock = FakeClock()
    pacer = Pacer(PacerLimits(max_in_flight=3), clock=clock)
    live: dict[str, int] = {"a": 0, "b": 0}
    peak: dict[str, int] = {"a": 0, "b": 0}

    async def work(key: str) -> None:
        async with pacer.slot(key):
            live[key] += 1
            peak[key] = max(peak[key], live[key])
            await asyncio.sleep(0.001)
            live[key] -= 1

    await asyncio.gather(*(work(k) for k in "ab" * 20))
    assert peak == {"a": 3, "b": 3}  # both keys used their full concurrency at once


async def test_request_budget_never_exceeded_in_any_window_and_fully_used() -> None:
    clock = FakeClock()
    lim = PacerLimits(requests_per_window=20, request_window=10.0)
    pacer = Pacer(lim, clock=clock)
    stamps: list[tuple[float, float]] = []

    async def work() -> None:
        async with pacer.slot("mbx"):
            stamps.append((clock.now(), 1))

    await asyncio.gather(*(work() for _ in range(1000)))
    assert len(stamps) == 1000
    assert max_in_any_window(stamps, 10.0) <= 20 * 0.99
    # the whole budget is used: 19 per window (99 % of 20), no share held back for bursts
    assert clock.t - 1000 <= (1000 // 19) * 10.0 + 1e-6
    assert clock.t - 1000 >= (1000 // 19 - 1) * 10.0


async def test_entry_counts_until_a_window_after_its_answer() -> None:
    """The service may stamp a slow request late: it expires a window after its answer."""
    clock = FakeClock()
    pacer = Pacer(PacerLimits(requests_per_window=2, request_window=10.0, safety=1.0),
                  clock=clock)
    started: dict[str, float] = {}

    async def work(name: str, hold: float) -> None:
        async with pacer.slot("mbx"):
            started[name] = clock.now() - 1000
            if hold:
                await clock.sleep(hold)

    slow = asyncio.create_task(work("slow", 5.0))
    await asyncio.sleep(0)
    await work("fast", 0)
    await work("third", 0)  # waits for "fast" to expire at 10
    await work("fourth", 0)  # waits for "slow": answered at 5, so expires at 15
    await slow
    assert started["slow"] == started["fast"] == 0
    assert started["third"] >= 10
    assert started["fourth"] >= 15


async def test_upload_budget_and_oversized_upload() -> None:
    clock = FakeClock()
    lim = PacerLimits(upload_bytes_per_window=1000, upload_window=10.0)
    pacer = Pacer(lim, clock=clock)
    stamps: list[tuple[float, float]] = []

    async def upload(n: int) -> None:
        async with pacer.slot("mbx", upload_bytes=n):
            stamps.append((clock.now(), n))

    await asyncio.gather(*(upload(100) for _ in range(30)))
    assert max_in_any_window(stamps, 10.0) <= 1000
    # a request larger than the whole budget waits for an empty window, then goes alone
    before = clock.t
    await upload(5000)
    t_big = clock.t
    assert t_big - stamps[-2][0] >= 10.0 - 1e-6
    await upload(100)
    assert clock.t - t_big >= 10.0 - 1e-6  # nothing else until the big one has expired
    assert t_big >= before


async def test_retry_after_pauses_only_that_key() -> None:
    clock = FakeClock()
    pacer = Pacer(clock=clock)
    assert pacer.backoff("a", 30) == 30
    assert pacer.paused_for("a") == pytest.approx(30)
    start = clock.t
    async with pacer.slot("b"):
        assert clock.t == start  # other mailbox unaffected
    async with pacer.slot("a"):
        assert clock.t >= start + 30
    assert pacer.paused_for("a") == 0


async def test_exponential_backoff_with_jitter_capped_and_reset() -> None:
    clock = FakeClock()
    pacer = Pacer(PacerLimits(backoff_base=1.0, backoff_max=8.0), clock=clock,
                  rng=random.Random(7))
    delays = [pacer.backoff("a") for _ in range(6)]
    ceilings = [1, 2, 4, 8, 8, 8]
    for d, c in zip(delays, ceilings, strict=True):
        assert c / 2 <= d <= c
    async with pacer.slot("a"):
        pass
    assert pacer.backoff("a") <= 1.0  # a success resets the streak
    assert pacer.stats("a")["backoffs"] == 7


async def test_absurd_retry_after_is_capped() -> None:
    clock = FakeClock()
    pacer = Pacer(PacerLimits(max_retry_after=60), clock=clock)
    assert pacer.backoff("a", 10_000) == 60


def test_bad_limits_refused() -> None:
    with pytest.raises(ValueError):
        PacerLimits(max_in_flight=0)
    with pytest.raises(ValueError):
        PacerLimits(safety=0)


async def test_idle_keys_are_forgotten_once_their_windows_are_empty() -> None:
    """A worker moving thousands of mailboxes keeps only the recently active ones."""
    clock = FakeClock()
    pacer = Pacer(PacerLimits(request_window=10.0, upload_window=5.0), clock=clock)
    for i in range(100):
        async with pacer.slot(f"old{i}", upload_bytes=10):
            pass
    assert pacer.active_keys() == 100  # all still inside their windows
    pacer.backoff("old0", 60)  # a paused key is kept while the pause lasts
    await clock.sleep(11)
    for i in range(200):
        async with pacer.slot(f"new{i}"):
            pass
    assert pacer.active_keys() <= 200 + 1
    assert pacer.paused_for("old0") > 0  # remembered
    assert all(pacer.stats(f"new{i}")["requests"] == 1 for i in range(200))
