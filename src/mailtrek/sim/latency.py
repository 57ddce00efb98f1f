"""The service-time model: a randomised base time per call plus time per byte moved."""

from __future__ import annotations

import asyncio
import random
import threading

from mailtrek.sim.config import MB, Latency


class LatencyModel:
    """Delay each call like the real service; never blocks the event loop."""

    def __init__(self, latency: Latency) -> None:
        self.latency = latency
        self._random = random.Random(latency.seed)
        self._lock = threading.Lock()

    def delay_s(self, body_bytes: int) -> float:
        """Return the service time in seconds of a call moving ``body_bytes``."""
        lat = self.latency
        with self._lock:
            base = self._random.uniform(lat.base_min_ms, lat.base_max_ms) if lat.base_max_ms else 0.0
        return (base + lat.ms_per_mb * body_bytes / MB) / 1000.0

    async def wait(self, body_bytes: int) -> None:
        """Sleep for the service time of one call."""
        delay = self.delay_s(body_bytes)
        if delay > 0:
            await asyncio.sleep(delay)

    async def wait_bytes(self, body_bytes: int) -> None:
        """Sleep for the per-byte part only (response bodies)."""
        delay = self.latency.ms_per_mb * body_bytes / MB / 1000.0
        if delay > 0:
            await asyncio.sleep(delay)
