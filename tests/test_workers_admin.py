"""What a runner says when it loses a mailbox: taken over by another runner, or stopped."""

from __future__ import annotations

import asyncio
import logging

import pytest
from sqlalchemy import update

from mailtrek.orchestrate.batches import create_batch, start_batch, stop_batch
from mailtrek.orchestrate.csvfile import UserRow
from mailtrek.orchestrate.endpoints import add_endpoint, make_endpoint
from mailtrek.orchestrate.home import open_home
from mailtrek.orchestrate.notify import Notifier
from mailtrek.orchestrate.runner import Runner
from mailtrek.state.orchestration import batch_users
from mailtrek.sync.options import CopyReport

pytestmark = pytest.mark.timeout(30)


class Forever:
    """A mover that runs until cancelled."""

    def __init__(self) -> None:
        self.started = asyncio.Event()

    async def __call__(self, home, job) -> CopyReport:
        self.started.set()
        await asyncio.sleep(3600)
        raise AssertionError("not reached")


@pytest.fixture
def home(tmp_path):
    h = open_home(tmp_path / "home")
    add_endpoint(h, make_endpoint("src", host="127.0.0.1", port=1))
    add_endpoint(h, make_endpoint("dst", host="127.0.0.2", port=2))
    create_batch(h, "b", endpoint="src", dest_endpoint="dst",
                 users=[UserRow(2, "alice@contoso.test", "alice", "pw-alice-Secret")])
    start_batch(h, "b")
    return h


@pytest.mark.parametrize("how", ["takeover", "stop"])
async def test_lost_lease_is_explained(home, how, caplog):
    mover = Forever()
    r = Runner(home, mover=mover, notifier=Notifier(None), lease_seconds=0.8, poll_seconds=0.05)
    caplog.set_level(logging.INFO, logger="mailtrek")
    task = asyncio.create_task(r.run(until_idle=True))
    await asyncio.wait_for(mover.started.wait(), 10)
    if how == "takeover":
        with home.engine.begin() as c:  # what another runner does once our lease looks expired
            c.execute(update(batch_users).values(lease_owner="otherhost:1:feedbeef"))
    else:
        stop_batch(home, "b")
    for _ in range(100):
        if "interrupting" in caplog.text:
            break
        await asyncio.sleep(0.05)
    r.stop()
    await asyncio.wait_for(task, 10)
    if how == "takeover":
        assert "lease taken over by otherhost:1:feedbeef" in caplog.text
        assert "stopped by a command" not in caplog.text
    else:
        assert "stopped by a command; interrupting" in caplog.text
