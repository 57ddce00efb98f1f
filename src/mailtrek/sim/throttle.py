"""Outlook service limits per app and mailbox: concurrency, request rate, upload volume.

Limits from learn.microsoft.com/graph/throttling-limits#outlook-service-limits: per app ID
and mailbox, 10,000 requests per 10 minutes, 4 concurrent requests, 150 MB uploaded (PATCH,
POST, PUT) per 5 minutes; "exceeding the limit on one mailbox does not affect other
mailboxes". Rejections are 429 with ``Retry-After`` in seconds, as
learn.microsoft.com/graph/throttling ("Best practices to handle throttling") describes.
The concurrency error text is the one Exchange returns ("Application is over its
MailboxConcurrency limit.").
"""

from __future__ import annotations

import math
import threading
from collections import Counter, deque
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

    def __init__(self, limits: Limits, clock: Callable[[], float]) -> None:
        self._limits = limits
        self._clock = clock
        self._lock = threading.Lock()
        self._usage: dict[Key, _Usage] = {}
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
            if usage.in_flight >= limits.concurrent_requests:
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
            if upload_bytes:
                usage.uploads.append((now, upload_bytes))
                usage.upload_total += upload_bytes
            self.admitted[key[1]] += 1
            return None

    def leave(self, key: Key) -> None:
        """Mark one admitted request of ``key`` as finished."""
        with self._lock:
            self._usage[key].in_flight -= 1

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
