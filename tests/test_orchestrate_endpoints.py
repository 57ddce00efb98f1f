"""`endpoint test` step by step against real Dovecot, and the endpoint/tenant/batch CLI."""

from __future__ import annotations

import json
import socket

import pytest
from typer.testing import CliRunner

from mailtrek.cli.main import app
from mailtrek.orchestrate.endpoints import make_endpoint
from mailtrek.orchestrate.probe import probe_endpoint

pytestmark = pytest.mark.timeout(60)


def cli(home, *args, env=None):
    return CliRunner().invoke(app, [*args, "--home", str(home)], env=env)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_probe_ssl_login_ok(dovecot_src, src_user):
    user, password = src_user
    ep = make_endpoint("e", host="localhost", port=dovecot_src.ssl_port, ca_file=str(dovecot_src.ca_file))
    r = probe_endpoint(ep, user, password)
    assert r.ok, r.steps
    assert [s.name for s in r.steps] == ["dns", "tcp", "tls", "capabilities", "login"]
    assert "TLSv1" in r.steps[2].detail


def test_probe_starttls_and_admin_login(dovecot_src, src_user):
    user, _ = src_user
    ep = make_endpoint("e", host="localhost", port=dovecot_src.port, security="starttls",
                       ca_file=str(dovecot_src.ca_file))
    r = probe_endpoint(ep, dovecot_src.master_login(user), dovecot_src.master_password)
    assert r.ok, r.steps


@pytest.mark.parametrize(
    ("make", "step", "advice"),
    [
        (lambda d: make_endpoint("e", host="no-such-host.invalid", port=993), "dns", "host name"),
        (lambda d: make_endpoint("e", host="127.0.0.1", port=free_port()), "tcp", "port"),
        (lambda d: make_endpoint("e", host="localhost", port=d.ssl_port), "tls", "--ca-file"),  # self-signed
        (lambda d: make_endpoint("e", host="localhost", port=d.port, security="ssl", ca_file=str(d.ca_file)),
         "tls", "starttls"),
    ],
)
def test_probe_failures_name_the_step(dovecot_src, src_user, make, step, advice):
    user, password = src_user
    r = probe_endpoint(make(dovecot_src), user, password, timeout=5)
    assert not r.ok and r.failed.name == step, r.steps
    assert advice in r.failed.advice
    assert all(s.ok for s in r.steps[:-1])


def test_probe_wrong_password(dovecot_src, src_user):
    user, _ = src_user
    ep = make_endpoint("e", host="localhost", port=dovecot_src.ssl_port, ca_file=str(dovecot_src.ca_file))
    r = probe_endpoint(ep, user, "Wrong-Password-77")
    assert r.failed.name == "login" and "app password" in r.failed.advice
    assert all("Wrong-Password-77" not in s.detail for s in r.steps)


def test_endpoint_cli_round_trip(tmp_path, dovecot_src, src_user):
    user, password = src_user
    home = tmp_path / "home"
    r = cli(home, "endpoint", "add", "dov", "--host", "localhost", "--port", str(dovecot_src.ssl_port),
            "--ca-file", str(dovecot_src.ca_file), "--preset", "dovecot")
    assert r.exit_code == 0, r.output
    assert cli(home, "endpoint", "add", "dov", "--host", "x.test").exit_code == 2  # name taken
    r = cli(home, "endpoint", "test", "dov", "--user", user, env={"MAILTREK_SOURCE_PASSWORD": password})
    assert r.exit_code == 0 and "all checks passed" in r.output and password not in r.output, r.output
    pwfile = tmp_path / "pw"
    pwfile.write_text("Not-The-Password\n")
    r = cli(home, "endpoint", "test", "dov", "--user", user, "--password-file", str(pwfile))
    assert r.exit_code == 3 and "[FAILED] login" in r.output and "Not-The-Password" not in r.output
    r = cli(home, "endpoint", "list", "--json")
    assert json.loads(r.output)[0]["preset"] == "dovecot"
    assert json.loads(cli(home, "endpoint", "show", "dov").output)["port"] == dovecot_src.ssl_port
    assert cli(home, "endpoint", "remove", "dov").exit_code == 0
    r = cli(home, "endpoint", "show", "dov")
    assert r.exit_code == 2 and "no endpoint named" in r.output


def test_preset_only_endpoint_and_presets_list(tmp_path):
    home = tmp_path / "home"
    r = cli(home, "endpoint", "add", "g", "--preset", "gmail")
    assert r.exit_code == 0 and "imap.gmail.com:993" in r.output and "app password" in r.output
    r = CliRunner().invoke(app, ["endpoint", "presets"])
    assert "fastmail" in r.output and "2500" in r.output


def test_batch_cli_contract_and_errors(tmp_path):
    home = tmp_path / "home"
    cli(home, "endpoint", "add", "src", "--host", "127.0.0.1")
    cli(home, "endpoint", "add", "dst", "--host", "127.0.0.1")
    csv = tmp_path / "u.csv"
    csv.write_text("EmailAddress,UserName,Password\nalice@contoso.test,alice,Alice-Pw-1\n"
                   "bob@contoso.test,bob*admin,Admin-Pw-2\n")
    bad = tmp_path / "bad.csv"
    bad.write_text("EmailAddress,UserName,Password\nalice,alice,Alice-Pw-1\nbob@contoso.test,,Bob-Pw\n")
    r = cli(home, "batch", "create", "b", "--endpoint", "src", "--dest-endpoint", "dst", "--csv", str(bad))
    assert r.exit_code == 2 and "line 2:" in r.output and "line 3:" in r.output and "Bob-Pw" not in r.output
    assert "(none)" in cli(home, "batch", "list").output  # nothing was created
    r = cli(home, "batch", "create", "b", "--endpoint", "src", "--csv", str(csv))
    assert r.exit_code == 2 and "exactly one destination" in r.output
    r = cli(home, "batch", "create", "b", "--endpoint", "nope", "--dest-endpoint", "dst", "--csv", str(csv))
    assert r.exit_code == 2 and "no endpoint named 'nope'" in r.output
    r = cli(home, "batch", "create", "b", "--endpoint", "src", "--dest-endpoint", "dst", "--csv", str(csv),
            "--notify", "ops@contoso.test", "--exclude-folder", "Junk", "--max-size", "20M",
            "--since", "2020-01-01")
    assert r.exit_code == 0, r.output
    d = json.loads(cli(home, "batch", "show", "b", "--json").output)
    assert d["status"] == "Created" and d["options"]["max_size"] == 20 << 20
    assert d["options"]["exclude"] == ["Junk"] and d["options"]["since"].startswith("2020-01-01")
    for u in d["users"]:
        assert {"email", "status", "items_synced", "items_skipped", "bytes", "last_sync", "error"} <= set(u)
        assert u["status"] == "Queued"
    r = cli(home, "batch", "resume", "b")
    assert r.exit_code == 0 and "Syncing" in r.output  # resume of a created batch starts it
    r = cli(home, "batch", "stop", "b")
    assert "Stopped" in r.output
    r = cli(home, "batch", "complete", "b", "--force")
    assert r.exit_code == 2 and "cannot complete a batch that is Stopped" in r.output
    for fmt in ("csv", "json", "html"):
        r = cli(home, "batch", "report", "b", "--format", fmt)
        assert r.exit_code == 0 and "alice@contoso.test" in r.output
        assert "Alice-Pw-1" not in r.output and "Admin-Pw-2" not in r.output
    assert cli(home, "batch", "report", "b", "--format", "pdf").exit_code == 2
    r = cli(home, "batch", "delete", "b")
    assert r.exit_code == 0 and "2 users" in r.output
    assert b"Alice-Pw-1" not in (home / "state.db").read_bytes()
    assert cli(home, "batch", "show", "b").exit_code == 2


def test_tenant_add_refuses_bad_credentials(tmp_path):
    sim_mod = pytest.importorskip("mailtrek.sim.server")
    from mailtrek.sim.config import SimConfig

    home = tmp_path / "home"
    secret = tmp_path / "s"
    secret.write_text("Wrong-Secret-5\n")
    with sim_mod.Simulator(SimConfig(client_secrets={"app": "Right-Secret-5"})) as sim:
        r = cli(home, "tenant", "add", "t", "--tenant-id", sim.config.tenant_id, "--client-id", "app",
                "--client-secret-file", str(secret), "--m365-authority", sim.authority(),
                "--graph-url", f"{sim.base_url}/graph", "--ca-file", str(sim.ca_file))
        assert r.exit_code != 0 and "Wrong-Secret-5" not in r.output, r.output
        assert "(none)" in cli(home, "tenant", "list").output
        secret.write_text("Right-Secret-5\n")
        r = cli(home, "tenant", "add", "t", "--tenant-id", sim.config.tenant_id, "--client-id", "app",
                "--client-secret-file", str(secret), "--m365-authority", sim.authority(),
                "--graph-url", f"{sim.base_url}/graph", "--ca-file", str(sim.ca_file))
        assert r.exit_code == 0, r.output
        assert cli(home, "tenant", "test", "t").exit_code == 0
        assert b"Right-Secret-5" not in (home / "state.db").read_bytes()
        assert cli(home, "tenant", "remove", "t").exit_code == 0


def test_a_missing_ca_file_is_a_usage_error_everywhere(tmp_path):
    missing = tmp_path / "nope.pem"
    for args in (["endpoint", "add", "x", "--host", "imap.example.org", "--ca-file", str(missing)],
                 ["endpoint", "discover", "a@example.org", "--no-probe", "--ca-file", str(missing)]):
        r = cli(tmp_path / "home", *args)
        assert r.exit_code == 2 and f"CA file not found: {missing}" in r.output, (args, r.output)
    assert "x" not in cli(tmp_path / "home", "endpoint", "list").output.split()
