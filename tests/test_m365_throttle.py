"""Graph store under Microsoft's limits: throttling storms, many mailboxes, throughput."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

sim_server = pytest.importorskip("mailtrek.sim.server")

from mailtrek.model import Message  # noqa: E402
from mailtrek.pacer import Pacer, PacerLimits  # noqa: E402
from mailtrek.sim.config import Latency, Limits, SimConfig  # noqa: E402
from mailtrek.stores.m365 import GraphClient, TenantConfig, open_graph_store  # noqa: E402


def tenant_of(sim) -> TenantConfig:
    return TenantConfig(tenant_id=sim.config.tenant_id, client_id="app", client_secret="x",
                        authority=sim.authority(), graph_url=f"{sim.base_url}/graph",
                        ca_file=Path(sim.ca_file))


def raw_message(i: int, tag: str) -> bytes:
    return (f"Message-ID: <{tag}-{i}@src.test>\r\nDate: Mon, 01 Jan 2024 00:00:00 +0000\r\n"
            f"From: a@src.test\r\nTo: b@contoso.test\r\nSubject: {tag} {i}\r\n\r\n"
            f"body {i}\r\n").encode()


async def land(sim, client: GraphClient, upn: str, count: int, tag: str) -> list[str]:
    store = open_graph_store(upn, client.tenant, client=client)
    await store.connect()
    folder = await store.ensure_folder(("Load",))
    results = await asyncio.gather(*(
        store.append(folder, Message(uid=i, raw=raw_message(i, tag), flags=frozenset({"\\Seen"}),
                                     internaldate=datetime(2024, 1, 1, tzinfo=UTC)))
        for i in range(count)))
    assert all(r.ok for r in results), [r for r in results if not r.ok][:3]
    return [r.dest_id or "" for r in results]


async def test_throttling_storm_all_land_once() -> None:
    limits = Limits(requests_per_window=25, request_window_s=2.0, concurrent_requests=2)
    sim = sim_server.Simulator(SimConfig(limits=limits, users=[])).start()
    try:
        upn = f"storm{uuid.uuid4().hex[:6]}@contoso.test"
        sim.add_user(upn)
        # our pacer believes Microsoft's defaults, so the sim's smaller limits throttle us
        client = GraphClient(tenant_of(sim), pacer=Pacer(PacerLimits(backoff_base=0.05)),
                             max_throttle_retries=50)
        ids = await land(sim, client, upn, 30, "storm")
        await client.close()
        assert sim.throttled_count(upn) > 0  # the storm happened
        stored = sim.messages(upn)
        subjects = [m.props["subject"] for m in stored]
        assert sorted(subjects) == sorted(f"storm {i}" for i in range(30))  # none lost or twice
        assert len(set(ids)) == 30
        assert client.stats["throttled"] >= sim.throttled_count(upn)
    finally:
        sim.stop()


async def test_many_mailboxes_in_parallel_throughput() -> None:
    sim = sim_server.Simulator(SimConfig(latency=Latency(40.0, 60.0, 0.0), users=[])).start()
    try:
        users = [f"p{i}{uuid.uuid4().hex[:4]}@contoso.test" for i in range(4)]
        for u in users:
            sim.add_user(u)
        client = GraphClient(tenant_of(sim))
        per_box = 24
        started = time.monotonic()
        await asyncio.gather(*(land(sim, client, u, per_box, "tp") for u in users))
        elapsed = time.monotonic() - started
        await client.close()
        total = per_box * len(users)
        assert sim.throttled_count() == 0  # never over 4 in flight per app (scope "app")
        assert sim.state.throttle.peak_in_flight["app"] == 4  # the app-wide ceiling, used
        # one request at a time would need >= requests * 40 ms; 4 in flight for the app
        # is faster even with simulator and client in one process
        serial_floor = client.stats["requests"] * 0.040
        print(f"\n{total} messages to {len(users)} mailboxes in {elapsed:.2f} s "
              f"({total / elapsed:.0f} msg/s; serial floor {serial_floor:.1f} s)")
        assert elapsed < serial_floor  # CPU-bound here: sim and client share 2 cores
        for u in users:
            assert len(sim.messages(u)) == per_box
    finally:
        sim.stop()
