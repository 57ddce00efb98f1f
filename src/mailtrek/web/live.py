"""What the batch page shows per user beyond the stored row: progress, speed and ETA.

Speed is measured by the server from successive reads of ``items_synced`` (the runner
updates it while a sync runs), so every viewer sees the same figure.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

from mailtrek.orchestrate.home import Home
from mailtrek.orchestrate.reports import batch_document
from mailtrek.orchestrate.states import ACTIVE_USER, UserStatus

WINDOW = 60.0  # seconds of samples that make the speed
DONE = (UserStatus.SYNCED, UserStatus.COMPLETED)
# Users that finished an initial sync and are now in a later one still count as synced.
SYNCED_ONCE = (*DONE, UserStatus.INCREMENTAL_SYNCING, UserStatus.COMPLETING)


class SpeedMeter:
    """Remember (time, items) samples per user and turn them into items per second."""

    def __init__(self) -> None:
        self._samples: dict[tuple[str, str], deque[tuple[float, int]]] = {}
        self._lock = threading.Lock()

    def observe(self, key: tuple[str, str], items: int, active: bool) -> float | None:
        """Record a sample; return items/s over the window, or None when unknown or idle."""
        now = time.monotonic()
        with self._lock:
            if not active:
                self._samples.pop(key, None)
                return None
            q = self._samples.setdefault(key, deque())
            if q and items < q[-1][1]:
                q.clear()  # a new run started from a lower count
            q.append((now, items))
            while len(q) > 2 and now - q[0][0] > WINDOW:
                q.popleft()
            t0, n0 = q[0]
            if now - t0 < 1.0:
                return None
            return (items - n0) / (now - t0)


def batch_view(home: Home, name: str, meter: SpeedMeter) -> dict[str, Any]:
    """Return ``batch_document`` plus, per user, percent, total, speed and ETA seconds."""
    doc = batch_document(home, name)
    for u in doc["users"]:
        # The known total (the run's plan, else the last run or pre-flight): it does not
        # grow while folders are listed, so progress never goes backwards.
        total = u.get("items_total")
        status = UserStatus(u["status"])
        active = status in ACTIVE_USER
        speed = meter.observe((name, u["email"]), u["items_synced"], active)
        if status in DONE or (status in SYNCED_ONCE and total and u["items_synced"] >= total):
            percent = 100
        elif total:
            percent = min(99, int(100 * u["items_synced"] / total))
        else:
            percent = 0
        remaining = max(0, (total or 0) - u["items_synced"])
        u["total_items"] = max(total, u["items_synced"]) if total else None
        u["percent"] = percent
        u["speed"] = round(speed, 1) if speed is not None else None
        u["eta_seconds"] = int(remaining / speed) if speed and active and total else None
        u["active"] = active
    done = sum(1 for u in doc["users"] if UserStatus(u["status"]) in SYNCED_ONCE)
    doc["totals"]["percent"] = int(100 * done / len(doc["users"])) if doc["users"] else 0
    return doc
