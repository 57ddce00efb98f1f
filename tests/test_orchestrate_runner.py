"""The scheduler's bookkeeping: leases, statuses, concurrency, stop, crash recovery.

These tests give the runner its own mover (the runner takes any ``Mover``), so that they
check the scheduling rules alone, quickly and deterministically. Moving real mail through
real Dovecot is tested in test_orchestrate_e2e.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from mailtrek.errors import AuthenticationError, TransientError
from mailtrek.orchestrate.batches import (
    complete_batch,
    create_batch,
    delete_batch,
    get_batch,
    resume_batch,
    start_batch,
    stop_batch,
    user_rows,
)
from mailtrek.orchestrate.csvfile import UserRow
from mailtrek.orchestrate.endpoints import add_endpoint, make_endpoint
from mailtrek.orchestrate.home import open_home, utcnow
from mailtrek.orchestrate.notify import Notifier
from mailtrek.orchestrate.runner import Runner, find_due
from mailtrek.state.db import MailboxState, MessageState
from mailtrek.state.orchestration import batch_users
from mailtrek.sync.options import CopyReport, FolderReport, SkippedItem

pytestmark = pytest.mark.timeout(60)


class FakeMover:
    """Records calls; copies one new 'message' per run into engine state like the engine would."""

    def __init__(self, delay: float = 0.0) -> None:
        self.calls: list[tuple[str, str]] = []
        self.fail: dict[str, Exception] = {}
        self.fail_once: dict[str, Exception] = {}
        self.delay = delay
        self.running = 0
        self.max_running = 0
        self.block = asyncio.Event()
        self.block.set()

    async def __call__(self, home, job) -> CopyReport:
        self.calls.append((job.email, job.phase))
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        try:
            await asyncio.sleep(self.delay)
            await self.block.wait()
            if job.email in self.fail_once:
                raise self.fail_once.pop(job.email)
            if job.email in self.fail:
                raise self.fail[job.email]
            state = MailboxState(home.engine, job.mailbox)
            n = state.count()
            state.record(("INBOX",), 1, [MessageState(n + 1, str(n + 1), None, 100, frozenset())])
            state.flush()
            r = CopyReport(source=job.username, destination=job.email, started=utcnow())
            r.folders.append(FolderReport("INBOX", "INBOX", selected=1, copied=1, bytes_copied=100))
            if job.email.startswith("big"):
                r.skipped.append(SkippedItem("INBOX", 7, "Huge", "2020-01-01T00:00:00+00:00", 99_000_000,
                                             "larger than 35 MB"))
            return r
        finally:
            self.running -= 1


@pytest.fixture
def home(tmp_path):
    h = open_home(tmp_path / "home")
    add_endpoint(h, make_endpoint("src", host="127.0.0.1", port=1, max_concurrent_migrations=2,
                                  max_concurrent_incremental=1))
    add_endpoint(h, make_endpoint("dst", host="127.0.0.1", port=2))
    return h


def users(*names: str) -> list[UserRow]:
    return [UserRow(i + 2, f"{n}@contoso.test", n, f"pw-{n}-Secret") for i, n in enumerate(names)]


def make_batch(home, name="b", names=("alice", "bob", "carol"), **kw):
    create_batch(home, name, endpoint="src", dest_endpoint="dst", users=users(*names), **kw)
    return start_batch(home, name)


def runner(home, mover, **kw) -> Runner:
    r = Runner(home, mover=mover, notifier=Notifier(None), lease_seconds=kw.pop("lease", 2.0),
               poll_seconds=0.05, **kw)
    r.retry_delay = 0.01
    return r


def statuses(home, name="b"):
    return {u["email"].split("@")[0]: u["status"] for u in user_rows(home, name)}


async def test_initial_sync_until_idle(home):
    make_batch(home)
    m = FakeMover()
    await runner(home, m).run(until_idle=True)
    assert statuses(home) == {"alice": "Synced", "bob": "Synced", "carol": "Synced"}
    assert get_batch(home, "b").status == "Synced"
    rows = user_rows(home, "b")
    assert all(r["items_synced"] == 1 and r["bytes"] == 100 and r["error"] is None for r in rows)
    assert all(timedelta(hours=23.9) < r["next_sync"] - r["last_sync"] <= timedelta(hours=24) for r in rows)
    assert sorted(m.calls) == [(f"{n}@contoso.test", "initial") for n in ("alice", "bob", "carol")]
    # Nothing is due any more: a second run does nothing.
    await runner(home, m).run(until_idle=True)
    assert len(m.calls) == 3


async def test_created_batch_is_not_run(home):
    create_batch(home, "b", endpoint="src", dest_endpoint="dst", users=users("alice"))
    m = FakeMover()
    await runner(home, m).run(until_idle=True)
    assert m.calls == [] and statuses(home) == {"alice": "Queued"}


async def test_failure_explained_and_password_redacted(home):
    make_batch(home)
    m = FakeMover()
    m.fail["bob@contoso.test"] = AuthenticationError("LOGIN bob pw-bob-Secret refused",
                                                     hint="check the password")
    await runner(home, m).run(until_idle=True)
    assert statuses(home) == {"alice": "Synced", "bob": "Failed", "carol": "Synced"}
    bob = next(u for u in user_rows(home, "b") if u["email"].startswith("bob"))
    assert "refused" in bob["error"] and "check the password" in bob["error"]
    assert "pw-bob-Secret" not in bob["error"]
    assert get_batch(home, "b").status == "SyncedWithErrors"


async def test_all_failed_is_failed_and_resume_retries(home):
    make_batch(home, names=("alice",))
    m = FakeMover()
    m.fail["alice@contoso.test"] = AuthenticationError("no")
    await runner(home, m).run(until_idle=True)
    assert get_batch(home, "b").status == "Failed"
    del m.fail["alice@contoso.test"]
    assert resume_batch(home, "b").status == "Syncing"
    await runner(home, m).run(until_idle=True)
    assert statuses(home) == {"alice": "Synced"} and get_batch(home, "b").status == "Synced"


async def test_transient_errors_are_retried(home):
    make_batch(home, names=("alice",))
    m = FakeMover()
    m.fail_once["alice@contoso.test"] = TransientError("connection reset")
    await runner(home, m).run(until_idle=True)
    assert statuses(home) == {"alice": "Synced"} and len(m.calls) == 2


async def test_per_endpoint_concurrency(home):
    make_batch(home, names=("u1", "u2", "u3", "u4", "u5"))
    m = FakeMover(delay=0.05)
    await runner(home, m).run(until_idle=True)
    assert m.max_running == 2 and len(m.calls) == 5
    # Incremental syncs have their own, smaller limit (1).
    with home.engine.begin() as c:
        c.execute(update(batch_users).values(next_sync=utcnow() - timedelta(seconds=1)))
    m2 = FakeMover(delay=0.05)
    await runner(home, m2).run(until_idle=True)
    assert m2.max_running == 1 and {p for _, p in m2.calls} == {"incremental"}


async def test_incremental_when_due_then_complete(home):
    make_batch(home, names=("alice", "big"))
    m = FakeMover()
    await runner(home, m).run(until_idle=True)
    with home.engine.begin() as c:
        c.execute(update(batch_users).where(batch_users.c.email == "alice@contoso.test")
                  .values(next_sync=utcnow() - timedelta(minutes=1)))
    assert [d.phase for d in find_due(home)] == ["incremental"]
    await runner(home, m).run(until_idle=True)
    alice = next(u for u in user_rows(home, "b") if u["email"].startswith("alice"))
    assert alice["items_synced"] == 2 and alice["runs"] == 2 and alice["status"] == "Synced"
    big = next(u for u in user_rows(home, "b") if u["email"].startswith("big"))
    assert big["items_skipped"] == 1 and big["skipped"][0]["reason"] == "larger than 35 MB"
    complete_batch(home, "b")
    await runner(home, m).run(until_idle=True)
    assert statuses(home) == {"alice": "Completed", "big": "Completed"}
    b = get_batch(home, "b")
    assert b.status == "Completed" and b.completed_at is not None
    assert [p for _, p in m.calls].count("final") == 2


async def test_complete_with_failed_user_is_completed_with_errors(home):
    make_batch(home)
    m = FakeMover()
    m.fail["carol@contoso.test"] = AuthenticationError("bad password")
    await runner(home, m).run(until_idle=True)
    complete_batch(home, "b")
    await runner(home, m).run(until_idle=True)
    assert statuses(home) == {"alice": "Completed", "bob": "Completed", "carol": "Failed"}
    assert get_batch(home, "b").status == "CompletedWithErrors"


async def test_stop_interrupts_running_moves_and_resume_finishes(home):
    make_batch(home, names=("alice",))
    m = FakeMover()
    m.block.clear()
    r = runner(home, m, lease=0.8)
    task = asyncio.create_task(r.run(until_idle=True))
    for _ in range(100):
        if m.running:
            break
        await asyncio.sleep(0.02)
    assert statuses(home) == {"alice": "Syncing"}
    stop_batch(home, "b")
    await asyncio.wait_for(task, 10)
    assert statuses(home) == {"alice": "Stopped"} and get_batch(home, "b").status == "Stopped"
    with home.engine.connect() as c:
        assert c.execute(select(batch_users.c.lease_owner)).scalar_one() is None
    m.block.set()
    resume_batch(home, "b")
    await runner(home, m).run(until_idle=True)
    assert statuses(home) == {"alice": "Synced"}


async def test_runner_stop_releases_and_next_runner_resumes(home):
    make_batch(home, names=("alice",))
    m = FakeMover()
    m.block.clear()
    r = runner(home, m)
    task = asyncio.create_task(r.run())
    while not m.running:
        await asyncio.sleep(0.02)
    r.stop()  # what SIGTERM does
    await asyncio.wait_for(task, 10)
    assert statuses(home) == {"alice": "Syncing"}
    with home.engine.connect() as c:
        assert c.execute(select(batch_users.c.lease_owner)).scalar_one() is None
    m.block.set()
    await runner(home, m).run(until_idle=True)
    assert statuses(home) == {"alice": "Synced"} and m.calls == [("alice@contoso.test", "initial")] * 2


async def test_leases_of_live_and_dead_owners(home):
    import socket

    make_batch(home, names=("alice", "bob"))
    future = utcnow() + timedelta(hours=1)
    with home.engine.begin() as c:
        # alice: leased by a live runner elsewhere -> left alone; bob: by a dead local process.
        c.execute(update(batch_users).where(batch_users.c.email == "alice@contoso.test").values(
            status="Syncing", lease_owner="otherhost:1:abc", lease_expires=future))
        c.execute(update(batch_users).where(batch_users.c.email == "bob@contoso.test").values(
            status="Syncing", lease_owner=f"{socket.gethostname()}:999999:dead", lease_expires=future))
    m = FakeMover()
    await runner(home, m).run(until_idle=True)
    assert statuses(home) == {"alice": "Syncing", "bob": "Synced"}
    with home.engine.begin() as c:  # the other host's lease runs out
        c.execute(update(batch_users).where(batch_users.c.email == "alice@contoso.test").values(
            lease_expires=utcnow() - timedelta(seconds=1)))
    await runner(home, m).run(until_idle=True)
    assert statuses(home) == {"alice": "Synced", "bob": "Synced"}


async def test_delete_removes_passwords_keeps_route_state(home):
    make_batch(home, names=("alice",))
    await runner(home, FakeMover()).run(until_idle=True)
    route = "route:src/alice>imap:dst/alice@contoso.test"
    assert MailboxState(home.engine, route).count() == 1
    assert delete_batch(home, "b") == 1
    # Sync state belongs to the route: a new batch for alice starts from what is copied.
    assert MailboxState(home.engine, route).count() == 1
    with home.engine.connect() as c:
        assert c.execute(select(batch_users)).all() == []
    home.engine.dispose()
    raw = Path(home.path / "state.db").read_bytes()
    assert b"pw-alice-Secret" not in raw


async def test_delete_refused_while_running(home):
    from mailtrek.errors import UsageError

    make_batch(home, names=("alice",))
    with home.engine.begin() as c:
        c.execute(update(batch_users).values(lease_owner="x:1:y", lease_expires=utcnow() + timedelta(minutes=5)))
    with pytest.raises(UsageError, match="running"):
        delete_batch(home, "b")


async def test_same_user_twice_in_unfinished_batches_refused(home):
    from mailtrek.errors import UsageError

    make_batch(home, names=("alice",))
    with pytest.raises(UsageError, match="already in an unfinished batch"):
        create_batch(home, "b2", endpoint="src", dest_endpoint="dst", users=users("alice"))


SCRIPT = textwrap.dedent("""
    import asyncio, sys
    from mailtrek.orchestrate.home import open_home
    from mailtrek.orchestrate.notify import Notifier
    from mailtrek.orchestrate.runner import Runner
    from mailtrek.state.db import MailboxState, MessageState
    from mailtrek.sync.options import CopyReport, FolderReport
    from mailtrek.orchestrate.home import utcnow

    log = open(sys.argv[2], "a", buffering=1)

    async def mover(home, job):
        log.write(f"start {job.email}\\n")
        await asyncio.sleep(0.25)
        state = MailboxState(home.engine, job.mailbox)
        state.record(("INBOX",), 1, [MessageState(1, "1", None, 10, frozenset())])  # idempotent
        state.flush()
        log.write(f"done {job.email}\\n")
        r = CopyReport(source=job.username, destination=job.email, started=utcnow())
        r.folders.append(FolderReport("INBOX", "INBOX", copied=1))
        return r

    runner = Runner(open_home(sys.argv[1]), mover=mover, notifier=Notifier(None), lease_seconds=30,
                    poll_seconds=0.05)
    asyncio.run(runner.run(until_idle=True))
""")


@pytest.mark.slow
def test_kill_9_and_restart_loses_and_repeats_nothing(tmp_path, home):
    """A runner killed with SIGKILL mid-batch: the next one re-runs exactly the interrupted users."""
    make_batch(home, names=tuple(f"u{i}" for i in range(8)))  # 2 at a time, 0.25 s each
    script = tmp_path / "runner.py"
    script.write_text(SCRIPT)
    log = tmp_path / "moves.log"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[1] / "src"))
    p = subprocess.Popen([sys.executable, str(script), str(home.path), str(log)], env=env)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        text = log.read_text() if log.exists() else ""
        if text.count("done") >= 3 and text.count("start") > text.count("done"):
            break
        time.sleep(0.01)
    p.send_signal(signal.SIGKILL)
    p.wait()
    before = log.read_text().splitlines()
    # "Done" is what the database recorded: a move whose end was logged but not yet
    # recorded when the kill landed is rightly run again (copy first, record second).
    done_before = {u["email"] for u in user_rows(home, "b")
                   if u["status"] == "Synced"}
    interrupted = {line.split()[1] for line in before if line.startswith("start")} - done_before
    assert done_before and interrupted, before
    # The restarted runner sees the dead pid's leases as free at once (no lease wait).
    subprocess.run([sys.executable, str(script), str(home.path), str(log)], env=env, check=True, timeout=30)
    after = log.read_text().splitlines()[len(before):]
    rerun = {line.split()[1] for line in after if line.startswith("start")}
    assert not (rerun & done_before), "a finished user was run again"
    assert interrupted <= rerun
    assert set(statuses(home).values()) == {"Synced"}
    for u in user_rows(home, "b"):
        assert u["items_synced"] == 1
    # The run history says what happened: the killed runs ended "interrupted", none is left "running".
    from mailtrek.state.orchestration import user_runs

    with home.engine.connect() as c:
        runs = c.execute(select(user_runs.c.email, user_runs.c.outcome)).all()
    # A run is recorded when its lease is taken, a moment before the move logs "start": the
    # kill may land in between, so the history may name one more user than the log does.
    killed = {e for e, o in runs if o == "interrupted"}
    assert interrupted <= killed and not (killed & done_before) and killed <= rerun, (killed, interrupted)
    assert all(o != "running" for _, o in runs)
    assert json.loads(json.dumps([u["status"] for u in user_rows(home, "b")])) == ["Synced"] * 8


def test_cli_run_stops_cleanly_on_sigterm(tmp_path):
    """`mailtrek run` (no --until-idle) keeps running, logs to stdout, and exits 0 on SIGTERM."""
    env = dict(os.environ, MAILTREK_HOME=str(tmp_path / "home"))
    cmd = [sys.executable, "-c", "import sys; from mailtrek.cli.main import main; sys.argv[0]='mailtrek'; main()",
           "run", "--poll-seconds", "0.1"]
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    first = p.stdout.readline()
    assert "runner" in first and "started" in first
    time.sleep(0.3)
    assert p.poll() is None  # still running
    p.send_signal(signal.SIGTERM)
    out, _ = p.communicate(timeout=10)
    assert p.returncode == 0 and "stopped" in out


async def test_items_synced_moves_during_a_long_sync(home):
    make_batch(home, names=("alice",))
    m = FakeMover()
    m.block.clear()

    async def mover(h, job):
        for _ in range(7):
            job.progress("message", size=10)
        return await m(h, job)

    task = asyncio.create_task(runner(home, mover, lease=0.4).run(until_idle=True))
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and user_rows(home, "b")[0]["items_synced"] != 7:
        await asyncio.sleep(0.05)
    assert user_rows(home, "b")[0]["items_synced"] == 7
    assert user_rows(home, "b")[0]["status"] == "Syncing"
    m.block.set()
    await asyncio.wait_for(task, 10)
    assert user_rows(home, "b")[0]["items_synced"] == 1  # the final count comes from engine state


def test_userroot_refused_up_front(home):
    from mailtrek.errors import UsageError

    rows = [UserRow(2, "a@contoso.test", "a", "pw-a-1", "/users/a")]
    with pytest.raises(UsageError, match=r"UserRoot is not supported yet \(lines 2\)"):
        create_batch(home, "b", endpoint="src", dest_endpoint="dst", users=rows)


async def test_quota_deferral_sets_the_next_run_and_says_when(home):
    """A mover held back by a daily quota (Gmail) is run again when the quota allows."""
    make_batch(home, names=("alice",))
    resume = utcnow() + timedelta(hours=7)

    class QuotaMover(FakeMover):
        async def __call__(self, home, job) -> CopyReport:
            r = await super().__call__(home, job)
            r.errors.append("Gmail download quota reached: 3 message(s) deferred; continues after X")
            r.resume_at = resume
            return r

    await runner(home, QuotaMover()).run(until_idle=True)
    [row] = user_rows(home, "b")
    assert abs((row["next_sync"] - resume).total_seconds()) < 1
    assert "continues after" in row["error"]
