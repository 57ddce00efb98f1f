#!/usr/bin/env python3
"""Benchmark: N mailboxes through one (or several) app registrations under the per-app limit.

Outlook allows 4 concurrent requests per app ID over all mailboxes
(learn.microsoft.com/graph/throttling-limits, "Limits per app ID"). The simulator runs as
its own process with ``--concurrency-scope app`` and a fixed service time per call
(``--latency-ms``, default 100 ms); each mailbox gets ``--messages`` small messages through
the Graph store (importMime + a flags PATCH for half of them), all mailboxes at once,
spread over ``--apps`` registrations the way batches spread them (``AppPool``).

Per row: wall time, messages/s, requests, 429 answers (count and share), and the share of
the app-wide ceiling used: the simulator integrates requests in flight per app over time,
so ``busy / (4 x apps x wall)`` is 100 % when every app had 4 requests in flight all the
time. ``--no-app-limit`` shows the client as it was (per-mailbox pacing only).

    .venv/bin/python bench/m365_app_bench.py --mailboxes 1,6,20 --apps 1,2 --messages 40
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import httpx

from mailtrek.model import Message
from mailtrek.orchestrate.tenant_apps import AppPool
from mailtrek.stores.m365 import GraphClient, TenantConfig, open_graph_store
from mailtrek.stores.m365.applimit import AppLimiter

T0 = datetime(2024, 5, 1, tzinfo=UTC)


def message(box: int, i: int) -> Message:
    when = T0 + timedelta(minutes=i)
    raw = (f"From: a@src.test\r\nTo: u{box}@contoso.test\r\nSubject: bench {box}/{i}\r\n"
           f"Date: {format_datetime(when)}\r\nMessage-ID: <b{box}.{i}@src.test>\r\n\r\n"
           + "x" * 4000 + "\r\n").encode()
    return Message(uid=i + 1, raw=raw, flags=frozenset({"\\Seen"}) if i % 2 else frozenset(),
                   internaldate=when)


class Sim:
    """``mailtrek sim`` in a child process."""

    def __init__(self, users: list[str], latency_ms: float, work: Path) -> None:
        cmd = [sys.executable, "-m", "mailtrek", "sim", "--users", ",".join(users),
               "--state-dir", str(work), "--latency-ms", str(latency_ms), "--ms-per-mb", "0",
               "--concurrency-scope", "app"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        info: dict[str, str] = {}
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            key, _, value = line.strip().partition("=")
            info[key] = value
            if key == "imap_oauth_issuer":
                break
        self.info = info

    def stats(self) -> dict:
        return httpx.get(self.info["base_url"] + "/_sim/stats", verify=self.info["ca_file"],
                         timeout=60).json()

    def close(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


async def run(sim: Sim, users: list[str], apps: int, messages: int, limited: bool,
              leases: object = None) -> float:
    clients = []
    for a in range(apps):
        config = TenantConfig(tenant_id="contoso", client_id=f"bench-app-{a}",
                              client_secret="x", authority=sim.info["authority"],
                              graph_url=sim.info["graph_url"], ca_file=Path(sim.info["ca_file"]))
        clients.append(GraphClient(config, app_limiter=AppLimiter(
            config.client_id, 4 if limited else 1000, leases=leases),  # type: ignore[arg-type]
            max_throttle_retries=50))
    pool = AppPool(clients)

    async def one(box: int, upn: str) -> None:
        client = pool.client_for(upn)
        store = open_graph_store(upn, client.tenant, client=client)
        await store.connect()
        folder = await store.ensure_folder(("Bench",))
        results = await asyncio.gather(*(store.append(folder, message(box, i))
                                         for i in range(messages)))
        assert all(r.ok for r in results), [r.error for r in results if not r.ok][:3]
        await store.close()

    started = time.monotonic()
    try:
        await asyncio.gather(*(one(b, u) for b, u in enumerate(users)))
    finally:
        await pool.close()
    return time.monotonic() - started


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mailboxes", default="1,6,20")
    ap.add_argument("--apps", default="1,2")
    ap.add_argument("--messages", type=int, default=40, help="per mailbox")
    ap.add_argument("--latency-ms", type=float, default=100.0)
    ap.add_argument("--leases", action="store_true",
                    help="take the app's places as leases in a SQLite state database, as "
                         "batches and workers do")
    ap.add_argument("--no-app-limit", action="store_true",
                    help="also run without the app limiter (per-mailbox pacing only)")
    a = ap.parse_args()
    print(f"service time {a.latency_ms:.0f} ms per call; scope app (4 per app ID); "
          f"{a.messages} messages per mailbox")
    print("| mailboxes | apps | app limiter | wall s | msgs/s | requests | 429s | 429 share "
          "| share of app ceiling | peak in flight per app |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    modes = [True, False] if a.no_app_limit else [True]
    for n in (int(x) for x in a.mailboxes.split(",")):
        for apps in (int(x) for x in a.apps.split(",")):
            for limited in modes:
                users = [f"u{i}@contoso.test" for i in range(n)]
                with tempfile.TemporaryDirectory(prefix="mt-appbench-") as work:
                    sim = Sim(users, a.latency_ms, Path(work))
                    leases = None
                    if a.leases:
                        from mailtrek.state.db import open_engine
                        from mailtrek.state.m365 import DbSlotLeases

                        leases = DbSlotLeases(open_engine(Path(work) / "state.db"))
                    try:
                        wall = asyncio.run(run(sim, users, apps, a.messages, limited, leases))
                        st = sim.stats()
                    finally:
                        sim.close()
                reqs = st["graph_requests"]
                throttled = st["statuses"].get("429", 0)
                bench_apps = {k: v for k, v in st["apps"].items() if k.startswith("bench-app")}
                busy = sum(v["busy_seconds"] for v in bench_apps.values())
                peak = max((v["peak_in_flight"] for v in bench_apps.values()), default=0)
                share = busy / (4 * apps * wall)
                kind = ("leases" if a.leases else "yes") if limited else "no"
                print(f"| {n} | {apps} | {kind} | {wall:.1f} | "
                      f"{n * a.messages / wall:.1f} | {reqs} | {throttled} | "
                      f"{throttled / max(1, reqs):.1%} | {share:.0%} | {peak} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
