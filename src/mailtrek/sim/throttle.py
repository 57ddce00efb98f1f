"""Outlook service limits: concurrency, request rate, upload volume.

Limits from learn.microsoft.com/graph/throttling-limits#outlook-service-limits: per app ID
and mailbox, 10,000 requests per 10 minutes and 150 MB uploaded (PATCH, POST, PUT) per 5
minutes ("exceeding the limit on one mailbox does not affect other mailboxes"). The 4
concurrent requests are, on the current page ("Limits per app ID"), per app ID "regardless
of whether the requests all access the same mailbox, or access different mailboxes"
(``scope="app"``); the older page and the field's error text put them per app and mailbox
(``scope="mailbox"``). Rejections are 429 with ``Retry-After`` in seconds, as
learn.microsoft.com/graph/throttling ("Best practices to handle throttling") describes.
The per-mailbox concurrency text is the one Exchange returns ("Application is over its
MailboxConcurrency limit."); Microsoft publishes no text for the app-wide one, so the
simulator's own wording is used and clients must not depend on it.
"""

from __future__ import annotations

import math
import threading
from collections import Counter, defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from mailtrek.sim.config import Limits

Key = tuple[str, str]  # (app id, mailbox id)


@dataclass(frozen=True)
class Throttled:
    """Why a request was refused and how long the client should wait."""

    code: str
    message: str
    retry_after_s: int


@dataclass
class _Usage:
    in_flight: int = 0
    requests: deque[float] = field(default_factory=deque)
    uploads: deque[tuple[float, int]] = field(default_factory=deque)
    upload_total: int = 0


class MailboxThrottle:
    """Admit or refuse requests per (app, mailbox); counts what it did for inspection."""

    def __init__(self, limits: Limits, clock: Callable[[], float], scope: str = "app") -> None:
        self._limits = limits
        self._clock = clock
        self.scope = scope
        self._lock = threading.Lock()
        self._usage: dict[Key, _Usage] = {}
        self._app_in_flight: Counter[str] = Counter()
        # app id -> integral of requests in flight over time (seconds), and when it last moved
        self.busy_seconds: defaultdict[str, float] = defaultdict(float)
        self.peak_in_flight: Counter[str] = Counter()
        self._busy_mark: dict[str, float] = {}
        # mailbox id -> limits replacing the defaults for that mailbox (test knob).
        self.overrides: dict[str, Limits] = {}
        self.admitted: Counter[str] = Counter()
        self.throttled: Counter[str] = Counter()

    def _prune(self, usage: _Usage, now: float, limits: Limits) -> None:
        while usage.requests and usage.requests[0] <= now - limits.request_window_s:
            usage.requests.popleft()
        while usage.uploads and usage.uploads[0][0] <= now - limits.upload_window_s:
            usage.upload_total -= usage.uploads.popleft()[1]

    def enter(self, key: Key, upload_bytes: int) -> Throttled | None:
        """Admit one request (the caller must then call ``leave``) or return why not."""
        with self._lock:
            limits = self.overrides.get(key[1], self._limits)
            now = self._clock()
            usage = self._usage.setdefault(key, _Usage())
            self._prune(usage, now, limits)
            refusal: Throttled | None = None
            if self.scope == "app" and self._app_in_flight[key[0]] >= limits.concurrent_requests:
                refusal = Throttled("ApplicationThrottled",
                                    "Application is over its concurrency limit.", 1)
            elif self.scope == "mailbox" and usage.in_flight >= limits.concurrent_requests:
                refusal = Throttled("ApplicationThrottled",
                                    "Application is over its MailboxConcurrency limit.", 1)
            elif len(usage.requests) >= limits.requests_per_window:
                wait = usage.requests[0] + limits.request_window_s - now
                refusal = Throttled("ApplicationThrottled",
                                    "Application is over its MailboxRequestRate limit.",
                                    max(1, math.ceil(wait)))
            elif upload_bytes and usage.upload_total + upload_bytes > limits.upload_bytes_per_window:
                wait = (usage.uploads[0][0] + limits.upload_window_s - now) if usage.uploads else 1
                refusal = Throttled("ApplicationThrottled",
                                    "Application is over its MailboxUploadVolume limit.",
                                    max(1, math.ceil(wait)))
            # "All requests accrue against your usage limits" (throttling page), refused ones too.
            usage.requests.append(now)
            if refusal:
                self.throttled[key[1]] += 1
                return refusal
            usage.in_flight += 1
            self._move(key[0], now, +1)
            if upload_bytes:
                usage.uploads.append((now, upload_bytes))
                usage.upload_total += upload_bytes
            self.admitted[key[1]] += 1
            return None

    def leave(self, key: Key) -> None:
        """Mark one admitted request of ``key`` as finished."""
        with self._lock:
            self._usage[key].in_flight -= 1
            self._move(key[0], self._clock(), -1)

    def _move(self, app: str, now: float, step: int) -> None:
        """Change the app's in-flight count, integrating the old count over time."""
        last = self._busy_mark.get(app, now)
        self.busy_seconds[app] += self._app_in_flight[app] * (now - last)
        self._busy_mark[app] = now
        self._app_in_flight[app] += step
        self.peak_in_flight[app] = max(self.peak_in_flight[app], self._app_in_flight[app])

    def app_in_flight(self, app: str) -> int:
        """Return the requests in flight for ``app`` over all mailboxes."""
        with self._lock:
            return self._app_in_flight[app]

    def in_flight(self, mailbox: str) -> int:
        """Return the requests in flight for ``mailbox`` over all apps."""
        with self._lock:
            return sum(u.in_flight for (_, m), u in self._usage.items() if m == mailbox)

    def reset(self) -> None:
        """Forget all usage (windows and counters); in-flight requests stay counted."""
        with self._lock:
            for usage in self._usage.values():
                usage.requests.clear()
                usage.uploads.clear()
                usage.upload_total = 0
            self.admitted.clear()
            self.throttled.clear()
            self.busy_seconds.clear()
            self.peak_in_flight.clear()
            self._busy_mark.clear()
