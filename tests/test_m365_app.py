"""Microsoft 365 per app: the simulator's concurrency scopes and the client's app limiter."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest

from mailtrek.sim import Latency, SimConfig, Simulator
from mailtrek.sim.testing import async_graph_client, fetch_token
from mailtrek.stores.m365 import GraphClient
from mailtrek.stores.m365.applimit import AppLimiter
from test_m365_throttle import land, tenant_of

USERS = ["alice@contoso.test", "bob@contoso.test", "carol@contoso.test"]
SLOW = Latency(base_min_ms=300, base_max_ms=300, ms_per_mb=0)


def _burst(sim: Simulator, per_mailbox: int) -> list[httpx.Response]:
    token = fetch_token(sim)

    async def run() -> list[httpx.Response]:
        async with async_graph_client(sim, token) as client:
            return await asyncio.gather(*(client.get(f"/users/{u}/mailFolders/inbox")
                                          for u in USERS for _ in range(per_mailbox)))
    return asyncio.run(run())


@pytest.mark.parametrize("scope", ["app", "mailbox"])
def test_concurrency_scope_counts_per_app_or_per_mailbox(scope: str) -> None:
    with Simulator(SimConfig(latency=SLOW, concurrency_scope=scope)) as sim:
        for u in USERS:
            sim.add_user(u)
        statuses = sorted(r.status_code for r in _burst(sim, 2))  # 6 requests, 2 per mailbox
        if scope == "app":  # learn.microsoft.com/graph/throttling-limits "Limits per app ID"
            assert statuses == [200] * 4 + [429] * 2
        else:
            assert statuses == [200] * 6


def test_app_limiter_halves_on_429_and_grows_back() -> None:
    limiter = AppLimiter("a")
    limiter.throttled()
    assert limiter.cap == 2
    limiter.throttled()
    limiter.throttled()
    assert limiter.cap == 1  # never below one
    for _ in range(1 + 2 + 3):
        limiter.succeeded()
    assert limiter.cap == 4  # back at the ceiling, one step per cap answers


@pytest.mark.parametrize("scope", ["app", "mailbox"])
async def test_many_mailboxes_share_one_app_limit_without_429(scope: str) -> None:
    sim = Simulator(SimConfig(latency=Latency(30.0, 30.0, 0.0), users=[],
                              concurrency_scope=scope)).start()
    try:
        users = [f"m{i}{uuid.uuid4().hex[:4]}@contoso.test" for i in range(5)]
        for u in users:
            sim.add_user(u)
        client = GraphClient(tenant_of(sim))
        await asyncio.gather(*(land(sim, client, u, 6, "share") for u in users))
        await client.close()
        assert sim.throttled_count() == 0
        assert sim.state.throttle.peak_in_flight["app"] <= 4
        assert client.app_limiter.stats["peak"] == 4
    finally:
        sim.stop()
