"""Simulator limits and faults: throttling per mailbox, 413, injected failures, persistence."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mailtrek.sim import Latency, Limits, SimConfig, Simulator
from mailtrek.sim.config import MB
from mailtrek.sim.testing import async_graph_client, fetch_token, graph_client

ALICE, BOB = "alice@contoso.test", "bob@contoso.test"


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture()
def clock() -> FakeClock:
    return FakeClock()


def _mime(n: int, size: int = 0) -> bytes:
    return (f"From: x@example.org\r\nSubject: m{n}\r\nMessage-ID: <m{n}@example.org>\r\n"
            f"Date: Mon, 1 Jan 2024 12:00:00 +0000\r\n\r\n").encode() + b"y" * size + b"\r\n"


def test_fifth_concurrent_request_to_one_mailbox_is_throttled() -> None:
    config = SimConfig(latency=Latency(base_min_ms=400, base_max_ms=400, ms_per_mb=0),
                       concurrency_scope="mailbox")
    with Simulator(config) as sim:
        token = fetch_token(sim)

        async def run() -> tuple[list[httpx.Response], httpx.Response]:
            async with async_graph_client(sim, token) as client:
                alice = [client.get(f"/users/{ALICE}/mailFolders/inbox") for _ in range(5)]
                bob = client.get(f"/users/{BOB}/mailFolders/inbox")
                *first, other = await asyncio.gather(*alice, bob)
                return first, other

        alice_responses, bob_response = asyncio.run(run())
        statuses = sorted(r.status_code for r in alice_responses)
        assert statuses == [200, 200, 200, 200, 429]
        throttled = next(r for r in alice_responses if r.status_code == 429)
        assert int(throttled.headers["Retry-After"]) >= 1
        assert throttled.json()["error"]["message"] == "Application is over its MailboxConcurrency limit."
        assert bob_response.status_code == 200
        assert sim.throttled_count(ALICE) == 1 and sim.throttled_count(BOB) == 0
        assert sim.status_count(429) == 1


def test_request_rate_window_with_injected_clock(clock: FakeClock) -> None:
    limits = Limits(requests_per_window=3, request_window_s=60)
    with Simulator(SimConfig(limits=limits, clock=clock)) as sim, graph_client(sim) as graph:
        for _ in range(3):
            assert graph.get(f"/users/{ALICE}/mailFolders/inbox").status_code == 200
        refused = graph.get(f"/users/{ALICE}/mailFolders/inbox")
        assert refused.status_code == 429
        assert refused.headers["Retry-After"] == "60"
        assert graph.get(f"/users/{BOB}/mailFolders/inbox").status_code == 200
        clock.now += 30
        assert graph.get(f"/users/{ALICE}/mailFolders/inbox").status_code == 429
        clock.now += 31
        # Refused requests accrue too: the one at +30 s still counts until +90 s.
        assert graph.get(f"/users/{ALICE}/mailFolders/inbox").status_code == 200


def test_upload_volume_window(clock: FakeClock) -> None:
    limits = Limits(upload_bytes_per_window=2 * MB, upload_window_s=300)
    with Simulator(SimConfig(limits=limits, clock=clock)) as sim, graph_client(sim, beta=True) as beta:
        def post(n: int) -> httpx.Response:
            return beta.post(f"/users/{ALICE}/mailFolders/inbox/importMime",
                             content=base64.b64encode(_mime(n, 600 * 1024)),
                             headers={"Content-Type": "text/plain"})
        assert post(1).status_code == 201
        assert post(2).status_code == 201
        refused = post(3)
        assert refused.status_code == 429
        assert 1 <= int(refused.headers["Retry-After"]) <= 300
        assert len(sim.messages(ALICE, "inbox")) == 2
        clock.now += 301
        assert post(3).status_code == 201


def test_write_over_4_mb_is_413_and_not_stored() -> None:
    with Simulator() as sim, graph_client(sim, beta=True) as beta:
        body = base64.b64encode(_mime(1, 3 * MB + 100))  # base64 makes it > 4 MB
        assert len(body) > 4 * MB
        response = beta.post(f"/users/{ALICE}/mailFolders/inbox/importMime", content=body,
                             headers={"Content-Type": "text/plain"})
        assert response.status_code == 413
        assert sim.messages(ALICE) == []
        small = base64.b64encode(_mime(2, 2 * MB))
        assert beta.post(f"/users/{ALICE}/mailFolders/inbox/importMime", content=small,
                         headers={"Content-Type": "text/plain"}).status_code == 201


def test_injected_failure_and_dropped_response() -> None:
    with Simulator() as sim, graph_client(sim) as graph:
        sim.fail_next(1, status=503)
        failed = graph.get(f"/users/{ALICE}/mailFolders/inbox")
        assert failed.status_code == 503 and failed.json()["error"]["code"] == "ServiceUnavailable"
        assert graph.get(f"/users/{ALICE}/mailFolders/inbox").status_code == 200

        sim.drop_next_response_after_commit()
        with pytest.raises(httpx.TransportError):
            graph.post(f"/users/{ALICE}/mailFolders/inbox/messages", json={
                "subject": "in doubt", "internetMessageId": "<doubt@example.org>",
                "singleValueExtendedProperties": [{"id": "Integer 0x0E07", "value": "1"}]})
        # The create happened although the client never saw the answer.
        stored = [m.props["internetMessageId"] for m in sim.messages(ALICE, "inbox")]
        assert stored == ["<doubt@example.org>"]
        found = graph.get(f"/users/{ALICE}/messages",
                          params={"$filter": "internetMessageId eq '<doubt@example.org>'"})
        assert len(found.json()["value"]) == 1


def test_mailbox_disabled_at_runtime() -> None:
    with Simulator() as sim, graph_client(sim) as graph:
        assert graph.get(f"/users/{BOB}/mailFolders").status_code == 200
        sim.disable_mailbox(BOB)
        response = graph.get(f"/users/{BOB}/mailFolders")
        assert response.json()["error"]["code"] == "MailboxNotEnabledForRESTAPI"


def test_state_dir_keeps_mailboxes_across_restarts(tmp_path: Path) -> None:
    state = tmp_path / "sim"
    with Simulator(SimConfig(state_dir=state)) as sim, graph_client(sim, beta=True) as beta:
        folder = beta.post(f"/users/{ALICE}/mailFolders", json={"displayName": "Kept"}).json()
        raw = _mime(7, 10)
        created = beta.post(f"/users/{ALICE}/mailFolders/{folder['id']}/importMime",
                            content=base64.b64encode(raw), headers={"Content-Type": "text/plain"}).json()
        first_ca = sim.ca_file.read_bytes()
    assert (state / "ca.pem").is_file()
    with Simulator(SimConfig(state_dir=state)) as again, graph_client(again) as graph:
        # The CA is kept with the state, so clients that trust it keep working after a restart.
        assert again.ca_file.read_bytes() == first_ca
        names = [f["displayName"] for f in graph.get(f"/users/{ALICE}/mailFolders").json()["value"]]
        assert names.count("Kept") == 1 and names.count("Inbox") == 1
        assert graph.get(f"/users/{ALICE}/messages/{created['id']}/$value").content == raw


@pytest.fixture()
def slow_sim() -> Iterator[Simulator]:
    with Simulator(SimConfig(latency=Latency(base_min_ms=50, base_max_ms=50, ms_per_mb=0))) as sim:
        yield sim


def test_latency_model_delays_calls(slow_sim: Simulator) -> None:
    import time

    with graph_client(slow_sim) as graph:
        graph.get(f"/users/{ALICE}/mailFolders/inbox")
        started = time.perf_counter()
        for _ in range(4):
            assert graph.get(f"/users/{ALICE}/mailFolders/inbox").status_code == 200
        assert time.perf_counter() - started >= 0.2


def test_per_mailbox_limits_and_reset(clock: FakeClock) -> None:
    with Simulator(SimConfig(clock=clock)) as sim, graph_client(sim) as graph:
        sim.set_mailbox_limits(ALICE, Limits(requests_per_window=1, request_window_s=60))
        assert graph.get(f"/users/{ALICE}/mailFolders/inbox").status_code == 200
        assert graph.get(f"/users/{ALICE}/mailFolders/inbox").status_code == 429
        for _ in range(3):
            assert graph.get(f"/users/{BOB}/mailFolders/inbox").status_code == 200
        sim.reset_throttling()
        assert sim.throttled_count() == 0
        assert graph.get(f"/users/{ALICE}/mailFolders/inbox").status_code == 200
        sim.set_mailbox_limits(ALICE, None)
        assert graph.get(f"/users/{ALICE}/mailFolders/inbox").status_code == 200


def test_missing_application_permissions_get_403() -> None:
    with Simulator() as sim, graph_client(sim) as graph:
        sim.deny_permission("Mail.ReadWrite")
        response = graph.post(f"/users/{ALICE}/mailFolders", json={"displayName": "X"})
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "ErrorAccessDenied"
        # Reads need Mail.Read(Basic.All) or Mail.ReadWrite; the default app holds only the latter.
        assert graph.get(f"/users/{ALICE}/mailFolders").status_code == 403
        assert graph.get(f"/users/{ALICE}").status_code == 200
        sim.allow_permission("Mail.ReadWrite")
        assert graph.post(f"/users/{ALICE}/mailFolders", json={"displayName": "X"}).status_code == 201
        sim.deny_permission("User.Read.All")
        assert graph.get(f"/users/{ALICE}").status_code == 403
