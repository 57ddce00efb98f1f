"""The admin's tools (issue 15 items 4, 5, 7, 8): edits, checks, audit log, notify test, estimates.

CLI contracts run the real `mailtrek` as a subprocess; SMTP is a real local aiosmtpd server,
IMAP the session's Dovecot instances.
"""

from __future__ import annotations

import imaplib
import json
import os
import socket
import ssl
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from mailtrek.devtools.dovecot import DovecotInstance
from mailtrek.errors import UsageError
from mailtrek.orchestrate.editing import check_authority, port_security_problem
from mailtrek.orchestrate.endpoints import get_endpoint, get_tenant
from mailtrek.orchestrate.home import open_home
from mailtrek.orchestrate.rates import (
    ASSUMED_MESSAGES_PER_SECOND,
    RouteRate,
    estimate,
    measured_rate,
    record_run,
    route_key,
)

pytestmark = pytest.mark.timeout(120)
MAILTREK = [sys.executable, "-c", "import sys; from mailtrek.cli.main import main; sys.argv[0] = 'mailtrek'; main()"]
DOMAIN = "admin2.test"


def mailtrek(home: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("MAILTREK_")}
    full |= {"MAILTREK_HOME": str(home)} | (env or {})
    return subprocess.run([*MAILTREK, *args], env=full, capture_output=True, text=True, timeout=90,
                          stdin=subprocess.DEVNULL)


def inproc(home: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the same CLI app in this process (fast); `mailtrek()` runs the real command."""
    from typer.testing import CliRunner

    from mailtrek.cli.main import app

    full: dict[str, str | None] = {k: None for k in os.environ if k.startswith("MAILTREK_")}
    full |= {"MAILTREK_HOME": str(home)} | (env or {})
    r = CliRunner().invoke(app, list(args), env=full)
    return subprocess.CompletedProcess(args, r.exit_code, r.stdout, r.stderr)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[list[str], bytes]] = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((list(envelope.rcpt_tos), envelope.original_content or envelope.content))
        return "250 OK"


# -- pure checks ----------------------------------------------------------------------------
def test_port_security_pairs():
    assert port_security_problem(993, "starttls", security_given=True).fatal
    assert port_security_problem(143, "ssl", security_given=True).fatal
    assert port_security_problem(993, "ssl", security_given=False) is None
    assert port_security_problem(143, "starttls", security_given=False) is None
    doubt = port_security_problem(12143, "ssl", security_given=False)  # `--preset dovecot --port 12143`
    assert doubt is not None and not doubt.fatal and "--security" in doubt.hint
    assert port_security_problem(12143, "ssl", security_given=True) is None


def test_authority_needs_the_tenant():
    assert check_authority("https://login.example.test/t-1", "t-1") == ("https://login.example.test/t-1", [])
    fixed, notes = check_authority("https://login.example.test/", "t-1")
    assert fixed == "https://login.example.test/t-1" and "names no tenant" in notes[0]
    for bad in ("http://login.example.test/t-1", "https://login.example.test/other",
                "https://login.example.test/common"):
        with pytest.raises(UsageError):
            check_authority(bad, "t-1")


def test_estimate_says_what_it_rests_on(tmp_path):
    none = estimate(100, 10_000, None)
    assert none.seconds == pytest.approx(100 / ASSUMED_MESSAGES_PER_SECOND)
    assert none.basis.startswith("no measurement yet: assumed")
    # Small messages: the message rate binds; big ones: the byte rate.
    rate = RouteRate(runs=3, messages_per_second=10.0, bytes_per_second=1_000_000)
    assert estimate(782, 1_000_000, rate).seconds == pytest.approx(78.2)
    assert estimate(10, 50_000_000, rate).seconds == pytest.approx(50.0)
    assert estimate(10, 1, rate).basis.startswith("from 3 earlier runs on this route")
    capped = estimate(10, 50_000_000, rate, byte_limit=500_000, byte_limit_name="the upload limit")
    assert capped.seconds == pytest.approx(100.0) and "limited by the upload limit" in capped.basis

    home = open_home(tmp_path / "home")
    route = route_key("IMAP.Example.test", "m365")
    assert route == "imap.example.test -> m365" and measured_rate(home.engine, route) is None
    assert not record_run(home.engine, route, 3, 100, 1.0)  # too short to measure anything
    assert record_run(home.engine, route, 100, 1_000_000, 10.0)
    assert record_run(home.engine, route, 300, 1_000_000, 30.0)
    r = measured_rate(home.engine, route)
    assert r is not None and r.runs == 2 and r.messages_per_second == pytest.approx(10.0)
    assert measured_rate(home.engine, route_key("imap.example.test", "dst.test")) is None


# -- CLI contracts --------------------------------------------------------------------------
def test_endpoint_and_tenant_edit_checks_and_audit(tmp_path):
    home = tmp_path / "home"
    secret = "Admin-Secret-93xq"
    (tmp_path / "admin.pw").write_text(secret + "\n")
    (tmp_path / "client.secret").write_text("Client-Secret-55kv\n")
    bad = inproc(home, "endpoint", "add", "src", "--host", "127.0.0.1", "--port", "993", "--security", "starttls")
    assert bad.returncode == 2 and "993 speaks implicit TLS" in bad.stderr
    r = mailtrek(home, "endpoint", "add", "src", "--host", "127.0.0.1", "--preset", "dovecot", "--port", "12143")
    assert r.returncode == 0 and "warning: port 12143" in r.stderr
    r = inproc(home, "endpoint", "edit", "src", "--security", "starttls", "--max-concurrent-migrations", "7",
                 "--admin-user", "root", "--admin-password-file", str(tmp_path / "admin.pw"))
    assert r.returncode == 0, r.stderr
    shown = get_endpoint(open_home(home), "src").public()
    assert (shown["security"], shown["port"], shown["max_concurrent_migrations"]) == ("starttls", 12143, 7)
    assert shown["admin_password"] == "stored"
    assert inproc(home, "endpoint", "edit", "src", "--port", "993").returncode == 2  # starttls on 993
    assert inproc(home, "endpoint", "edit", "nope", "--port", "143").returncode != 0

    r = inproc(home, "tenant", "add", "t", "--tenant-id", "tid-1", "--client-id", "cid",
                 "--client-secret-file", str(tmp_path / "client.secret"), "--m365-authority",
                 "https://login.example.test", "--no-test")
    assert r.returncode == 0 and "names no tenant" in r.stdout, r.stderr
    assert get_tenant(open_home(home), "t").authority == "https://login.example.test/tid-1"
    r = inproc(home, "tenant", "edit", "t", "--m365-authority", "https://login.example.test/other", "--no-test")
    assert r.returncode == 2 and "names tenant 'other'" in r.stderr
    r = inproc(home, "tenant", "edit", "t", "--client-id", "cid-2", "--no-test")
    assert r.returncode == 0 and get_tenant(open_home(home), "t").client_id == "cid-2"

    log = json.loads(mailtrek(home, "audit", "--json").stdout)
    seen = [(e["action"], e["target"], e["outcome"]) for e in reversed(log)]
    # The refused first add ran before any home existed: nothing to record it in.
    assert seen == [("endpoint add", "src", "ok"),
                    ("endpoint edit", "src", "ok"), ("endpoint edit", "src", "error: exit 2"),
                    ("endpoint edit", "nope", "error: exit 2"),
                    ("tenant add", "t", "ok"), ("tenant edit", "t", "error: exit 2"), ("tenant edit", "t", "ok")]
    assert all(e["actor"].startswith("cli:") for e in log)
    assert "--admin-password-file" in log[-2]["detail"]
    text = json.dumps(log) + inproc(home, "audit").stdout
    for s in (secret, "Client-Secret-55kv", str(tmp_path)):
        assert s not in text  # option names only, never values
    assert stat.S_IMODE((home / "state.db").stat().st_mode) == 0o600


def test_notify_test_and_create_warns_without_smtp(tmp_path):
    home = tmp_path / "home"
    r = inproc(home, "notify", "test", "--to", "ops@example.test")
    assert r.returncode != 0 and "no SMTP server is configured" in r.stderr
    inbox = Inbox()
    c = Controller(inbox, hostname="127.0.0.1", port=free_port())
    c.start()
    try:
        smtp = {"MAILTREK_SMTP_HOST": "127.0.0.1", "MAILTREK_SMTP_PORT": str(c.port),
                "MAILTREK_SMTP_SECURITY": "none", "MAILTREK_SMTP_FROM": "mailtrek@example.test"}
        r = mailtrek(home, "notify", "test", "--to", "ops@example.test", env=smtp)
        assert r.returncode == 0 and "test mail sent" in r.stdout, r.stderr
        assert [to for to, _ in inbox.messages] == [["ops@example.test"]]
        assert b"Subject: mailtrek: test mail" in inbox.messages[0][1]
    finally:
        c.stop()
    # The server is gone: the command says so instead of pretending.
    r = inproc(home, "notify", "test", "--to", "ops@example.test", env=smtp)
    assert r.returncode != 0 and "did not take the mail" in r.stderr

    (tmp_path / "s").write_text("x\n")
    inproc(home, "endpoint", "add", "src", "--host", "127.0.0.1")
    inproc(home, "tenant", "add", "t", "--tenant-id", "tid", "--client-id", "c",
             "--client-secret-file", str(tmp_path / "s"), "--no-test")
    (tmp_path / "u.csv").write_text("EmailAddress,UserName,Password\na@x.test,a,pw-a\n")
    r = inproc(home, "batch", "create", "b", "--csv", str(tmp_path / "u.csv"), "--endpoint", "src",
                 "--tenant", "t", "--notify", "ops@example.test")
    assert r.returncode == 0 and "warning: no SMTP server is configured" in r.stderr
    (tmp_path / "u2.csv").write_text("EmailAddress,UserName,Password\nb@x.test,b,pw-b\n")
    r = inproc(home, "batch", "create", "b2", "--csv", str(tmp_path / "u2.csv"), "--endpoint", "src",
                 "--tenant", "t", "--notify", "ops@example.test", env=smtp)
    assert r.returncode == 0 and "warning" not in r.stderr, r.stderr


def imap_fill(dov: DovecotInstance, user: str, password: str, n: int) -> None:
    c = imaplib.IMAP4_SSL(dov.host, dov.ssl_port, ssl_context=ssl.create_default_context(cafile=str(dov.ca_file)))
    c.login(user, password)
    for i in range(n):
        c.append("INBOX", "", None, (f"From: a@example.test\r\nSubject: m{i}\r\nMessage-ID: <m{i}.{user}@x>\r\n"
                                     f"\r\nbody {i}\r\n" + "y" * 2000 + "\r\n").encode())
    c.logout()


def test_a_run_measures_its_route_and_preflight_uses_it(tmp_path, dovecot_src, dovecot_dst):
    """The first pre-flight assumes a rate; after one real run it estimates from that run."""
    name, pw = f"rate{os.urandom(3).hex()}", f"Pw-{os.urandom(6).hex()}"
    dovecot_src.add_user(name, pw)
    dovecot_dst.add_user(f"{name}@{DOMAIN}", pw)
    imap_fill(dovecot_src, name, pw, 30)
    from mailtrek.orchestrate.batches import create_batch, start_batch
    from mailtrek.orchestrate.csvfile import parse_users_csv
    from mailtrek.orchestrate.endpoints import add_endpoint, make_endpoint

    home = tmp_path / "home"
    h = open_home(home)
    for ep, dov in (("src", dovecot_src), ("dst", dovecot_dst)):
        add_endpoint(h, make_endpoint(ep, host=dov.host, port=dov.ssl_port, security="ssl", ca_file=str(dov.ca_file)))
    create_batch(h, "b", endpoint="src", dest_endpoint="dst",
                 users=parse_users_csv(f"EmailAddress,UserName,Password\n{name}@{DOMAIN},{name},{pw}\n".encode()))
    r = mailtrek(home, "batch", "preflight", "b")
    assert "(no measurement yet: assumed" in r.stdout, r.stdout
    start_batch(h, "b")
    r = mailtrek(home, "run", "--until-idle", "--poll-seconds", "0.2")
    assert r.returncode == 0, r.stdout + r.stderr
    rate = measured_rate(h.engine, route_key(dovecot_src.host, dovecot_dst.host))
    assert rate is not None and rate.runs == 1 and rate.messages_per_second > 0
    r = mailtrek(home, "batch", "preflight", "b", "--output", str(tmp_path / "pf.json"))
    assert "(from 1 earlier run on this route" in r.stdout, r.stdout
    doc = json.loads((tmp_path / "pf.json").read_text())
    assert doc["eta_basis"].startswith("from 1 earlier run")
    # 30 messages at the measured message rate (the byte rate may only make it longer).
    assert doc["users"][0]["eta_seconds"] >= 30 / rate.messages_per_second * 0.99

    # The dashboard's Pre-flight button gives the same answer.
    from fastapi.testclient import TestClient

    from mailtrek.web.app import create_app
    from mailtrek.web.auth import set_admin_password

    set_admin_password(h, "Web-Admin-Pw-88")
    with TestClient(create_app(h)) as c:
        assert c.post("/api/login", json={"password": "Web-Admin-Pw-88"}).status_code == 200
        assert 'href="/batches/b/preflight"' in c.get("/batches/b").text
        page = c.get("/batches/b/preflight")
        assert page.status_code == 200 and "Every user can start." in page.text
        assert "from 1 earlier run on this route" in page.text and pw not in page.text


# -- dashboard ------------------------------------------------------------------------------
def test_web_actions_audited_and_docs_offline(tmp_path):
    from fastapi.testclient import TestClient

    from mailtrek.orchestrate.audit import entries
    from mailtrek.web.app import create_app
    from mailtrek.web.auth import set_admin_password

    home = open_home(tmp_path / "home")
    set_admin_password(home, "Web-Admin-Pw-77")
    with TestClient(create_app(home)) as c:
        assert c.post("/api/login", json={"password": "wrong-one"}).status_code == 401
        r = c.post("/api/login", json={"password": "Web-Admin-Pw-77"})
        c.headers["X-CSRF-Token"] = r.json()["csrf"]
        assert c.post("/api/endpoints", json={"name": "web-src", "host": "127.0.0.1", "port": 993,
                                              "admin_user": "root", "admin_password": "Typed-Secret-31"}
                      ).status_code == 201
        assert c.delete("/api/endpoints/nope").status_code == 404
        r = c.post("/api/endpoints", json={"name": "bad", "host": "127.0.0.1", "port": 993, "security": "starttls"})
        assert r.status_code == 400 and "993" in r.json()["detail"]
        r = c.post("/api/tenants", json={"name": "t", "tenant_id": "tid", "client_id": "c", "client_secret": "s",
                                         "authority": "https://login.example.test/other", "test": False})
        assert r.status_code == 400 and "names tenant 'other'" in r.json()["detail"]
        log = [(e.actor.split("@")[0], e.action, e.target, e.outcome) for e in reversed(entries(home))]
        assert log == [("web:admin", "web POST /api/login", None, "refused"),
                       ("web:admin", "web POST /api/login", None, "ok"),
                       ("web:admin", "web POST /api/endpoints", None, "ok"),
                       ("web:admin", "web DELETE /api/endpoints/{name}", "nope", "error: HTTP 404"),
                       ("web:admin", "web POST /api/endpoints", None, "error: HTTP 400"),
                       ("web:admin", "web POST /api/tenants", None, "error: HTTP 400")]
        c.post("/api/endpoints", json={"name": "web-dst", "host": "127.0.0.2", "port": 993})
        r = c.post("/api/batches", data={"name": "wb", "endpoint": "web-src", "dest_endpoint": "web-dst",
                                         "notify": "ops@example.test"},
                   files={"csv": ("u.csv", b"EmailAddress,UserName,Password\na@x.test,a,p\n", "text/csv")})
        assert r.status_code == 201 and "no SMTP server is configured" in r.json()["warnings"][0], r.text
        r = c.patch("/api/endpoints/web-src", json={"port": 143, "security": "starttls", "admin_password": "New-Pw-12"})
        assert r.status_code == 200 and (r.json()["port"], r.json()["security"]) == (143, "starttls"), r.text
        assert c.patch("/api/endpoints/web-src", json={"port": 993}).status_code == 400  # STARTTLS on 993
        assert c.patch("/api/tenants/nope", json={"client_id": "x", "test": False}).status_code == 404
        audit = c.get("/api/audit", params={"target": "web-src"}).json()
        assert [e["action"] for e in audit][:2] == ["web PATCH /api/endpoints/{name}"] * 2
        page = c.get("/audit")
        assert page.status_code == 200 and "web DELETE /api/endpoints/{name}" in page.text
        assert "New-Pw-12" not in page.text + json.dumps(audit)
        for secret in ("Typed-Secret-31", "Web-Admin-Pw-77", "wrong-one"):
            assert secret not in page.text
        docs = c.get("/docs")
        # Rendered here, from the app's own OpenAPI: nothing from a CDN, no script at all.
        assert docs.status_code == 200 and "POST /api/batches" in docs.text and "/openapi.json" in docs.text
        assert "cdn." not in docs.text and "<script>" not in docs.text
        assert "unsafe-inline" not in docs.headers["content-security-policy"]


def test_copy_and_verify_with_stored_endpoint_and_tenant(tmp_path, dovecot_src):
    """No URL, no Microsoft 365 variables: the stored endpoint and tenant say where and how."""
    from mailtrek.orchestrate.endpoints import Tenant, add_endpoint, add_tenant, make_endpoint
    from mailtrek.sim import SimConfig, Simulator, UserSpec

    name, pw = f"stored{os.urandom(3).hex()}", f"Pw-{os.urandom(6).hex()}"
    dovecot_src.add_user(name, pw)
    imap_fill(dovecot_src, name, pw, 3)
    with Simulator(SimConfig(users=[UserSpec("carol@contoso.test")])) as sim:
        home = open_home(tmp_path / "home")
        add_endpoint(home, make_endpoint("src", host=dovecot_src.host, port=dovecot_src.ssl_port, security="ssl",
                                         ca_file=str(dovecot_src.ca_file)))
        add_tenant(home, Tenant(name="t", tenant_id=sim.config.tenant_id, client_id="stored-test",
                                client_secret_enc=home.box.encrypt("Stored-Tenant-Secret-4"),
                                authority=sim.authority(), graph_url=f"{sim.base_url}/graph",
                                ca_file=str(sim.ca_file)))
        env = {"MAILTREK_SOURCE_PASSWORD": pw}
        r = mailtrek(home.path, "copy", name, "carol@contoso.test", "--endpoint", "src", "--tenant", "t",
                     "--state", str(tmp_path / "copy.db"), env=env)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "3 copied" in r.stdout or "copied 3" in r.stdout, r.stdout
        r = mailtrek(home.path, "verify", name, "m365://carol@contoso.test", "--endpoint", "src",
                     "--tenant", "t", env=env)
        assert r.returncode == 0 and "3 matched" in r.stdout, r.stdout + r.stderr
        bad = inproc(home.path, "copy", f"imaps://{name}@x", "carol@contoso.test", "--endpoint", "src",
                       "--tenant", "t", env=env)
        assert bad.returncode == 2 and "give a user name" in bad.stderr
        for out in (r.stdout, r.stderr):
            assert "Stored-Tenant-Secret-4" not in out and pw not in out


def test_copy_bar_estimate_from_route_then_from_the_run():
    from mailtrek.cli.progress import ProgressView

    view = ProgressView(enabled=False, rate=RouteRate(runs=2, messages_per_second=10.0, bytes_per_second=1e9))
    assert view.remaining_seconds() is None  # before the plan
    view.event("plan", messages=782, bytes=782_000)
    t0 = view._started
    assert view.remaining_seconds(t0) == pytest.approx(78.2)  # messages bind, not bytes
    assert view.basis.startswith("from 2 earlier runs on this route")
    for _ in range(100):
        view.event("message", size=1000)
    # 100 messages in 20 s: this run's own rate (5/s) takes over for the 682 left.
    assert view.remaining_seconds(t0 + 20) == pytest.approx(682 / 5)
    assert view.basis == "from this run's rate"
    fresh = ProgressView(enabled=False)
    fresh.event("plan", messages=50, bytes=1)
    assert fresh.remaining_seconds(fresh._started) == pytest.approx(50 / ASSUMED_MESSAGES_PER_SECOND)
    assert fresh.basis.startswith("no measurement yet")


def test_simulator_state_dir_keeps_its_ca(tmp_path):
    from mailtrek.sim import SimConfig, Simulator

    first = Simulator(SimConfig(users=[], state_dir=tmp_path / "sim")).tls.ca_file.read_bytes()
    again = Simulator(SimConfig(users=[], state_dir=tmp_path / "sim")).tls.ca_file.read_bytes()
    assert first == again  # clients that trusted ca.pem keep working across restarts
    (tmp_path / "sim" / "server.pem").write_text("garbage")
    assert Simulator(SimConfig(users=[], state_dir=tmp_path / "sim")).tls.ca_file.read_bytes() != first


def test_a_changed_tenant_or_ca_gets_a_new_graph_client(tmp_path):
    from mailtrek.orchestrate.endpoints import Tenant
    from mailtrek.orchestrate.mover import _settings_version

    ca = tmp_path / "ca.pem"
    ca.write_text("one")
    t = Tenant(name="t", tenant_id="tid", client_id="c", client_secret_enc="x", ca_file=str(ca))
    v = _settings_version(t)
    assert _settings_version(t) == v
    os.utime(ca, ns=(1, 1))
    assert _settings_version(t) != v
    t.client_id = "c2"
    assert _settings_version(t) != _settings_version(Tenant(name="t", tenant_id="tid", client_id="c",
                                                            client_secret_enc="x", ca_file=str(ca)))


def test_refused_database_login_is_named_not_a_bare_operational_error():
    from sqlalchemy.exc import OperationalError

    from mailtrek.state.db import _open_error

    e = OperationalError("connect", {}, Exception(
        'connection failed: FATAL:  password authentication failed for user "mailtrek"'))
    err = _open_error("postgresql+psycopg://mailtrek:Db-Pw-66@db.example.test/mt", e)
    assert "authentication failed for user mailtrek" in err.message and "PGPASSWORD" in err.hint
    assert "Db-Pw-66" not in err.message + err.hint and err.exit_code == 7
    other = _open_error("sqlite:////nowhere/x.db", OperationalError("x", {}, Exception("disk I/O error")))
    assert "OperationalError" in other.message


def test_batch_show_names_the_worker_holding_a_mailbox(tmp_path):
    from datetime import timedelta

    from sqlalchemy import update

    from mailtrek.orchestrate.batches import create_batch
    from mailtrek.orchestrate.csvfile import parse_users_csv
    from mailtrek.orchestrate.endpoints import add_endpoint, make_endpoint
    from mailtrek.orchestrate.home import utcnow
    from mailtrek.state.orchestration import batch_users

    home = open_home(tmp_path / "home")
    add_endpoint(home, make_endpoint("src", host="127.0.0.1"))
    add_endpoint(home, make_endpoint("dst", host="127.0.0.2"))
    create_batch(home, "b", endpoint="src", dest_endpoint="dst",
                 users=parse_users_csv(b"EmailAddress,UserName,Password\na@x.test,a,p\nb@x.test,b,p\n"))
    with home.engine.begin() as c:
        c.execute(update(batch_users).where(batch_users.c.email == "a@x.test").values(
            lease_owner="host1:123:abcd", lease_expires=utcnow() + timedelta(minutes=2)))
        c.execute(update(batch_users).where(batch_users.c.email == "b@x.test").values(
            lease_owner="host2:9:dead", lease_expires=utcnow() - timedelta(minutes=2)))  # expired
    doc = json.loads(mailtrek(home.path, "batch", "show", "b", "--json").stdout)
    assert {u["email"]: u["worker"] for u in doc["users"]} == {"a@x.test": "host1:123:abcd", "b@x.test": None}
    assert "host1:123:abcd" in inproc(home.path, "batch", "show", "b").stdout


def on_terminal(home: Path, answer: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run mailtrek with a terminal as stdin (so it asks) and type ``answer``."""
    import pty

    master, slave = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILTREK_")} | {"MAILTREK_HOME": str(home)}
    try:
        p = subprocess.Popen([*MAILTREK, *args], env=env, stdin=slave, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, start_new_session=True)
        # Type until it is taken: a hidden prompt flushes what was typed before it was shown.
        for _ in range(200):
            os.write(master, answer.encode() + b"\n")
            try:
                out, err = p.communicate(timeout=0.3)
                break
            except subprocess.TimeoutExpired:
                continue
        else:
            p.kill()
            raise AssertionError("the command never took the answer")
    finally:
        os.close(slave)
        os.close(master)
    return subprocess.CompletedProcess(args, p.returncode, out, err)


def test_terminal_prompts_and_ca_file_for_endpoint_test(tmp_path, dovecot_src):
    from mailtrek.orchestrate.batches import create_batch, list_batches
    from mailtrek.orchestrate.csvfile import parse_users_csv
    from mailtrek.orchestrate.endpoints import add_endpoint, make_endpoint

    name, pw = f"tty{os.urandom(3).hex()}", f"Pw-{os.urandom(6).hex()}"
    dovecot_src.add_user(name, pw)
    h = open_home(tmp_path / "home")
    # Stored without its CA: the test fails at TLS until --ca-file names it.
    add_endpoint(h, make_endpoint("src", host=dovecot_src.host, port=dovecot_src.ssl_port, security="ssl"))
    assert mailtrek(h.path, "endpoint", "test", "src").returncode == 4
    r = on_terminal(h.path, pw, "endpoint", "test", "src", "--user", name, "--ca-file", str(dovecot_src.ca_file))
    assert r.returncode == 0 and "all checks passed" in r.stdout, r.stdout + r.stderr
    assert "[ok] login" in r.stdout and pw not in r.stdout + r.stderr

    create_batch(h, "b", endpoint="src", dest_endpoint="src",
                 users=parse_users_csv(b"EmailAddress,UserName,Password\na@x.test,a,p\n"))
    r = on_terminal(h.path, "n", "batch", "delete", "b")
    assert r.returncode == 1 and "Delete batch b" in r.stdout and [b.name for b in list_batches(h)] == ["b"]
    assert mailtrek(h.path, "batch", "delete", "b").returncode == 0  # no terminal: no question (scripts)
    assert list_batches(h) == []


def test_a_database_from_before_the_audit_log_gains_its_tables(tmp_path):
    import sqlite3

    from sqlalchemy import inspect

    from mailtrek.state.db import open_engine
    from mailtrek.state.migrate import head

    path = tmp_path / "old.db"
    open_engine(path).dispose()
    with sqlite3.connect(path) as c:  # as revision 0003 left it
        c.execute("DROP TABLE audit_log")
        c.execute("DROP TABLE route_rates")
        c.execute("UPDATE alembic_version SET version_num = '0003'")
    engine = open_engine(path)
    try:
        assert {"audit_log", "route_rates"} <= set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    with sqlite3.connect(path) as c:
        assert c.execute("SELECT version_num FROM alembic_version").fetchall() == [(head(),)]
