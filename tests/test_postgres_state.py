"""The state schema on a real PostgreSQL: migrations, upserts, migrate-to, restarts."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import func, inspect, select, text

from mailtrek.errors import StateError
from mailtrek.state.db import FolderState, MailboxState, MessageState, open_engine
from mailtrek.state.migrate import current, head
from mailtrek.state.pgserver import find_bin, private_postgres

MAILTREK = [sys.executable, "-c", "import sys; from mailtrek.cli.main import main; sys.argv[0] = 'mailtrek'; main()"]
pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def pg():
    if find_bin() is None:
        pytest.skip("PostgreSQL server binaries missing (apt-get install postgresql)")
    with private_postgres() as server:
        yield server


@pytest.fixture
def fresh(pg):
    pg.reset()
    return pg


def cli(home: Path, *args: str, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    e = dict(os.environ, MAILTREK_HOME=str(home), **(env or {}))
    e.pop("MAILTREK_DATABASE_URL", None) if env is None or "MAILTREK_DATABASE_URL" not in env else None
    p = subprocess.run([*MAILTREK, *args], env=e, capture_output=True, text=True, timeout=60)
    if check and p.returncode != 0:
        raise AssertionError(f"{args} -> {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


def test_schema_and_job_queue_created_at_head(fresh):
    engine = open_engine(fresh.url)
    names = set(inspect(engine).get_table_names())
    assert {"folders", "messages", "endpoints", "tenants", "batches", "batch_users", "mx_sightings",
            "web_admin", "web_sessions", "procrastinate_jobs", "alembic_version", "audit_log",
            "route_rates"} <= names
    with engine.connect() as c:
        assert current(c) == head() is not None  # never the id itself: revisions are added over time
        assert c.execute(text("SELECT data_type FROM information_schema.columns WHERE table_name = 'batch_users' "
                              "AND column_name = 'lease_expires'")).scalar_one() == "timestamp with time zone"


def test_many_processes_opening_at_once_migrate_once(fresh):
    errors: list[BaseException] = []

    def open_it() -> None:
        try:
            open_engine(fresh.url).dispose()
        except BaseException as e:
            errors.append(e)
    threads = [threading.Thread(target=open_it) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    with open_engine(fresh.url).connect() as c:
        assert c.execute(text("SELECT count(*) FROM alembic_version")).scalar_one() == 1


def test_mailbox_state_upserts_on_postgres(fresh):
    st = MailboxState(open_engine(fresh.url), "b/alice@x")
    st.save_folder(FolderState(src_path=("INBOX",), src_uidvalidity=7, src_messages=2))
    st.save_folder(FolderState(src_path=("INBOX",), src_uidvalidity=7, src_messages=3, complete=True))
    st.record(("INBOX",), 7, [MessageState(1, None, "fp1", 10, frozenset(), "in_doubt")])
    st.record(("INBOX",), 7, [MessageState(1, "d1", "fp1", 10, frozenset({"\\Seen"}))])  # replaces
    st.record(("INBOX",), 7, [MessageState(2, "d2", "fp2", 20, frozenset())])
    st.update_flags(("INBOX",), 7, [(2, frozenset({"\\Flagged"}))])
    got = st.messages_of(("INBOX",), 7)
    assert got[1].status == "done" and got[1].dest_id == "d1" and got[1].flags == {"\\Seen"}
    assert got[2].flags == {"\\Flagged"} and st.count() == 2
    fs = st.folder_states()[("INBOX",)]
    assert fs.src_messages == 3 and fs.complete
    st.forget_messages(("INBOX",), 7, [1])
    assert st.count() == 1


def test_unreachable_database_names_no_password():
    with pytest.raises(StateError) as e:
        open_engine("postgresql://mt:Sekrit-Pw-991@127.0.0.1:1/nothing")
    assert "Sekrit-Pw-991" not in str(e.value) and "127.0.0.1:1" in str(e.value)


def test_engine_survives_a_database_restart(fresh):
    engine = open_engine(fresh.url)
    with engine.connect() as c:
        c.execute(text("SELECT 1"))
    fresh.restart()
    with engine.connect() as c:  # pool_pre_ping replaces the dead pooled connection
        assert c.execute(text("SELECT 1")).scalar_one() == 1


def build_sqlite_home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    cli(home, "endpoint", "add", "src", "--host", "imap.example.test", "--port", "993", "--security", "ssl")
    secret = tmp_path / "secret"
    secret.write_text("Mig-Client-Secret-7\n")
    cli(home, "tenant", "add", "t", "--tenant-id", "tid", "--client-id", "cid", "--client-secret-file", str(secret),
        "--no-test")
    csv = tmp_path / "users.csv"
    csv.write_text("EmailAddress,UserName,Password\n" + "".join(
        f"u{i}@contoso.test,u{i},Pw-u{i}-secret\n" for i in range(5)))
    cli(home, "batch", "create", "b1", "--endpoint", "src", "--tenant", "t", "--csv", str(csv), "--autostart")
    engine = open_engine(home / "state.db")
    for i in range(5):
        st = MailboxState(engine, f"b1/u{i}@contoso.test")
        st.save_folder(FolderState(src_path=("INBOX", "Sub"), src_uidvalidity=1000 + i, src_messages=30))
        st.record(("INBOX", "Sub"), 1000 + i, [
            MessageState(uid, f"dest-{uid}", f"{uid:064x}", uid * 100, frozenset({"\\Seen", "$Label_ü"}))
            for uid in range(1, 31)])
        st.flush()
    with engine.begin() as c:
        c.execute(text("UPDATE batch_users SET next_sync = '2031-05-06 07:08:09.123456', runs = 3 "
                       "WHERE email = 'u2@contoso.test'"))
    engine.dispose()
    return home


@pytest.fixture(scope="module")
def sqlite_home_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite home with a batch and mailbox state, built once (eight CLI start-ups)."""
    return build_sqlite_home(tmp_path_factory.mktemp("sqlite-template"))


@pytest.fixture
def make_sqlite_home(sqlite_home_template: Path) -> Callable[[Path], Path]:
    """Return ``make(tmp_path)``: a private copy of the template home at ``tmp_path/home``."""

    def make(tmp_path: Path) -> Path:
        return Path(shutil.copytree(sqlite_home_template, tmp_path / "home"))

    return make


def test_migrate_to_copies_everything_and_switches(tmp_path, fresh, make_sqlite_home):
    home = make_sqlite_home(tmp_path)
    before = json.loads(cli(home, "batch", "show", "b1", "--json").stdout)
    out = cli(home, "state", "migrate-to", fresh.url)
    assert "messages: 150 rows" in out.stdout and "equal" in out.stdout
    src, dst = open_engine(home / "state.db"), open_engine(fresh.url)
    from mailtrek.state.migrate import all_metadata
    from mailtrek.state.migrate_to import verify_equal

    for t in all_metadata().sorted_tables:
        with src.connect() as a, dst.connect() as b:
            assert a.execute(select(func.count()).select_from(t)).scalar_one() == \
                b.execute(select(func.count()).select_from(t)).scalar_one(), t.name
    verify_equal(src, dst)  # row by row
    # The home now reads PostgreSQL: same batch, same users, passwords still decrypt.
    assert (home / "database-url").read_text().strip() == fresh.url
    assert oct((home / "database-url").stat().st_mode & 0o777) == "0o600"
    after = json.loads(cli(home, "batch", "show", "b1", "--json").stdout)
    assert after == before
    assert "postgresql" in cli(home, "state", "show").stdout
    st = MailboxState(dst, "b1/u3@contoso.test")
    msgs = st.messages_of(("INBOX", "Sub"), 1003)
    assert len(msgs) == 30 and msgs[7].flags == {"\\Seen", "$Label_ü"} and msgs[7].fingerprint == f"{7:064x}"
    with dst.connect() as c:
        nxt = c.execute(text("SELECT next_sync FROM batch_users WHERE email = 'u2@contoso.test'")).scalar_one()
    assert nxt.isoformat() == "2031-05-06T07:08:09.123456+00:00"


def test_migrate_to_refuses_a_database_that_holds_state(tmp_path, fresh, make_sqlite_home):
    home = make_sqlite_home(tmp_path)
    cli(home, "state", "migrate-to", fresh.url, "--no-use")
    again = cli(home, "state", "migrate-to", fresh.url, check=False)
    assert again.returncode != 0 and "already holds state" in again.stderr
    assert not (home / "database-url").exists()


def test_migrate_to_bad_input(tmp_path, fresh, make_sqlite_home):
    home = tmp_path / "empty"
    p = cli(home, "state", "migrate-to", fresh.url, check=False)
    assert p.returncode != 0 and "no SQLite state" in p.stderr
    home = make_sqlite_home(tmp_path)
    p = cli(home, "state", "migrate-to", "not-a-url", check=False)
    assert p.returncode != 0 and "database URL" in p.stderr
    p = cli(home, "state", "migrate-to", "postgresql://u:Hidden-Pw-55@127.0.0.1:1/x", check=False)
    assert p.returncode != 0 and "Hidden-Pw-55" not in p.stdout + p.stderr


def test_worker_refuses_sqlite_state(tmp_path):
    p = cli(tmp_path / "h", "worker", check=False)
    assert p.returncode != 0 and "PostgreSQL" in p.stderr


def test_state_use_switches_and_back(tmp_path, fresh):
    home = tmp_path / "h"
    out = cli(home, "state", "use", fresh.url).stdout
    assert "postgresql" in out and (home / "database-url").exists()
    assert "postgresql" in cli(home, "state", "show").stdout
    cli(home, "endpoint", "add", "src", "--host", "imap.example.test")
    with open_engine(fresh.url).connect() as c:
        assert c.execute(text("SELECT count(*) FROM endpoints")).scalar_one() == 1
    cli(home, "state", "use", "sqlite")
    assert "sqlite" in cli(home, "state", "show").stdout
    assert not (home / "database-url").exists()


async def test_two_schedulers_share_postgres_limits_and_users(tmp_path, fresh):
    """Two `mailtrek run` schedulers on one PostgreSQL state: each user once, the limit fleet-wide."""
    import asyncio

    from mailtrek.orchestrate.batches import create_batch, start_batch, user_rows
    from mailtrek.orchestrate.csvfile import UserRow
    from mailtrek.orchestrate.endpoints import add_endpoint, make_endpoint
    from mailtrek.orchestrate.home import open_home, utcnow
    from mailtrek.orchestrate.notify import Notifier
    from mailtrek.orchestrate.runner import Runner
    from mailtrek.sync.options import CopyReport, FolderReport

    home = open_home(tmp_path / "home", state=fresh.url)
    assert home.engine.dialect.name == "postgresql" and not (tmp_path / "home" / "state.db").exists()
    add_endpoint(home, make_endpoint("src", host="127.0.0.1", port=1, max_concurrent_migrations=2))
    add_endpoint(home, make_endpoint("dst", host="127.0.0.1", port=2))
    names = [f"u{i}" for i in range(8)]
    create_batch(home, "b", endpoint="src", dest_endpoint="dst",
                 users=[UserRow(i + 2, f"{n}@contoso.test", n, f"pw-{n}") for i, n in enumerate(names)])
    start_batch(home, "b")
    calls: list[str] = []
    running = {"now": 0, "most": 0}

    async def mover(h, job) -> CopyReport:
        calls.append(job.email)
        running["now"] += 1
        running["most"] = max(running["most"], running["now"])
        try:
            await asyncio.sleep(0.15)
            st = MailboxState(h.engine, job.mailbox)
            st.record(("INBOX",), 1, [MessageState(1, "1", None, 10, frozenset())])
            st.flush()
            r = CopyReport(source=job.username, destination=job.email, started=utcnow())
            r.folders.append(FolderReport("INBOX", "INBOX", selected=1, copied=1, bytes_copied=10))
            return r
        finally:
            running["now"] -= 1

    # Each runner has its own home object and engine, like two machines.
    runners = [Runner(open_home(tmp_path / "home", state=fresh.url), mover=mover, notifier=Notifier(None),
                      lease_seconds=5, poll_seconds=0.05) for _ in range(2)]
    await asyncio.wait_for(asyncio.gather(*(r.run(until_idle=True) for r in runners)), 60)
    # until_idle may end one runner early while the other still works: finish the stragglers.
    await asyncio.wait_for(runners[0].run(until_idle=True), 30)
    assert sorted(calls) == sorted(f"{n}@contoso.test" for n in names)  # each user exactly once
    assert running["most"] == 2  # the endpoint's limit of 2, across both schedulers
    assert {u["status"] for u in user_rows(home, "b")} == {"Synced"}


def test_state_from_a_newer_mailtrek_is_refused_clearly(tmp_path):
    """A database stamped with a revision this version lacks gets StateError, not a traceback."""
    db = tmp_path / "state.db"
    engine = open_engine(db)
    with engine.begin() as c:
        c.execute(text("UPDATE alembic_version SET version_num = '0099_from_the_future'"))
    engine.dispose()
    with pytest.raises(StateError, match="newer version"):
        open_engine(db)
    r = subprocess.run([sys.executable, "-m", "mailtrek", "batch", "list", "--home", str(tmp_path)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 7 and "Traceback" not in r.stderr and "newer version" in r.stderr
