"""Progress bars on a terminal (rich, see :mod:`mailtrek.cli.progress_bars`), silence elsewhere.

The time left comes from messages *and* bytes (small messages cost per message, large ones
per byte): before enough of this run is seen, from the route's earlier runs
(:mod:`mailtrek.orchestrate.rates`); then from this run's own rates.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from mailtrek.orchestrate.rates import RouteRate, estimate

if TYPE_CHECKING:  # rich is imported when bars are drawn: not for a copy without a terminal
    from rich.progress import Progress

LIVE_AFTER_MESSAGES = 20  # this run's own rate counts once it has seen this many messages ...
LIVE_AFTER_SECONDS = 10.0  # ... over at least this long


class ProgressView:
    """Receives the engine's progress events and draws them when enabled."""

    def __init__(self, enabled: bool, rate: RouteRate | None = None) -> None:
        self.enabled = enabled
        self.rate = rate
        self._progress: Progress | None = None
        self._task: Any = None
        self._msgs = 0
        self._total_msgs = 0
        self._bytes = 0
        self._total_bytes = 0
        self._started: float | None = None
        self.basis = ""

    def __enter__(self) -> ProgressView:
        if self.enabled:
            from mailtrek.cli.progress_bars import start_bars

            self._progress = start_bars(self)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def remaining_seconds(self, now: float | None = None) -> float | None:
        """Return the time left, or None before the plan is known; sets :attr:`basis`."""
        if self._started is None:
            return None
        left_msgs = max(0, self._total_msgs - self._msgs)
        left_bytes = max(0, self._total_bytes - self._bytes)
        elapsed = (now if now is not None else time.monotonic()) - self._started
        if self._msgs >= LIVE_AFTER_MESSAGES and elapsed >= LIVE_AFTER_SECONDS:
            live = RouteRate(0, self._msgs / elapsed, self._bytes / elapsed)
            self.basis = "from this run's rate"
            return estimate(left_msgs, left_bytes, live).seconds
        e = estimate(left_msgs, left_bytes, self.rate)
        self.basis = e.basis
        return e.seconds

    def event(self, kind: str, **fields: Any) -> None:
        """Handle one engine event (``plan``, ``folder``, ``message``, ``done``)."""
        if kind == "plan":
            self._total_msgs = fields.get("messages", 0)
            self._total_bytes = fields.get("bytes", 0)
            self._started = time.monotonic()
        elif kind == "message":
            self._msgs += 1
            self._bytes += fields.get("size", 0) or 0
        p = self._progress
        if p is None:
            return
        if kind == "plan":
            self._task = p.add_task("copying", total=fields.get("bytes", 0) or None,
                                    msgs=f"0/{self._total_msgs} msgs")
            left = self.remaining_seconds()
            if left is not None:
                from mailtrek.cli.progress_bars import clock

                p.console.print(f"estimate: {clock(left)} ({self.basis})")
        elif kind == "folder" and self._task is not None:
            p.update(self._task, description=str(fields.get("name", ""))[:30])
        elif kind == "message" and self._task is not None:
            p.update(self._task, advance=fields.get("size", 0),
                     msgs=f"{self._msgs}/{self._total_msgs} msgs")
        elif kind == "done" and self._task is not None:
            p.update(self._task, description="done")
