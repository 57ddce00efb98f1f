"""`mailtrek admin set-password` and `mailtrek serve` option checks; the speed meter."""

from __future__ import annotations

import typer
from sqlalchemy import select
from typer.testing import CliRunner

import mailtrek.state.web  # noqa: F401
from mailtrek.cli import web_cmds
from mailtrek.orchestrate.home import open_home
from mailtrek.state.web import web_admin
from mailtrek.web.auth import admin_password_set, check_admin_password
from mailtrek.web.live import SpeedMeter

app = typer.Typer()
web_cmds.register(app)


def run(*args: str, env: dict[str, str] | None = None, input: str | None = None):
    return CliRunner().invoke(app, list(args), env=env, input=input)


def test_set_password_from_file_env_and_refusals(tmp_path):
    home = tmp_path / "home"
    pw = tmp_path / "pw"
    pw.write_text("a long admin password\n")
    r = run("admin", "set-password", "--password-file", str(pw), "--home", str(home))
    assert r.exit_code == 0, r.output
    assert "a long admin password" not in r.output
    h = open_home(home)
    assert check_admin_password(h, "a long admin password")
    assert not check_admin_password(h, "a long admin passwor")
    # The hash is argon2id; the password itself is nowhere in the database file.
    with h.engine.connect() as c:
        stored = c.execute(select(web_admin.c.password_hash)).scalar_one()
    assert stored.startswith("$argon2id$") and "a long admin password" not in stored
    for f in home.glob("state.db*"):
        assert b"a long admin password" not in f.read_bytes()

    r = run("admin", "set-password", "--home", str(home), env={"MAILTREK_WEB_PASSWORD": "from the environment"})
    assert r.exit_code == 0 and check_admin_password(h, "from the environment")
    r = run("admin", "set-password", "--home", str(home), env={"MAILTREK_WEB_PASSWORD": "short"})
    assert r.exit_code == 2 and "at least 10 characters" in r.output
    assert check_admin_password(h, "from the environment")  # unchanged
    r = run("admin", "set-password", "--home", str(tmp_path / "other"))  # no tty, no file, no env
    assert r.exit_code == 2 and "no password given" in r.output
    assert not admin_password_set(open_home(tmp_path / "other"))


def test_serve_refuses_half_tls(tmp_path):
    r = run("serve", "--tls-cert", str(tmp_path / "c.pem"), "--home", str(tmp_path / "h"))
    assert r.exit_code == 2 and "go together" in r.output


def test_loopback_detection():
    assert web_cmds._loopback("127.0.0.1") and web_cmds._loopback("::1") and web_cmds._loopback("localhost")
    assert not web_cmds._loopback("0.0.0.0") and not web_cmds._loopback("192.168.1.5")


def test_speed_meter(monkeypatch):
    import mailtrek.web.live as live

    now = [1000.0]
    monkeypatch.setattr(live.time, "monotonic", lambda: now[0])
    m = SpeedMeter()
    key = ("b", "u@x")
    assert m.observe(key, 0, True) is None  # one sample: no speed yet
    now[0] += 2
    assert m.observe(key, 50, True) == 25.0
    now[0] += 2
    assert m.observe(key, 50, True) == 12.5  # stalled: the average over the window falls
    now[0] += 120
    assert m.observe(key, 170, True) is not None
    assert m.observe(key, 10, True) is None  # a new run from a lower count starts over
    assert m.observe(key, 10, False) is None


def _serve(home, *extra: str):  # type: ignore[no-untyped-def]
    """Start `mailtrek serve` on a free port; return (process, base URL) once it answers."""
    import os
    import socket
    import subprocess
    import sys
    import time

    import httpx

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    p = subprocess.Popen([sys.executable, "-m", "mailtrek", "serve", "--port", str(port),
                          "--home", str(home), *extra], env=dict(os.environ),
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(url + "/login", timeout=1)
            return p, url
        except httpx.TransportError:
            time.sleep(0.1)
    p.kill()
    raise AssertionError("mailtrek serve did not answer")


def test_serve_believes_proxy_headers_only_from_a_trusted_proxy(tmp_path):
    """Forged X-Forwarded-* change nothing; only the allowed Host names are answered."""
    import httpx

    home = tmp_path / "home"
    pw = "a long admin password"
    assert run("admin", "set-password", "--home", str(home),
               env={"MAILTREK_WEB_PASSWORD": pw}).exit_code == 0
    p, url = _serve(home)
    try:
        with httpx.Client(base_url=url) as c:
            r = c.post("/api/login", json={"password": pw}, headers={"X-Forwarded-Proto": "https"})
            assert r.status_code == 200 and "secure" not in r.headers["set-cookie"].lower()
            assert c.get("/login", headers={"Host": "rebound.attacker.test"}).status_code == 400
            assert c.get("/login", headers={"Host": "localhost"}).status_code == 303  # logged in
            codes = [c.post("/api/login", json={"password": "guess"},
                            headers={"X-Forwarded-For": f"203.0.113.{i}"}).status_code
                     for i in range(6)]
            assert codes == [401] * 5 + [429]  # one address (127.0.0.1), whatever the header says
    finally:
        p.terminate()
        p.wait(10)
    p, url = _serve(home, "--trusted-proxy", "127.0.0.1")
    try:
        with httpx.Client(base_url=url) as c:
            codes = [c.post("/api/login", json={"password": "guess"},
                            headers={"X-Forwarded-For": "198.51.100.7"}).status_code
                     for _ in range(6)]
            assert codes == [401] * 5 + [429]  # the proxy's word names the client
            r = c.post("/api/login", json={"password": "guess"},
                       headers={"X-Forwarded-For": "198.51.100.8"})
            assert r.status_code == 401
    finally:
        p.terminate()
        p.wait(10)


def test_login_limit_per_account_as_well_as_per_address():
    from mailtrek.web.auth import LoginLimiter

    lim = LoginLimiter(attempts=3, window=60)
    for i in range(11):  # 11 addresses, 1 failure each: under every per-address limit
        assert lim.retry_after(f"10.0.0.{i}") == 0
        lim.failed(f"10.0.0.{i}")
    assert lim.retry_after("10.0.0.99") == 0
    lim.failed("10.0.0.99")  # the 12th failure for the one admin account
    assert lim.retry_after("10.0.0.100") > 0
    assert web_cmds.allowed_hosts("127.0.0.1", None) == ["localhost", "127.0.0.1", "[::1]"]
    assert web_cmds.allowed_hosts("10.1.2.3", None)[0] == "10.1.2.3"
    assert web_cmds.allowed_hosts("0.0.0.0", ["mig.example.com"]) == ["mig.example.com"]
