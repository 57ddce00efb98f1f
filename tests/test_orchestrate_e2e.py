"""End to end: users CSV -> batch -> `mailtrek run` on real Dovecot into the M365 simulator.

Everything real: Dovecot as the source (private instance), the simulator as Microsoft 365
over HTTPS, the `mailtrek` CLI as subprocesses (so logs and outputs are what users see).
"""

from __future__ import annotations

import imaplib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mailtrek.devtools.proxy import Proxy

pytest.importorskip("mailtrek.devtools.dovecot")
pytest.importorskip("mailtrek.sim.server")

from mailtrek.devtools.dovecot import DovecotInstance
from mailtrek.sim.config import SimConfig
from mailtrek.sim.server import Simulator

pytestmark = pytest.mark.timeout(240)
DOMAIN = "contoso.test"
MAILTREK = [sys.executable, "-c", "import sys; from mailtrek.cli.main import main; sys.argv[0] = 'mailtrek'; main()"]


@pytest.fixture
def dovecot(dovecot_src: DovecotInstance) -> DovecotInstance:
    return dovecot_src  # the session's source server (tests/conftest.py)


@pytest.fixture(scope="module")
def sim():
    s = Simulator(SimConfig(users=[]))
    s.start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def quiet_dns() -> Iterator[str]:
    """A DNS server ("IP:PORT") that answers every question with nothing: no MX anywhere.

    Completion's MX check gets its empty answer at once (nothing listening would make
    it wait out the resolver's timeout on every look).
    """
    from dns_helpers import Zone, start_dns

    server, ns = start_dns(Zone())
    yield ns
    server.stop()


def imap(dov: DovecotInstance, user: str, password: str) -> imaplib.IMAP4_SSL:
    import ssl

    c = imaplib.IMAP4_SSL(dov.host, dov.ssl_port, ssl_context=ssl.create_default_context(cafile=str(dov.ca_file)))
    c.login(user, password)
    return c


def message(user: str, n: int, folder: str) -> bytes:
    return (f"From: sender{n}@example.test\r\nTo: {user}@{DOMAIN}\r\nSubject: {folder} message {n} for {user}\r\n"
            f"Message-ID: <{user}.{folder}.{n}@example.test>\r\nDate: Mon, 2 Mar 2026 10:{n % 60:02d}:00 +0000\r\n"
            f"\r\nBody {n} of {user}\r\n" + "x" * (200 * n) + "\r\n").encode()


def fill(dov, user, password, inbox: int, projects: int) -> None:
    c = imap(dov, user, password)
    c.create("Projects")
    for i in range(inbox):
        c.append("INBOX", "(\\Seen)", None, message(user, i, "INBOX"))
    for i in range(projects):
        c.append("Projects", "", None, message(user, 100 + i, "Projects"))
    c.logout()


def mailtrek(home: Path, *args: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
    env = dict(os.environ, MAILTREK_HOME=str(home), MAILTREK_LEASE_SECONDS="10")
    p = subprocess.run([*MAILTREK, *args], env=env, capture_output=True,
                       text=True, timeout=180, **kw)
    if check and p.returncode != 0:
        raise AssertionError(f"mailtrek {' '.join(args)} -> {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


def show(home: Path, batch: str) -> dict:
    """``batch show --json``, run in this process: a read, so no second of start-up for it.

    The environment is the subprocess helper's (``os.environ`` plus the home), so a
    ``MAILTREK_DATABASE_URL`` set by the test reaches it too.
    """
    from typer.testing import CliRunner

    from mailtrek.cli.main import app

    r = CliRunner().invoke(app, ["batch", "show", batch, "--json"],
                           env={"MAILTREK_HOME": str(home), "MAILTREK_LEASE_SECONDS": "10"})
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def setup_home(tmp_path, dovecot, sim) -> Path:
    home = tmp_path / "home"
    mailtrek(home, "endpoint", "add", "src", "--host", dovecot.host, "--port", str(dovecot.ssl_port),
             "--security", "ssl", "--ca-file", str(dovecot.ca_file), "--preset", "dovecot")
    secret = tmp_path / "client-secret"
    secret.write_text("e2e-Client-Secret-42\n")
    mailtrek(home, "tenant", "add", "t", "--tenant-id", sim.config.tenant_id, "--client-id", "mailtrek-e2e",
             "--client-secret-file", str(secret), "--m365-authority", sim.authority(),
             "--graph-url", f"{sim.base_url}/graph", "--ca-file", str(sim.ca_file))
    return home


def test_ten_users_two_failures_incremental_and_complete(tmp_path, dovecot, sim, quiet_dns):
    passwords = {}
    for i in range(10):
        name = f"ten{i}"
        passwords[name] = f"Pw-{name}-{os.urandom(4).hex()}"
        dovecot.add_user(name, passwords[name])
        fill(dovecot, name, passwords[name], inbox=3, projects=1)
        sim.add_user(f"{name}@{DOMAIN}", has_mailbox=(i != 9))  # ten9: no Exchange mailbox
    csv = tmp_path / "users.csv"
    rows = ["EmailAddress,UserName,Password"]
    for i in range(10):
        name = f"ten{i}"
        rows.append(f"{name}@{DOMAIN},{name},{'Wrong-' + passwords[name] if i == 1 else passwords[name]}")
    csv.write_text("\n".join(rows) + "\n")
    home = setup_home(tmp_path, dovecot, sim)
    outputs = [mailtrek(home, "batch", "create", "b10", "--endpoint", "src", "--tenant", "t", "--csv", str(csv),
                        "--autostart")]
    outputs.append(mailtrek(home, "run", "--until-idle"))
    doc = show(home, "b10")
    by = {u["email"].split("@")[0]: u for u in doc["users"]}
    assert doc["status"] == "SyncedWithErrors", doc
    assert by["ten1"]["status"] == "Failed" and by["ten1"]["error"]
    assert any(w in by["ten1"]["error"].lower() for w in ("authentic", "login", "password")), by["ten1"]["error"]
    assert by["ten9"]["status"] == "Failed" and "mailbox" in by["ten9"]["error"].lower(), by["ten9"]["error"]
    for i in (0, 2, 3, 4, 5, 6, 7, 8):
        u = by[f"ten{i}"]
        assert u["status"] == "Synced" and u["items_synced"] == 4 and u["items_skipped"] == 0, u
        assert len(sim.messages(f"ten{i}@{DOMAIN}")) == 4

    # New mail on the source: the next incremental sync brings it and nothing else.
    c = imap(dovecot, "ten0", passwords["ten0"])
    c.append("INBOX", "", None, message("ten0", 50, "INBOX"))
    c.logout()
    db = sqlite3.connect(home / "state.db")
    db.execute("UPDATE batch_users SET next_sync = '2000-01-01 00:00:00.000000' WHERE status = 'Synced'")
    db.commit()
    db.close()
    outputs.append(mailtrek(home, "run", "--until-idle"))
    assert "incremental sync" in outputs[-1].stdout
    assert len(sim.messages(f"ten0@{DOMAIN}")) == 5
    subjects = sorted(m.subject for m in sim.messages(f"ten0@{DOMAIN}")) if hasattr(
        sim.messages(f"ten0@{DOMAIN}")[0], "subject") else None
    if subjects is not None:
        assert len(set(subjects)) == 5
    for i in (2, 3, 4, 5, 6, 7, 8):
        assert len(sim.messages(f"ten{i}@{DOMAIN}")) == 4
    doc = show(home, "b10")
    assert next(u for u in doc["users"] if u["email"].startswith("ten0"))["items_synced"] == 5

    # Complete (the MX check is covered in test_cutover.py; --force here).
    refused = mailtrek(home, "batch", "complete", "b10", "--force", "--expect-mx", "x.mx.microsoft",
                       "--nameserver", quiet_dns, check=False, stdin=subprocess.DEVNULL)
    assert refused.returncode == 2 and "ten1@contoso.test: Failed" in refused.stderr, refused.stderr
    outputs.append(mailtrek(home, "batch", "complete", "b10", "--force", "--yes", "--expect-mx", "x.mx.microsoft",
                            "--nameserver", quiet_dns))
    outputs.append(mailtrek(home, "run", "--until-idle"))
    doc = show(home, "b10")
    assert doc["status"] == "CompletedWithErrors"
    assert sorted(u["status"] for u in doc["users"]) == ["Completed"] * 8 + ["Failed"] * 2

    # Reports, and no password anywhere.
    files = []
    for fmt in ("csv", "json", "html"):
        out = tmp_path / f"report.{fmt}"
        outputs.append(mailtrek(home, "batch", "report", "b10", "--format", fmt, "--output", str(out)))
        files.append(out.read_text())
    assert "ten1@contoso.test" in files[0] and "<table>" in files[2]
    outputs.append(mailtrek(home, "batch", "show", "b10"))
    outputs.append(mailtrek(home, "tenant", "show", "t"))
    texts = [p.stdout + p.stderr for p in outputs] + files
    for pw in [*passwords.values(), "Wrong-" + passwords["ten1"], "e2e-Client-Secret-42"]:
        for t in texts:
            assert pw not in t
    assert b"e2e-Client-Secret-42" not in (home / "state.db").read_bytes()


def kill_and_restart(tmp_path, home: Path, count: Callable[[], int], total: int,
                     at_least: int | None = None) -> tuple[str, str]:
    """Start `mailtrek run`, SIGKILL it once some mail is copied, then `run --until-idle`."""
    env = dict(os.environ, MAILTREK_HOME=str(home), MAILTREK_LEASE_SECONDS="10")
    log = tmp_path / "run1.log"
    with log.open("w") as out:
        p = subprocess.Popen([*MAILTREK, "run"], env=env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and count() < (at_least or total // 5):
            time.sleep(0.01)
        p.send_signal(signal.SIGKILL)
        p.wait()
    at_kill = count()
    assert 0 < at_kill < total, at_kill  # really killed mid-batch
    run2 = mailtrek(home, "run", "--until-idle")
    return log.read_text(), run2.stdout + run2.stderr


def make_users(tmp_path, dovecot, prefix: str, n: int, inbox: int, projects: int) -> tuple[dict[str, str], Path]:
    users = {}
    for i in range(n):
        name = f"{prefix}{i}"
        users[name] = f"Pw-{name}-{os.urandom(4).hex()}"
        dovecot.add_user(name, users[name])
        fill(dovecot, name, users[name], inbox=inbox, projects=projects)
    csv = tmp_path / "users.csv"
    csv.write_text("EmailAddress,UserName,Password\n" + "".join(
        f"{n}@{DOMAIN},{n},{p}\n" for n, p in users.items()))
    return users, csv


@pytest.mark.slow
def test_kill_9_mid_batch_imap_destination(tmp_path, dovecot, dovecot_dst):
    """kill -9 of `mailtrek run`, restart: every message exactly once (IMAP destination)."""
    users, csv = make_users(tmp_path, dovecot, "kimap", 6, inbox=40, projects=10)
    for n, p in users.items():  # destination logins: the EmailAddress with the same password
        dovecot_dst.add_user(f"{n}@{DOMAIN}", p)
    home = tmp_path / "home"
    # Two mailboxes at a time, so the kill finds some done and some not yet started.
    mailtrek(home, "endpoint", "add", "src", "--host", dovecot.host, "--port", str(dovecot.ssl_port),
             "--ca-file", str(dovecot.ca_file), "--max-concurrent-migrations", "2")
    # A WAN-like destination link: a copy is over in a blink on loopback, too soon to be
    # killed in the middle; with 300 ms of round trip it is not.
    with Proxy("127.0.0.1", dovecot_dst.ssl_port, rtt=0.3) as link:
        mailtrek(home, "endpoint", "add", "dst", "--host", "127.0.0.1", "--port", str(link.port),
                 "--ca-file", str(dovecot_dst.ca_file))
        mailtrek(home, "batch", "create", "bk", "--endpoint", "src", "--dest-endpoint", "dst",
                 "--csv", str(csv), "--autostart")

        def count() -> int:
            return sum(sum(f.get("messages", 0)
                           for f in dovecot_dst.mailbox_status(f"{n}@{DOMAIN}").values())
                       for n in users)

        # Messages land 50 at a time (MULTIAPPEND): kill at the first ones.
        run1, run2 = kill_and_restart(tmp_path, home, count, 300, at_least=1)
    doc = show(home, "bk")
    assert doc["status"] == "Synced", (doc, run2)
    for n in users:
        status = dovecot_dst.mailbox_status(f"{n}@{DOMAIN}")
        assert status["INBOX"]["messages"] == 40 and status["Projects"]["messages"] == 10, (n, status)
    for text in (run1, run2):
        for pw in users.values():
            assert pw not in text


@pytest.mark.slow
def test_kill_9_mid_batch_graph_destination(tmp_path, dovecot, sim):
    """kill -9 of `mailtrek run`, restart: every message exactly once (Microsoft 365 simulator)."""
    users, csv = make_users(tmp_path, dovecot, "kgraph", 6, inbox=40, projects=10)
    for n in users:
        sim.add_user(f"{n}@{DOMAIN}")
    home = setup_home(tmp_path, dovecot, sim)
    mailtrek(home, "batch", "create", "bk", "--endpoint", "src", "--tenant", "t", "--csv", str(csv), "--autostart")
    run1, run2 = kill_and_restart(tmp_path, home, lambda: sum(len(sim.messages(f"{n}@{DOMAIN}")) for n in users), 300)
    doc = show(home, "bk")
    assert doc["status"] == "Synced", (doc, run2)
    for n in users:
        assert len(sim.messages(f"{n}@{DOMAIN}")) == 50, n
    for text in (run1, run2):
        for pw in users.values():
            assert pw not in text
