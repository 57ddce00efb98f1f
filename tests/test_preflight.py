"""Batch pre-flight against real Dovecot (source) and the Microsoft 365 simulator (destination)."""

from __future__ import annotations

import csv
import imaplib
import io
import json
import os
import ssl

import pytest
from typer.testing import CliRunner

from mailtrek.cli.main import app
from mailtrek.orchestrate.batches import BatchOptions, create_batch
from mailtrek.orchestrate.csvfile import parse_users_csv
from mailtrek.orchestrate.endpoints import Tenant, add_endpoint, add_tenant, make_endpoint
from mailtrek.orchestrate.home import open_home
from mailtrek.orchestrate.preflight import longest_line, preflight_batch

pytest.importorskip("mailtrek.sim.server")
from mailtrek.sim.config import SimConfig
from mailtrek.sim.server import Simulator

pytestmark = pytest.mark.timeout(120)
DOMAIN = "contoso.test"


@pytest.fixture(scope="module")
def sim():
    s = Simulator(SimConfig(users=[]))
    s.start()
    yield s
    s.stop()


def msg(n: int, body: str, *, message_id: bool = True) -> bytes:
    head = f"From: a@example.test\r\nTo: b@{DOMAIN}\r\nSubject: m{n}\r\nDate: Mon, 2 Mar 2026 10:00:00 +0000\r\n"
    if message_id:
        head += f"Message-ID: <m{n}.{os.urandom(4).hex()}@example.test>\r\n"
    return (head + "\r\n" + body + "\r\n").encode()


def fill(dov, user, pw) -> None:
    c = imaplib.IMAP4_SSL(dov.host, dov.ssl_port, ssl_context=ssl.create_default_context(cafile=str(dov.ca_file)))
    c.login(user, pw)
    c.create("Files")
    c.create("Projects")
    c.append("INBOX", "", None, msg(1, "hello"))
    c.append("INBOX", "", None, msg(2, "big\r\n" + ("y" * 70 + "\r\n") * 1200))  # ~86 KB, short lines
    c.append("Projects", "", None, msg(3, "z" * 12_000))  # one 12,000-character line
    c.append("Projects", "", None, msg(4, "no id", message_id=False))
    c.append("Files", "", None, msg(5, "in a reserved folder"))
    c.logout()


@pytest.fixture
def batch(tmp_path, dovecot_src, sim):
    """A stored batch: line 2 has every item problem, 3 a wrong password, 4 no mailbox, 5 is clean."""
    users = {}
    for key in ("full", "wrong", "nobox", "clean"):
        name = f"pf{key}{os.urandom(3).hex()}"
        users[key] = (name, f"Pw-{os.urandom(6).hex()}")
        dovecot_src.add_user(*users[key])
        sim.add_user(f"{name}@{DOMAIN}", has_mailbox=key != "nobox")
    fill(dovecot_src, *users["full"])
    rows = ["EmailAddress,UserName,Password"]
    for key, (name, pw) in users.items():
        rows.append(f"{name}@{DOMAIN},{name},{'Wrong-' + pw if key == 'wrong' else pw}")
    csv_bytes = ("\n".join(rows) + "\n").encode()
    home = open_home(tmp_path / "home")
    add_endpoint(home, make_endpoint("src", host=dovecot_src.host, port=dovecot_src.ssl_port, security="ssl",
                                     ca_file=str(dovecot_src.ca_file), preset="dovecot"))
    add_tenant(home, Tenant(name="t", tenant_id=sim.config.tenant_id, client_id="preflight-test",
                            client_secret_enc=home.box.encrypt("Preflight-Secret-7"), authority=sim.authority(),
                            graph_url=f"{sim.base_url}/graph", ca_file=str(sim.ca_file)))
    create_batch(home, "b", endpoint="src", users=parse_users_csv(csv_bytes), tenant="t",
                 options=BatchOptions(max_size=50_000))
    (tmp_path / "users.csv").write_bytes(csv_bytes)
    return home, users, tmp_path


async def test_each_problem_reported_on_its_line(batch):
    home, users, _ = batch
    report = await preflight_batch(home, "b")
    by = {u.line: u for u in report.users}
    assert sorted(by) == [2, 3, 4, 5] and not report.ok
    full = by[2]
    assert full.can_start and full.login_ok and full.destination_ok
    assert "Exchange" in full.destination or "licence" in full.destination
    kinds = {(f.kind, f.folder) for f in full.findings}
    assert ("skip", "INBOX") in kinds
    assert ("folder", "Files") in kinds and ("no-message-id", "Projects") in kinds
    skip = next(f for f in full.findings if f.kind == "skip")
    assert skip.size > 50_000 and "limit" in skip.reason
    # The 10,000-character line limit is Exchange IMAP's: Graph takes the 12,000-character line.
    assert not any(f.kind == "long-line" for f in full.findings)
    assert "Files (migrated)" in next(f for f in full.findings if f.kind == "folder").reason
    assert full.messages == 5 and {f.folder: f.messages for f in full.folders} == {"INBOX": 2, "Projects": 2, "Files": 1}
    assert full.bytes == sum(f.bytes for f in full.folders) > 98_000
    assert full.sampled_bytes > 0 and full.eta_seconds is not None and report.eta_seconds is not None

    wrong = by[3]
    assert not wrong.can_start and not wrong.login_ok
    (f,) = [f for f in wrong.findings if f.kind == "login"]
    assert f.blocking and users["wrong"][0] in f.reason
    nobox = by[4]
    assert nobox.login_ok and nobox.destination_ok is False and not nobox.can_start
    assert "mailbox" in nobox.destination.lower()
    clean = by[5]
    assert clean.can_start and clean.findings == [] and clean.messages == 0
    # What pre-flight counted is the known total the first sync's progress counts against.
    from mailtrek.orchestrate.batches import user_rows

    totals = {u["line"]: u["items_total"] for u in user_rows(home, "b")}
    assert totals[2] == 5 and totals[3] is None and totals[5] is None


def test_cli_preflight_exit_code_formats_and_no_secrets(batch):
    home, users, tmp = batch
    runner = CliRunner()
    env = {"MAILTREK_HOME": str(home.path)}
    r = runner.invoke(app, ["batch", "preflight", "b", "--output", str(tmp / "f.csv")], env=env)
    assert r.exit_code == 1, r.output
    assert "cannot start: lines 3, 4" in r.output
    rows = list(csv.DictReader(io.StringIO((tmp / "f.csv").read_text())))
    assert {(r["line"], r["kind"]) for r in rows} >= {("2", "skip"), ("2", "folder"),
                                                       ("2", "no-message-id"), ("3", "login"), ("4", "destination")}
    r2 = runner.invoke(app, ["batch", "preflight", "b", "--format", "json"], env=env)
    doc = json.loads(r2.stdout)
    assert [u["can_start"] for u in doc["users"]] == [True, False, False, True]
    r3 = runner.invoke(app, ["batch", "create", "dry", "--endpoint", "src", "--tenant", "t",
                             "--csv", str(tmp / "users.csv"), "--max-size", "50000", "--dry-run"], env=env)
    assert r3.exit_code == 1 and "no-message-id" in r3.output
    # Blockers come first, one line each; the rest is counted per kind.
    assert r3.output.index("BLOCKERS (2)") < r3.output.index("other findings by kind")
    assert "no measurement yet: assumed" in r3.output
    assert runner.invoke(app, ["batch", "show", "dry"], env=env).exit_code != 0  # nothing created
    for text in (r.output, r2.output, r3.output, (tmp / "f.csv").read_text()):
        for _, pw in users.values():
            assert pw not in text
        assert "Preflight-Secret-7" not in text


def test_longest_line():
    assert longest_line(b"a\r\nbbb\r\n") == 3 and longest_line(b"") == 0 and longest_line(b"x" * 5) == 5
