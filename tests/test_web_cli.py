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
