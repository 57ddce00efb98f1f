"""Per-user control of a batch: retry with new credentials, sync now, stop/resume/remove/move
one user, export the failed ones, schedules, live numbers, completion warnings, MX clock.

The walkthrough runs the admin's way through the `mailtrek` CLI (subprocesses) on real
Dovecot into the Microsoft 365 simulator; the rules in between run in-process against a
scheduler whose mover is a small fake (as in test_orchestrate_runner.py).
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import subprocess
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from mailtrek.errors import AuthenticationError, UsageError
from mailtrek.orchestrate import members
from mailtrek.orchestrate.batches import (
    create_batch,
    delete_batch,
    get_batch,
    start_batch,
    user_rows,
)
from mailtrek.orchestrate.csvfile import UserRow
from mailtrek.orchestrate.cutover import CutoverStatus, next_since
from mailtrek.orchestrate.endpoints import add_endpoint, make_endpoint
from mailtrek.orchestrate.home import open_home, utcnow
from mailtrek.orchestrate.notify import Notifier
from mailtrek.orchestrate.runner import Runner
from mailtrek.orchestrate.schedule import run_schedules, set_schedule
from mailtrek.state.db import MailboxState, MessageState
from mailtrek.state.orchestration import batch_users, user_runs
from mailtrek.sync.options import CopyReport, FolderReport

pytestmark = pytest.mark.timeout(120)
DOMAIN = "contoso.test"


# -- in-process: the rules ---------------------------------------------------------------------
class Mover:
    """Copies ``per_run`` 100-byte 'messages' per run into engine state, reporting progress."""

    def __init__(self, per_run: int = 1, pause: float = 0.0) -> None:
        self.calls: list[tuple[str, str, str]] = []  # email, phase, password
        self.wrong: set[str] = set()  # passwords that fail to log in
        self.per_run = per_run
        self.pause = pause
        self.extra: dict[str, int] = {}  # new source mail per user before the next run

    async def __call__(self, home, job) -> CopyReport:
        self.calls.append((job.email, job.phase, job.password))
        if job.password in self.wrong:
            raise AuthenticationError(f"LOGIN {job.username} refused")
        state = MailboxState(home.engine, job.mailbox)
        have = state.count()
        want = max(have, self.per_run) + self.extra.pop(job.email, 0)
        if job.progress:
            job.progress("plan", folders=1, messages=want - have, bytes=100 * (want - have))
        for uid in range(have + 1, want + 1):
            await asyncio.sleep(self.pause)
            state.record(("INBOX",), 1, [MessageState(uid, str(uid), None, 100, frozenset())])
            state.flush()
            if job.progress:
                job.progress("message", size=100)
        r = CopyReport(source=job.username, destination=job.email, started=utcnow())
        r.folders.append(FolderReport("INBOX", "INBOX", copied=want - have, bytes_copied=100 * (want - have)))
        return r


@pytest.fixture
def home(tmp_path):
    h = open_home(tmp_path / "home")
    add_endpoint(h, make_endpoint("src", host="127.0.0.1", port=1))
    add_endpoint(h, make_endpoint("dst", host="127.0.0.1", port=2))
    add_endpoint(h, make_endpoint("other", host="127.0.0.1", port=3))
    return h


def rows(*names: str, bad: tuple[str, ...] = ()) -> list[UserRow]:
    return [UserRow(i + 2, f"{n}@{DOMAIN}", n, f"Wrong-{n}" if n in bad else f"Pw-{n}-1")
            for i, n in enumerate(names)]


async def run(home, mover) -> None:
    r = Runner(home, mover=mover, notifier=Notifier(None), lease_seconds=2.0, poll_seconds=0.05)
    r.retry_delay = 0.01
    await r.run(until_idle=True)


def by_user(home, batch="b") -> dict[str, dict]:
    return {u["email"].split("@")[0]: u for u in user_rows(home, batch)}


async def test_retry_with_new_password_then_sync_now(home):
    m = Mover(per_run=3)
    m.wrong = {"Wrong-bob"}
    create_batch(home, "b", endpoint="src", dest_endpoint="dst", users=rows("alice", "bob", bad=("bob",)))
    start_batch(home, "b")
    await run(home, m)
    u = by_user(home)
    assert u["bob"]["status"] == "Failed" and u["bob"]["next_sync"] is None and u["bob"]["runs"] == 1
    assert get_batch(home, "b").status == "SyncedWithErrors"
    # Resume alone retries the same stored password and fails again.
    members.resume_user(home, "b", f"bob@{DOMAIN}")
    await run(home, m)
    assert by_user(home)["bob"]["status"] == "Failed"
    out = members.retry_user(home, "b", f"BOB@{DOMAIN}", password="Pw-bob-1")
    assert out.status == "Queued" and get_batch(home, "b").status == "Syncing"
    await run(home, m)
    u = by_user(home)
    assert u["bob"]["status"] == "Synced" and u["bob"]["items_synced"] == 3 and u["bob"]["error"] is None
    assert m.calls[-1] == (f"bob@{DOMAIN}", "initial", "Pw-bob-1")
    assert get_batch(home, "b").status == "Synced"
    # Sync now: alice only, before her 24 h are up.
    m.extra[f"alice@{DOMAIN}"] = 1
    members.sync_now(home, "b", f"alice@{DOMAIN}")
    await run(home, m)
    assert m.calls[-1][:2] == (f"alice@{DOMAIN}", "incremental")
    assert by_user(home)["alice"]["items_synced"] == 4 and by_user(home)["bob"]["runs"] == 3
    # Run history: alice had two ok runs, bob two failures then an ok one.
    with home.engine.connect() as c:
        hist = c.execute(select(user_runs.c.email, user_runs.c.outcome).order_by(user_runs.c.id)).all()
    assert [o for e, o in hist if e.startswith("bob")] == ["failed", "failed", "ok"]
    detail = members.user_detail(home, "b", f"alice@{DOMAIN}")
    assert [r["outcome"] for r in detail["history"]] == ["ok", "ok"] and detail["history"][0]["items_copied"] == 1
    assert detail["folders"] == [{"folder": "INBOX", "source_messages": None, "synced": 4, "complete": False}]


async def test_stop_resume_remove_move_one_user(home):
    m = Mover()
    create_batch(home, "b", endpoint="src", dest_endpoint="dst", users=rows("alice", "bob", "carol"))
    create_batch(home, "b2", endpoint="src", dest_endpoint="dst", users=rows("dave"))
    create_batch(home, "elsewhere", endpoint="other", dest_endpoint="dst", users=rows("erin"))
    start_batch(home, "b")
    members.stop_user(home, "b", f"carol@{DOMAIN}")
    await run(home, m)
    assert {k: v["status"] for k, v in by_user(home).items()} == {"alice": "Synced", "bob": "Synced",
                                                                  "carol": "Stopped"}
    assert get_batch(home, "b").status == "SyncedWithErrors"
    members.resume_user(home, "b", f"carol@{DOMAIN}")
    await run(home, m)
    assert by_user(home)["carol"]["status"] == "Synced" and get_batch(home, "b").status == "Synced"
    assert members.remove_user(home, "b", f"carol@{DOMAIN}").status == "Removed"
    assert "carol" not in by_user(home)
    with pytest.raises(UsageError, match="another source"):
        members.move_user(home, "b", f"bob@{DOMAIN}", "elsewhere")
    members.move_user(home, "b", f"bob@{DOMAIN}", "b2")
    assert set(by_user(home)) == {"alice"} and by_user(home, "b2")["bob"]["status"] == "Synced"
    # State belongs to the route: bob's synced message moved with him, nothing is copied twice.
    start_batch(home, "b2")
    members.sync_now(home, "b2")
    await run(home, m)
    assert by_user(home, "b2")["bob"]["items_synced"] == 1
    with home.engine.connect() as c:
        assert c.execute(select(user_runs.c.batch).where(user_runs.c.email == f"bob@{DOMAIN}")).scalars().all() \
            == ["b2", "b2"]


async def test_recreated_batch_adds_nothing(home):
    m = Mover(per_run=5)
    create_batch(home, "b", endpoint="src", dest_endpoint="dst", users=rows("alice"))
    start_batch(home, "b")
    await run(home, m)
    delete_batch(home, "b")
    create_batch(home, "again", endpoint="src", dest_endpoint="dst", users=rows("alice"))
    start_batch(home, "again")
    await run(home, m)
    with home.engine.connect() as c:
        last = c.execute(select(user_runs.c.items_copied).order_by(user_runs.c.id.desc())).scalar()
    assert last == 0 and by_user(home, "again")["alice"]["items_synced"] == 5


async def test_live_counts_never_go_backwards(home, monkeypatch):
    monkeypatch.setenv("MAILTREK_PROGRESS_SECONDS", "0.1")
    m = Mover(per_run=12, pause=0.08)
    create_batch(home, "b", endpoint="src", dest_endpoint="dst", users=rows("alice"))
    start_batch(home, "b")
    task = asyncio.create_task(run(home, m))
    seen = []
    while not task.done():
        u = by_user(home)["alice"]
        seen.append((u["items_synced"], u["bytes"], u["items_total"]))
        await asyncio.sleep(0.05)
    await task
    mid = [s for s in seen if 0 < s[0] < 12]
    assert mid, seen  # counts moved during the run, not only at its end
    assert all(b == 100 * n for n, b, _ in mid)  # bytes move with the items
    assert all(t == 12 for _, _, t in mid)  # against the planned total, from the start
    items = [n for n, _, _ in seen]
    assert items == sorted(items)
    u = by_user(home)["alice"]
    assert (u["items_synced"], u["bytes"], u["items_total"]) == (12, 1200, 12)


async def test_export_failed_and_retry_csv(home, tmp_path):
    m = Mover()
    m.wrong = {"Wrong-bob", "Wrong-carol"}
    create_batch(home, "b", endpoint="src", dest_endpoint="dst", users=rows("alice", "bob", "carol",
                                                                            bad=("bob", "carol")))
    start_batch(home, "b")
    await run(home, m)
    text = members.export_failed(home, "b", with_errors=True)
    got = list(csv.DictReader(io.StringIO(text)))
    assert [r["EmailAddress"] for r in got] == [f"bob@{DOMAIN}", f"carol@{DOMAIN}"]
    assert all(r["Password"] == "" and "refused" in r["Error"] for r in got)
    assert "Wrong-" not in text
    from mailtrek.orchestrate.csvfile import parse_users_csv

    fixed = text.replace(f"bob@{DOMAIN},bob,,", f"bob@{DOMAIN},bob,Pw-bob-1,")
    fixed = fixed.replace(f"carol@{DOMAIN},carol,,", f"carol@{DOMAIN},carol,Pw-carol-1,")
    out = members.retry_from_csv(home, "b", parse_users_csv(fixed.encode(), allow_unknown_columns=True))
    assert [o.status for o in out] == ["Queued", "Queued"]
    await run(home, m)
    assert {u["status"] for u in user_rows(home, "b")} == {"Synced"}
    with pytest.raises(UsageError, match="not in batch"):
        members.retry_from_csv(home, "b", rows("zed"))


async def test_schedules_start_and_complete(home):
    m = Mover()
    create_batch(home, "b", endpoint="src", dest_endpoint="dst", users=rows("alice"),
                 start_at=utcnow() + timedelta(hours=1))
    await run(home, m)
    assert m.calls == [] and get_batch(home, "b").status == "Created"
    assert run_schedules(home, utcnow() + timedelta(hours=2)) == ["batch b: started as scheduled"]
    await run(home, m)
    assert by_user(home)["alice"]["status"] == "Synced"
    set_schedule(home, "b", interval_hours=1)
    nxt = by_user(home)["alice"]
    assert nxt["next_sync"] - nxt["last_sync"] == timedelta(hours=1)
    set_schedule(home, "b", complete_at="now")
    await run(home, m)  # the runner completes it on its next pass
    assert get_batch(home, "b").status == "Completed" and get_batch(home, "b").complete_at is None
    with pytest.raises(UsageError, match="already Completed"):
        set_schedule(home, "b", complete_at="+1h")


def test_completion_warnings(home):
    create_batch(home, "b", endpoint="src", dest_endpoint="dst", users=rows("alice", "bob", "carol"))
    with home.engine.begin() as c:
        c.execute(update(batch_users).where(batch_users.c.email == f"alice@{DOMAIN}").values(
            status="Synced", ever_synced=True))
        c.execute(update(batch_users).where(batch_users.c.email == f"bob@{DOMAIN}").values(
            status="Failed", error="login refused"))
    assert members.completion_warnings(home, "b") == [
        f"bob@{DOMAIN}: Failed (login refused), never synced", f"carol@{DOMAIN}: Queued, never synced"]


def test_subjects_decoded_and_units_labelled():
    from mailtrek.orchestrate.reports import decode_subject
    from mailtrek.units import human_bytes

    assert decode_subject("=?EUC-KR?Q?=C7=D1=B1=DB?= test") == "\ud55c\uae00 test"
    assert decode_subject("=?x-unknown?Q?abc?=") == "=?x-unknown?Q?abc?="  # kept raw, no crash
    assert decode_subject("plain") == "plain" and decode_subject(None) is None
    assert [human_bytes(n) for n in (0, 512, 2355, 3 * 1048576, 5 * 1073741824)] == [
        "0 B", "512 B", "2.3 KiB", "3.0 MiB", "5.00 GiB"]


def test_mx_clock_only_moves_on_a_positive_sighting():
    t0, t1 = utcnow() - timedelta(hours=10), utcnow()
    new = CutoverStatus("x.test", mx=[(0, "x.mx.microsoft")], expected_from="suffix", switched=True)
    old = CutoverStatus("x.test", mx=[(10, "mail.old.test")], expected_from="suffix")
    empty = CutoverStatus("x.test", expected_from="suffix")
    failed = CutoverStatus("x.test", mx=[(10, "mail.old.test")], problems=["MX lookup of x.test failed: Timeout"],
                           expected_from="suffix")
    unknown = CutoverStatus("x.test", mx=[(10, "mail.old.test")], expected_from="tenant")  # Graph said nothing
    assert next_since(None, new, t1) == t1 and next_since(t0, new, t1) == t0
    assert next_since(t0, empty, t1) == t0  # an empty DNS answer keeps the clock
    assert next_since(t0, failed, t1) == t0 and next_since(t0, unknown, t1) == t0
    assert next_since(t0, old, t1) is None  # only the old MX, seen, resets it
    assert next_since(None, empty, t1) is None


def test_migration_rekeys_state_by_route(tmp_path):
    """A 0003 database with BATCH/EMAIL state keys comes out keyed by route."""
    from alembic import command
    from sqlalchemy import create_engine, text

    from mailtrek.state.migrate import _config, upgrade

    engine = create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    with engine.begin() as c:
        command.upgrade(_config(c), "0003")
    with engine.begin() as c:
        c.execute(text("INSERT INTO batches (name, status, source_endpoint, dest_endpoint, options_json, "
                       "notify_json, incremental_hours, created_at) VALUES ('b', 'Synced', 'src', 'dst', '{}', "
                       "'[]', 24, '2026-01-01 00:00:00')"))
        c.execute(text("INSERT INTO batch_users (batch, email, line, username, status, ever_synced, items_synced, "
                       "items_skipped, bytes, runs) VALUES ('b', 'a@x.test', 2, 'A', 'Synced', 1, 1, 0, 9, 1)"))
        c.execute(text("INSERT INTO folders (mailbox, src_path, complete) VALUES ('b/a@x.test', 'INBOX', 1)"))
        c.execute(text("INSERT INTO messages (mailbox, src_path, src_uidvalidity, src_uid, size, status) "
                       "VALUES ('b/a@x.test', 'INBOX', 1, 1, 9, 'done')"))
    assert upgrade(engine)
    route = "route:src/a>imap:dst/a@x.test"
    assert MailboxState(engine, route).totals() == (1, 9)
    with engine.connect() as c:
        assert c.execute(text("SELECT mailbox FROM folders")).scalars().all() == [route]
        assert "items_total" in {r[1] for r in c.execute(text("PRAGMA table_info(batch_users)"))}


# -- the same actions through the JSON API and the pages ---------------------------------------
async def test_api_and_pages(home):
    from fastapi.testclient import TestClient

    import mailtrek.state.web  # noqa: F401
    from mailtrek.web.app import create_app
    from mailtrek.web.auth import set_admin_password

    m = Mover(per_run=2)
    m.wrong = {"Wrong-bob"}
    create_batch(home, "b", endpoint="src", dest_endpoint="dst", users=rows("alice", "bob", bad=("bob",)))
    start_batch(home, "b")
    await run(home, m)
    set_admin_password(home, "admin pw 123")
    bob, alice = f"bob@{DOMAIN}", f"alice@{DOMAIN}"
    with TestClient(create_app(home)) as c:
        csrf = c.post("/api/login", json={"password": "admin pw 123"}).json()["csrf"]
        c.headers["X-CSRF-Token"] = csrf
        page = c.get(f"/batches/b/users/{bob}").text
        assert "after a retry" in page and 'id="user-retry"' in page and "None so far" in page
        assert "every message was copied" not in page and "1 run(s)" in page and ">failed<" in page
        # Completion lists the failed user and needs a yes.
        r = c.post("/api/batches/b/complete", json={"force": True})
        assert r.status_code == 400 and f"{bob}: Failed" in r.json()["detail"], r.text
        assert f"{bob}: Failed" in c.get("/batches/b/confirm/complete").text
        r = c.get("/api/batches/b/failed.csv", params={"with_errors": True})
        assert r.text.startswith("EmailAddress,UserName,Password,Error") and f"{bob},bob,," in r.text
        r = c.post(f"/api/batches/b/users/{bob}/retry", json={"password": "Pw-bob-1"})
        assert r.status_code == 200 and r.json()["status"] == "Queued", r.text
        await run(home, m)
        assert c.get(f"/api/batches/b/users/{bob}").json()["status"] == "Synced"
        r = c.post("/api/batches/b/sync", json={})
        assert {u["message"] for u in r.json()["users"]} == {"incremental sync starts now"}
        assert 'action="/batches/b/sync"' in c.get("/batches/b/confirm/sync").text
        r = c.post("/batches/b/sync", data={"csrf": csrf}, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/batches/b?done=sync"
        assert c.patch("/api/batches/b", json={"incremental_hours": 2}).json()["incremental_hours"] == 2
        r = c.post(f"/batches/b/users/{alice}/stop", data={"csrf": csrf}, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].endswith("done=stop")
        assert by_user(home)["alice"]["status"] == "Stopped"
        assert c.delete(f"/api/batches/b/users/{alice}").json()["status"] == "Removed"
        r = c.post("/api/batches/b/complete", json={"force": True})
        assert r.status_code == 200 and r.json()["status"] == "Completing" and r.json()["left_out"] == []
        assert "Pw-bob-1" not in c.get(f"/batches/b/users/{bob}").text
        r = c.post("/api/batches", data={"name": "later", "endpoint": "src", "dest_endpoint": "dst",
                                          "start_at": "+2h"},
                   files={"csv": ("u.csv", b"EmailAddress,UserName,Password\nzed@contoso.test,zed,Pw-z-1\n")})
        assert r.status_code == 201, r.text
        assert c.get("/api/batches/later").json()["start_at"] is not None


# -- the walkthrough: CLI on real Dovecot into the simulator ----------------------------------------
MAILTREK = ["-c", "import sys; from mailtrek.cli.main import main; sys.argv[0] = 'mailtrek'; main()"]


@pytest.fixture(scope="module")
def sim():
    server = pytest.importorskip("mailtrek.sim.server")
    from mailtrek.sim.config import SimConfig

    s = server.Simulator(SimConfig(users=[]))
    s.start()
    yield s
    s.stop()


def cli(home, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    import sys

    env = dict(os.environ, MAILTREK_HOME=str(home), MAILTREK_LEASE_SECONDS="10")
    p = subprocess.run([sys.executable, *MAILTREK, *args], env=env, capture_output=True, text=True,
                       timeout=90, stdin=subprocess.DEVNULL)
    if check and p.returncode != 0:
        raise AssertionError(f"mailtrek {' '.join(args)} -> {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


def inproc(home, *args: str, check: bool = True) -> Any:
    """Run a command in this process (quicker than a subprocess; stdin is no terminal either).

    Not for `run`: its blocking token requests must not share a process with the simulator.
    Returns the output, or with ``check=False`` click's result.
    """
    from typer.testing import CliRunner

    from mailtrek.cli.main import app

    r = CliRunner().invoke(app, list(args), env={"MAILTREK_HOME": str(home), "MAILTREK_LEASE_SECONDS": "10"})
    if not check:
        return r
    assert r.exit_code == 0, r.output
    return r.output


@pytest.fixture(scope="module")
def new_mx():
    from dnslib import MX

    from dns_helpers import Zone, start_dns

    zone = Zone()
    zone.set(DOMAIN, "MX", [MX("contoso-test.mx.microsoft", 0)])
    server, ns = start_dns(zone)
    yield ns
    server.stop()


def mail(user: str, n: int) -> bytes:
    return (f"From: s{n}@example.test\r\nTo: {user}@{DOMAIN}\r\nSubject: =?UTF-8?Q?caf=C3=A9_{n}?=\r\n"
            f"Message-ID: <{user}.{n}@example.test>\r\nDate: Mon, 2 Mar 2026 10:{n:02d}:00 +0000\r\n\r\n"
            f"body {n}\r\n" + "y" * 3000 + "\r\n").encode()


def append(dov, user, password, *ns: int) -> None:
    import imaplib
    import ssl

    c = imaplib.IMAP4_SSL(dov.host, dov.ssl_port, ssl_context=ssl.create_default_context(cafile=str(dov.ca_file)))
    c.login(user, password)
    for n in ns:
        c.append("INBOX", "", None, mail(user, n))
    c.logout()


def show(home, batch: str) -> dict:
    d = json.loads(inproc(home, "batch", "show", batch, "--json"))
    return {u["email"].split("@")[0]: u for u in d["users"]} | {"": d}


@pytest.mark.slow
def test_admin_walkthrough(tmp_path, dovecot_src, sim, new_mx):
    """Wrong password -> export -> fix -> retry -> sync now -> complete -> re-create adds nothing."""
    tag = os.urandom(3).hex()
    good, bad = f"wa{tag}", f"wb{tag}"
    pw = {u: f"Pw-{u}-{os.urandom(4).hex()}" for u in (good, bad)}
    for u in (good, bad):
        dovecot_src.add_user(u, pw[u])
        append(dovecot_src, u, pw[u], *range(1, 6))
        sim.add_user(f"{u}@{DOMAIN}")
    home = tmp_path / "home"
    inproc(home, "endpoint", "add", "src", "--host", dovecot_src.host, "--port", str(dovecot_src.ssl_port),
        "--security", "ssl", "--ca-file", str(dovecot_src.ca_file))
    secret = tmp_path / "secret"
    secret.write_text("walk-Client-Secret-7\n")
    inproc(home, "tenant", "add", "t", "--tenant-id", sim.config.tenant_id, "--client-id", "walk",
        "--client-secret-file", str(secret), "--m365-authority", sim.authority(),
        "--graph-url", f"{sim.base_url}/graph", "--ca-file", str(sim.ca_file), "--no-test")
    users = tmp_path / "users.csv"
    users.write_text(f"EmailAddress,UserName,Password\n{good}@{DOMAIN},{good},{pw[good]}\n"
                     f"{bad}@{DOMAIN},{bad},Wrong-{pw[bad]}\n")
    inproc(home, "batch", "create", "w", "--endpoint", "src", "--tenant", "t", "--csv", str(users), "--autostart")
    cli(home, "run", "--until-idle")
    s = show(home, "w")
    assert s[bad]["status"] == "Failed" and s[bad]["next_sync"] is None and s[good]["items_synced"] == 5
    assert s[good]["items_total"] == 5 and s[good]["bytes"] > 15000

    # Completion warns about the failed user and, without a terminal, needs --yes.
    mx = ("--nameserver", new_mx, "--expect-mx", "contoso-test.mx.microsoft")
    r = inproc(home, "batch", "complete", "w", "--force", *mx, check=False)
    assert r.exit_code == 2 and f"{bad}@{DOMAIN}: Failed" in r.output and "--yes" in r.output
    assert show(home, "w")[""]["status"] == "SyncedWithErrors"

    # A corrected CSV for the same users is refused as a new batch, with the way out.
    r = inproc(home, "batch", "create", "w2", "--endpoint", "src", "--tenant", "t", "--csv", str(users), check=False)
    assert r.exit_code == 2 and "batch retry" in r.output

    # Export the failed users, fill in the password, retry from that file.
    failed = tmp_path / "failed.csv"
    inproc(home, "batch", "export-failed", "w", "--output", str(failed), "--with-errors")
    text = failed.read_text()
    assert text.startswith("EmailAddress,UserName,Password,Error\n") and f"{bad}@{DOMAIN},{bad},," in text
    failed.write_text(text.replace(f"{bad}@{DOMAIN},{bad},,", f"{bad}@{DOMAIN},{bad},{pw[bad]},"))
    out = inproc(home, "batch", "retry", "w", "--csv", str(failed))
    assert f"{bad}@{DOMAIN}: Queued" in out

    # Meanwhile new mail, then sync now for one user: it arrives without waiting 24 h.
    # (Re-entering a password by file first, as after a password change on the old server.)
    append(dovecot_src, good, pw[good], 6)
    pw_file = tmp_path / "good.txt"
    pw_file.write_text(pw[good] + "\n")
    out = inproc(home, "batch", "retry", "w", "--user", f"{good}@{DOMAIN}", "--password-file", str(pw_file))
    assert "Synced - runs again now (incremental sync)" in out and pw[good] not in out
    assert "incremental sync starts now" in inproc(home, "batch", "sync", "w", "--user", f"{good}@{DOMAIN}")
    cli(home, "run", "--until-idle")
    s = show(home, "w")
    assert s[bad]["status"] == "Synced" and s[bad]["items_synced"] == 5 and s[bad]["error"] is None
    assert len(sim.messages(f"{bad}@{DOMAIN}")) == 5
    assert len(sim.messages(f"{good}@{DOMAIN}")) == 6 and s[good]["items_synced"] == 6
    detail = inproc(home, "batch", "show", "w", "--user", f"{good}@{DOMAIN}")
    assert "INBOX: 6 of 6 (complete)" in detail and detail.count(" ok ") == 2 and "2 run(s)" in detail

    # Complete: nobody is left behind now, so no question.
    r = inproc(home, "batch", "complete", "w", *mx, check=False)
    assert r.exit_code == 2 and "completion is possible from" in r.output  # the 72-hour clock runs
    assert "left out" not in inproc(home, "batch", "complete", "w", "--force", *mx)
    cli(home, "run", "--until-idle")
    assert show(home, "w")[""]["status"] == "Completed"

    # A new batch for the migrated users (the old one deleted) copies nothing again.
    inproc(home, "batch", "delete", "w")
    users.write_text(users.read_text().replace(f"Wrong-{pw[bad]}", pw[bad]))
    inproc(home, "batch", "create", "again", "--endpoint", "src", "--tenant", "t", "--csv", str(users), "--autostart")
    cli(home, "run", "--until-idle")
    s = show(home, "again")
    assert len(sim.messages(f"{good}@{DOMAIN}")) == 6 and len(sim.messages(f"{bad}@{DOMAIN}")) == 5
    assert s[good]["items_synced"] == 6 and s[bad]["items_synced"] == 5
    # remove-user takes the address as an argument (the contract).
    assert "Removed" in inproc(home, "batch", "remove-user", "again", f"{bad}@{DOMAIN}")
    assert bad not in show(home, "again")
