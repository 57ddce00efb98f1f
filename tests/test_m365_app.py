"""Microsoft 365 per app: the simulator's concurrency scopes and the client's app limiter."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import uuid

import httpx
import pytest
from typer.testing import CliRunner, Result

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


def _cli(home, *args: str) -> Result:
    from mailtrek.cli.main import app

    return CliRunner().invoke(app, [*args, "--home", str(home)])


def test_batch_spreads_mailboxes_over_two_app_registrations(tmp_path, dovecot_src) -> None:
    """`tenant add-app` adds a registration; `run` moves mailboxes through both apps."""
    from test_orchestrate_e2e import fill, mailtrek, setup_home

    with Simulator(SimConfig(users=[], latency=Latency(5.0, 5.0, 0.0))) as sim:
        names = [f"two{i}{uuid.uuid4().hex[:4]}" for i in range(4)]
        rows = ["EmailAddress,UserName,Password"]
        for name in names:
            dovecot_src.add_user(name, f"Pw-{name}")
            fill(dovecot_src, name, f"Pw-{name}", inbox=3, projects=1)
            sim.add_user(f"{name}@contoso.test")
            rows.append(f"{name}@contoso.test,{name},Pw-{name}")
        home = setup_home(tmp_path, dovecot_src, sim)
        secret = tmp_path / "second-secret"
        secret.write_text("Second-App-Secret-7\n")
        added = _cli(home, "tenant", "add-app", "t", "--client-id", "second-app",
                     "--client-secret-file", str(secret))
        assert added.exit_code == 0 and "token acquired" in added.output, added.output
        again = _cli(home, "tenant", "add-app", "t", "--client-id", "second-app",
                     "--client-secret-file", str(secret), "--name", "other")
        assert again.exit_code != 0 and "already used" in again.output
        listed = json.loads(_cli(home, "tenant", "apps", "t", "--json").output)
        assert [a["client_id"] for a in listed] == ["mailtrek-e2e", "second-app"]
        assert "Second-App-Secret-7" not in str(listed) + added.output
        csv = tmp_path / "users.csv"
        csv.write_text("\n".join(rows) + "\n")
        assert _cli(home, "batch", "create", "b2", "--endpoint", "src", "--tenant", "t",
                    "--csv", str(csv), "--autostart").exit_code == 0
        mailtrek(home, "run", "--until-idle")
        for name in names:
            assert len(sim.messages(f"{name}@contoso.test")) == 4
        busy = sim.state.throttle.busy_seconds
        assert busy["mailtrek-e2e"] > 0 and busy["second-app"] > 0  # both apps moved mail
        assert sim.throttled_count() == 0
        with sqlite3.connect(home / "state.db") as db:  # every lease given back
            assert db.execute("SELECT count(*) FROM m365_app_slots").fetchone()[0] == 0
        assert _cli(home, "tenant", "remove-app", "t", "second-app").exit_code == 0
        listed = json.loads(_cli(home, "tenant", "apps", "t", "--json").output)
        assert [a["client_id"] for a in listed] == ["mailtrek-e2e"]


@pytest.mark.parametrize("scope,received", [("app", "headers"), ("mailbox", "now")])
def test_tenant_probe_measures_stores_and_cleans_up(tmp_path, scope: str, received: str) -> None:
    from mailtrek.orchestrate.endpoints import get_tenant
    from mailtrek.orchestrate.home import open_home
    from mailtrek.orchestrate.mover import tenant_config
    from mailtrek.state.m365 import ProfileMemory
    from mailtrek.stores.m365 import dates, open_graph_store

    config = SimConfig(latency=Latency(150.0, 150.0, 0.0), concurrency_scope=scope,
                       import_mime_received=received)
    with Simulator(config) as sim:
        home = tmp_path / "home"
        secret = tmp_path / "secret"
        secret.write_text("Probe-Secret-1\n")
        added = _cli(home, "tenant", "add", "t", "--tenant-id", sim.config.tenant_id,
                     "--client-id", "probe-app", "--client-secret-file", str(secret),
                     "--m365-authority", sim.authority(), "--graph-url", f"{sim.base_url}/graph",
                     "--ca-file", str(sim.ca_file))
        assert added.exit_code == 0, added.output
        before = {f.id for f in sim.folders(USERS[0])}
        r = _cli(home, "tenant", "probe", "t", "--mailbox", USERS[0],
                 "--other-mailbox", USERS[1], "--json")
        assert r.exit_code == 0, r.output
        found = json.loads(r.output)["findings"]
        assert found["concurrency_scope"] == scope
        assert found["import_mime_received"] == received
        assert found["json_keeps_received"] is True and found["import_mime_exact"] is True
        assert found["import_mime_message_id_kept"] is True and found["json_is_draft"] is False
        assert found["json_message_id_kept"] is True
        assert found["cleaned_up"] is True
        assert {f.id for f in sim.folders(USERS[0])} == before  # nothing left behind
        assert not sim.messages(USERS[0]) and sim.throttled_count(USERS[0]) <= 3
        table = _cli(home, "tenant", "probe", "t", "--mailbox", USERS[0])
        assert "importMime received date" in table.output and "Probe-Secret" not in table.output
        # copy and batches read the stored profile: route and app-wide cap
        h = open_home(home)
        tenant = tenant_config(h, get_tenant(h, "t"))
        dates.forget(tenant.tenant_id)
        store = open_graph_store(USERS[0], tenant)
        store.use_memory(ProfileMemory(h.engine))
        assert store.import_mime_allowed == (received == "headers")
        assert store.client.app_limiter.ceiling == (4 if scope == "app" else 64)
        dates.forget(tenant.tenant_id)
        asyncio.run(store.close())


def test_sim_cli_refuses_unknown_modes(tmp_path) -> None:
    from mailtrek.cli.main import app

    for option in ("--concurrency-scope", "--import-mime-received"):
        r = CliRunner().invoke(app, ["sim", option, "sometimes"])
        assert r.exit_code == 2 and option in r.output


def test_app_slots_are_shared_between_processes_and_expire(tmp_path) -> None:
    from mailtrek.state.db import open_engine
    from mailtrek.state.m365 import DbSlotLeases

    engine = open_engine(tmp_path / "s.db")
    one, two = DbSlotLeases(engine), DbSlotLeases(engine, ttl=-1)  # two's leases are stale
    taken = [one.try_acquire("app", 4) for _ in range(3)]
    assert sorted(taken) == [0, 1, 2]  # type: ignore[type-var]
    assert two.try_acquire("app", 4) == 3  # another process takes the last place ...
    assert one.try_acquire("app", 4) == 3  # ... and dies: its expired lease is taken over
    assert one.held("app") == 4
    assert one.try_acquire("app", 4) is None  # all four places taken
    two.release("app", 1)  # not two's lease: stays
    assert one.try_acquire("app", 4) is None
    one.release("app", 1)
    assert one.try_acquire("app", 4) == 1
    assert two.try_acquire("other-app", 4) == 0  # apps do not share places
    engine.dispose()


async def test_app_limiter_never_exceeds_its_cap_and_serves_in_order() -> None:
    limiter = AppLimiter("a", 2)
    inside, most, order = 0, 0, []

    async def work(i: int) -> None:
        nonlocal inside, most
        async with limiter.slot():
            order.append(i)
            inside += 1
            most = max(most, inside)
            await asyncio.sleep(0.01)
            inside -= 1
    tasks = [asyncio.create_task(work(i)) for i in range(8)]
    await asyncio.sleep(0)
    tasks[5].cancel()  # a waiter that gives up does not keep a place
    await asyncio.gather(*tasks, return_exceptions=True)
    assert most == 2 and order == [0, 1, 2, 3, 4, 6, 7]
    assert limiter.in_flight == 0


async def test_busy_process_keeps_its_leases_and_gives_them_back(tmp_path) -> None:
    from mailtrek.state.db import open_engine
    from mailtrek.state.m365 import DbSlotLeases

    engine = open_engine(tmp_path / "s.db")
    leases = DbSlotLeases(engine)
    limiter = AppLimiter("app", leases=leases)
    most = 0

    async def request() -> None:
        nonlocal most
        async with limiter.slot():
            most = max(most, leases.held("app"))
            await asyncio.sleep(0.005)
    await asyncio.gather(*(request() for _ in range(48)))
    await limiter.drain()
    assert most <= 4 and leases.held("app") == 0  # never over the app's 4; all given back
    assert limiter.stats["leases_taken"] < 48 / 2  # handed over, not taken per request
    engine.dispose()


def test_add_app_with_a_certificate(tmp_path) -> None:
    from mailtrek.orchestrate.endpoints import get_tenant
    from mailtrek.orchestrate.home import open_home
    from mailtrek.orchestrate.tenant_apps import app_configs

    home, secret, pem = tmp_path / "home", tmp_path / "secret", tmp_path / "app2.pem"
    secret.write_text("First-Secret\n")
    pem.write_text("-----BEGIN CERTIFICATE-----\n")
    assert _cli(home, "tenant", "add", "t", "--tenant-id", "contoso", "--client-id", "one",
                "--client-secret-file", str(secret), "--no-test").exit_code == 0
    both = _cli(home, "tenant", "add-app", "t", "--client-id", "two", "--certificate", str(pem),
                "--client-secret-file", str(secret), "--no-test")
    assert both.exit_code != 0  # one credential, not two
    r = _cli(home, "tenant", "add-app", "t", "--client-id", "two", "--certificate", str(pem),
             "--no-test")
    assert r.exit_code == 0, r.output
    h = open_home(home)
    configs = app_configs(h, get_tenant(h, "t"))
    assert [(c.client_id, c.cert_path, bool(c.client_secret)) for c in configs] == [
        ("one", None, True), ("two", pem.resolve(), False)]
    assert "up to 8 concurrent requests" in _cli(home, "tenant", "apps", "t").output
