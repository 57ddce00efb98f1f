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


async def test_request_budget_never_exceeded_in_any_window() -> None:
    clock = FakeClock()
    lim = PacerLimits(requests_per_window=20, request_window=10.0, burst_fraction=0.5)
    pacer = Pacer(lim, clock=clock)
    stamps: list[tuple[float, float]] = []

    async def work() -> None:
        async with pacer.slot("mbx"):
            stamps.append((clock.now(), 1))

    await asyncio.gather(*(work() for _ in range(100)))
    assert len(stamps) == 100
    assert max_in_any_window(stamps, 10.0) <= 20
    # sustained rate is the refill (10 per 10 s) after a burst of 10: ~90 s for 100
    assert 85 <= clock.t - 1000 <= 95


async def test_upload_budget_and_oversized_upload() -> None:
    clock = FakeClock()
    lim = PacerLimits(upload_bytes_per_window=1000, upload_window=10.0, burst_fraction=0.5)
    pacer = Pacer(lim, clock=clock)
    stamps: list[tuple[float, float]] = []

    async def upload(n: int) -> None:
        async with pacer.slot("mbx", upload_bytes=n):
            stamps.append((clock.now(), n))

    await asyncio.gather(*(upload(100) for _ in range(30)))
    assert max_in_any_window(stamps, 10.0) <= 1000
    # a request larger than the whole bucket still goes through, then the key waits
    before = clock.t
    await upload(5000)
    t_big = clock.t
    await upload(100)
    assert clock.t - t_big >= (5000 - 500 + 100) / 50 - 1e-6  # debt repaid at 50 B/s
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
        PacerLimits(burst_fraction=0)
