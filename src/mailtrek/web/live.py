"""What the batch page shows per user beyond the stored row: progress, speed and ETA.

Speed is measured by the server from successive reads of ``items_synced`` (the runner
updates it while a sync runs), so every viewer sees the same figure. Until a user's own
speed is known (its first minute), the ETA rests on what earlier runs of the batch's route
reached (``orchestrate.rates``); ``eta_basis`` says which.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

from mailtrek.errors import MailtrekError
from mailtrek.orchestrate.home import Home
from mailtrek.orchestrate.rates import RouteRate, batch_route, measured_rate
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
    rate = _route_rate(home, doc) if any(
        UserStatus(u["status"]) in ACTIVE_USER for u in doc["users"]) else None
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
        u["eta_seconds"], u["eta_basis"] = None, None
        if active and total:
            if speed:
                u["eta_seconds"], u["eta_basis"] = int(remaining / speed), "live"
            elif rate is not None and rate.messages_per_second > 0:
                u["eta_seconds"] = int(remaining / rate.messages_per_second)
                u["eta_basis"] = (f"route: {rate.runs} earlier run{'s' if rate.runs != 1 else ''}, "
                                  f"{rate.messages_per_second:.1f} messages/s")
        u["active"] = active
    done = sum(1 for u in doc["users"] if UserStatus(u["status"]) in SYNCED_ONCE)
    doc["totals"]["percent"] = int(100 * done / len(doc["users"])) if doc["users"] else 0
    return doc


def _route_rate(home: Home, doc: dict[str, Any]) -> RouteRate | None:
    """What earlier runs of this batch's route reached (None: never measured, or the
    batch's endpoints cannot be read)."""
    from mailtrek.orchestrate.endpoints import get_endpoint

    try:
        source = get_endpoint(home, doc["source_endpoint"]).host
        dest = get_endpoint(home, doc["dest_endpoint"]).host if doc.get("dest_endpoint") else None
        return measured_rate(home.engine, batch_route(source, to_m365=doc.get("tenant") is not None,
                                                      dest_host=dest))
    except (MailtrekError, KeyError, TypeError):
        return None
