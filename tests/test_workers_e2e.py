"""Three `mailtrek worker` processes share one PostgreSQL state; one is killed mid-mailbox.

Real parts only: a private PostgreSQL (Debian's binaries), Dovecot as the source, the
Microsoft 365 simulator as the destination, the CLI as subprocesses.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from mailtrek.state.db import database_url
from mailtrek.state.pgserver import PgServer, find_bin, private_postgres

pytestmark = pytest.mark.timeout(240)

from test_orchestrate_e2e import DOMAIN, MAILTREK, make_users, show  # noqa: E402
from test_orchestrate_e2e import mailtrek as _mailtrek  # noqa: E402


@pytest.fixture(scope="module")
def pg():
    if find_bin() is None:
        pytest.skip("PostgreSQL server binaries missing (apt-get install postgresql)")
    with private_postgres() as server:
        yield server


@pytest.fixture(scope="module")
def sim():
    from mailtrek.sim.config import SimConfig
    from mailtrek.sim.server import Simulator

    s = Simulator(SimConfig(users=[]))
    s.start()
    yield s
    s.stop()


def env_for(home: Path, pg: PgServer) -> dict[str, str]:
    return dict(os.environ, MAILTREK_HOME=str(home), MAILTREK_DATABASE_URL=pg.url, MAILTREK_LEASE_SECONDS="10")


def start_worker(home: Path, pg: PgServer, log: Path) -> subprocess.Popen:
    out = log.open("w")
    return subprocess.Popen([*MAILTREK, "worker", "--concurrency", "2", "--poll", "0.5", "--stalled-after", "3"],
                            env=env_for(home, pg), stdout=out, stderr=subprocess.STDOUT)


def leases(pg: PgServer) -> list[tuple[str, str, str]]:
    eng = create_engine(database_url(pg.url))
    try:
        with eng.connect() as c:
            return [tuple(r) for r in c.execute(text(
                "SELECT email, lease_owner, status FROM batch_users "
                "WHERE lease_owner IS NOT NULL AND lease_expires > now()"))]
    finally:
        eng.dispose()


def query(pg: PgServer, sql: str, **params: object) -> list[tuple]:
    """Read the state database directly: cheap enough to poll (a CLI call costs a second of CPU)."""
    eng = create_engine(database_url(pg.url))
    try:
        with eng.connect() as c:
            return [tuple(r) for r in c.execute(text(sql), params)]
    finally:
        eng.dispose()


def batch_status(pg: PgServer, batch: str) -> str | None:
    rows = query(pg, "SELECT status FROM batches WHERE name = :b", b=batch)
    return rows[0][0] if rows else None


def test_three_workers_one_killed_mid_mailbox(tmp_path, dovecot_src, sim, pg, monkeypatch):
    pg.reset()
    users, csv = make_users(tmp_path, dovecot_src, "wk", 30, inbox=16, projects=4)  # the 30
    for n in users:
        sim.add_user(f"{n}@{DOMAIN}")
    home = tmp_path / "home"
    monkeypatch.setenv("MAILTREK_DATABASE_URL", pg.url)  # the CLI helper inherits os.environ
    _mailtrek(home, "endpoint", "add", "src", "--host", dovecot_src.host, "--port", str(dovecot_src.ssl_port),
              "--security", "ssl", "--ca-file", str(dovecot_src.ca_file), "--preset", "dovecot",
              "--max-concurrent-migrations", "3")
    secret = tmp_path / "client-secret"
    secret.write_text("wk-Client-Secret-42\n")
    _mailtrek(home, "tenant", "add", "t", "--tenant-id", sim.config.tenant_id, "--client-id", "mailtrek-wk",
              "--client-secret-file", str(secret), "--m365-authority", sim.authority(),
              "--graph-url", f"{sim.base_url}/graph", "--ca-file", str(sim.ca_file))
    assert not (home / "state.db").exists()  # the state is on PostgreSQL
    _mailtrek(home, "batch", "create", "bw", "--endpoint", "src", "--tenant", "t", "--csv", str(csv), "--autostart")

    def copied() -> int:
        return sum(len(sim.messages(f"{n}@{DOMAIN}")) for n in users)

    logs = [tmp_path / f"worker{i}.log" for i in range(3)]
    workers = [start_worker(home, pg, log) for log in logs]
    most_at_once, victim, victim_boxes = 0, None, set()
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and victim is None:
            assert all(w.poll() is None for w in workers), [log.read_text()[-3000:] for log in logs]
            held = leases(pg)
            most_at_once = max(most_at_once, len(held))
            if copied() >= 60:
                for w in workers:
                    if not any(f":{w.pid}:" in owner and status == "Syncing" for _e, owner, status in held):
                        continue
                    # Freeze it, then read what it holds: a worker finishing a mailbox
                    # between the look and the kill would otherwise make the check racy.
                    w.send_signal(signal.SIGSTOP)
                    mine = {e for e, owner, status in leases(pg)
                            if f":{w.pid}:" in owner and status == "Syncing"}
                    if mine:
                        victim, victim_boxes = w, mine
                        break
                    w.send_signal(signal.SIGCONT)
            time.sleep(0.05)
        assert victim is not None, "no worker was seen mid-mailbox"
        at_kill = copied()
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        assert 0 < at_kill < 600, at_kill

        deadline = time.monotonic() + 120
        status = None
        while time.monotonic() < deadline:
            most_at_once = max(most_at_once, len(leases(pg)))
            status = batch_status(pg, "bw")  # `batch show` below checks the same
            if status == "Synced":
                break
            time.sleep(0.3)
        doc = show(home, "bw")
        assert doc["status"] == "Synced", (doc, [log.read_text()[-3000:] for log in logs])
    finally:
        for w in workers:
            if w.poll() is None:
                w.send_signal(signal.SIGTERM)
        for w in workers:
            try:
                w.wait(timeout=30)
            except subprocess.TimeoutExpired:
                w.kill()
    for w in workers:
        if w is not victim:
            assert w.returncode == 0, [log.read_text()[-2000:] for log in logs]

    # Every mailbox complete and exact: 20 messages, each Message-ID once.
    for n in users:
        msgs = sim.messages(f"{n}@{DOMAIN}")
        ids = Counter(m.props.get("internetMessageId") for m in msgs)
        assert len(msgs) == 20 and len(ids) == 20, (n, len(msgs), [i for i, c in ids.items() if c > 1])
    by = {u["email"]: u for u in doc["users"]}
    for n in users:
        assert by[f"{n}@{DOMAIN}"]["items_synced"] == 20, by[f"{n}@{DOMAIN}"]
    # The killed worker's mailboxes were finished by the others.
    survivors = " ".join(log.read_text() for w, log in zip(workers, logs, strict=True) if w is not victim)
    for box in victim_boxes:
        assert box in survivors
    # The endpoint limit (3 initial syncs at once) held across the three workers, and was used.
    assert 2 <= most_at_once <= 3, most_at_once
    texts = " ".join(log.read_text() for log in logs)
    for pw in [*users.values(), "wk-Client-Secret-42"]:
        assert pw not in texts


def test_worker_carries_on_across_a_database_restart(tmp_path, dovecot_src, sim, pg, monkeypatch):
    """PostgreSQL restarts while a worker moves mailboxes: it reconnects and finishes them."""
    pg.reset()
    users, csv = make_users(tmp_path, dovecot_src, "rs", 4, inbox=40, projects=0)
    for n in users:
        sim.add_user(f"{n}@{DOMAIN}")
    home = tmp_path / "home"
    monkeypatch.setenv("MAILTREK_DATABASE_URL", pg.url)
    _mailtrek(home, "endpoint", "add", "src", "--host", dovecot_src.host, "--port", str(dovecot_src.ssl_port),
              "--security", "ssl", "--ca-file", str(dovecot_src.ca_file), "--preset", "dovecot")
    secret = tmp_path / "client-secret"
    secret.write_text("rs-Client-Secret-42\n")
    _mailtrek(home, "tenant", "add", "t", "--tenant-id", sim.config.tenant_id, "--client-id", "mailtrek-rs",
              "--client-secret-file", str(secret), "--m365-authority", sim.authority(),
              "--graph-url", f"{sim.base_url}/graph", "--ca-file", str(sim.ca_file))
    _mailtrek(home, "batch", "create", "br", "--endpoint", "src", "--tenant", "t", "--csv", str(csv), "--autostart")
    log = tmp_path / "worker.log"
    w = start_worker(home, pg, log)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and sum(len(sim.messages(f"{n}@{DOMAIN}")) for n in users) < 20:
            assert w.poll() is None, log.read_text()[-3000:]
            time.sleep(0.02)
        pg.stop("immediate")  # a crash, not a polite shutdown
        time.sleep(2)
        pg.start()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert w.poll() is None, log.read_text()[-3000:]
            if batch_status(pg, "br") == "Synced":  # `batch show` below checks the same
                break
            time.sleep(0.5)
        doc = show(home, "br")
        assert doc["status"] == "Synced", (doc, log.read_text()[-3000:])
        # The moves waited for the database and went on: none was interrupted to re-run later.
        assert "interrupted; will resume" not in log.read_text(), log.read_text()[-3000:]

        # New mail, incremental sync due: the worker's scan queues it as a job and runs it.
        import imaplib
        import ssl

        c = imaplib.IMAP4_SSL(dovecot_src.host, dovecot_src.ssl_port,
                              ssl_context=ssl.create_default_context(cafile=str(dovecot_src.ca_file)))
        c.login("rs0", users["rs0"])
        c.append("INBOX", "", None, b"From: a@example.test\r\nSubject: late\r\nMessage-ID: <late.rs0@example.test>\r\n\r\nlate\r\n")
        c.logout()
        eng = create_engine(database_url(pg.url))
        with eng.begin() as conn:
            conn.execute(text("UPDATE batch_users SET next_sync = now() - interval '1 minute' WHERE email LIKE 'rs0@%'"))
        eng.dispose()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(sim.messages(f"rs0@{DOMAIN}")) < 41:
            time.sleep(0.3)
        assert len(sim.messages(f"rs0@{DOMAIN}")) == 41, log.read_text()[-3000:]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and query(
                pg, "SELECT 1 FROM batch_users WHERE email LIKE 'rs0@%' AND status = 'Synced' "
                "AND items_synced = 41") == []:
            time.sleep(0.3)
        rs0 = next(u for u in show(home, "br")["users"] if u["email"].startswith("rs0@"))
        assert rs0["status"] == "Synced" and rs0["items_synced"] == 41 and rs0["runs"] >= 2, rs0
    finally:
        if w.poll() is None:
            w.send_signal(signal.SIGTERM)
        w.wait(timeout=30)
    assert w.returncode == 0, log.read_text()[-3000:]
    for n in users:
        msgs = sim.messages(f"{n}@{DOMAIN}")
        want = 41 if n == "rs0" else 40
        assert len(msgs) == want and len({m.props.get("internetMessageId") for m in msgs}) == want, n
