"""`batch create --discover` and multi-address probing: local DNS (dnslib) and real Dovecot.

Every name is resolved through a DNS server of the test's own (one per test, so each test
can give ``localhost`` the addresses it needs); Dovecot's certificate names ``localhost``.
Nothing leaves the loopback interface: names outside the zone do not resolve.
"""

from __future__ import annotations

import imaplib
import json
import os
import socket
import ssl
import subprocess
import sys
import uuid

import pytest
from dnslib import AAAA, SRV, A
from typer.testing import CliRunner

from dns_helpers import Zone, start_dns
from mailtrek.cli.main import app
from mailtrek.orchestrate.discovery import (
    Candidate,
    DiscoveryConfig,
    Lookup,
    discover,
    probe_candidate,
)

pytestmark = pytest.mark.timeout(60)
MAILTREK = [sys.executable, "-c", "import sys; from mailtrek.cli.main import main; sys.argv[0] = 'mailtrek'; main()"]
NOWHERE = "https://ispdb.invalid/v1.1/"  # not in the zone: the ISP database step finds nothing, fast


@pytest.fixture
def dns():
    zone = Zone()
    server, ns = start_dns(zone)
    zone.set("localhost", "A", [A("127.0.0.1")])
    yield zone, ns
    server.stop()


def cli(home, *args):
    return CliRunner().invoke(app, [*args, "--home", str(home)])


def discover_args(ns, ca) -> list[str]:
    return ["--discover", "--nameserver", ns, "--ca-file", str(ca), "--ispdb-url", NOWHERE,
            "--discover-timeout", "2"]


def srv(zone, domain: str, port: int, target: str = "localhost.") -> None:
    zone.set(f"_imaps._tcp.{domain}", "SRV", [SRV(0, 1, port, target)])


def users_csv(tmp_path, dovecot_src, domain: str, n: int = 1, dst=None) -> tuple:
    """Add ``n`` source users; return (csv path, [(email, login, password)])."""
    rows = []
    for _ in range(n):
        login = f"bd{uuid.uuid4().hex[:10]}"
        pw = f"Pw-{uuid.uuid4().hex[:12]}"
        dovecot_src.add_user(login, pw)
        if dst is not None:
            dst.add_user(f"{login}@{domain}", pw)
        rows.append((f"{login}@{domain}", login, pw))
    path = tmp_path / f"{domain}-{uuid.uuid4().hex[:6]}.csv"
    path.write_text("EmailAddress,UserName,Password\n" + "".join(f"{e},{u},{p}\n" for e, u, p in rows))
    return path, rows


def endpoints(home) -> dict[str, dict]:
    return {e["name"]: e for e in json.loads(cli(home, "endpoint", "list", "--json").output)}


def add_dst(home, dovecot_dst) -> None:
    r = cli(home, "endpoint", "add", "dst", "--host", "localhost", "--port", str(dovecot_dst.ssl_port),
            "--ca-file", str(dovecot_dst.ca_file))
    assert r.exit_code == 0, r.output


def test_srv_fills_in_the_endpoint_and_the_batch_runs(tmp_path, dns, dovecot_src, dovecot_dst):
    zone, ns = dns
    srv(zone, "bd-srv.test", dovecot_src.ssl_port)
    csv, rows = users_csv(tmp_path, dovecot_src, "bd-srv.test", 2, dst=dovecot_dst)
    email, login, pw = rows[0]
    c = imaplib.IMAP4_SSL("127.0.0.1", dovecot_src.ssl_port,
                          ssl_context=ssl.create_default_context(cafile=str(dovecot_src.ca_file)))
    c.login(login, pw)
    c.append("INBOX", "", None, b"From: a@x.test\r\nSubject: found\r\nMessage-ID: <bd1@x.test>\r\n\r\nhi\r\n")
    c.logout()
    home = tmp_path / "home"
    add_dst(home, dovecot_dst)
    r = cli(home, "batch", "create", "b1", "--csv", str(csv), "--dest-endpoint", "dst", "--autostart",
            *discover_args(ns, dovecot_src.ca_file))
    assert r.exit_code == 0, r.output
    assert f"discovered localhost:{dovecot_src.ssl_port} (ssl) for bd-srv.test from SRV" in r.output
    assert f"SRV _imaps._tcp.bd-srv.test -> localhost:{dovecot_src.ssl_port}" in r.output
    assert f"saved endpoint bd-srv.test: localhost:{dovecot_src.ssl_port} (ssl)" in r.output
    ep = endpoints(home)["bd-srv.test"]
    assert (ep["host"], ep["port"], ep["security"]) == ("localhost", dovecot_src.ssl_port, "ssl")
    assert ep["ca_file"] == str(dovecot_src.ca_file.resolve())
    doc = json.loads(cli(home, "batch", "show", "b1", "--json").output)
    assert doc["source_endpoint"] == "bd-srv.test" and doc["status"] == "Syncing"
    assert sorted(u["email"] for u in doc["users"]) == sorted(e for e, _, _ in rows)
    for _, _, secret in rows:
        assert secret not in r.output
    # The saved endpoint works: the runner copies the mailbox through it.
    run = subprocess.run([*MAILTREK, "run", "--until-idle", "--home", str(home)], capture_output=True,
                         text=True, timeout=50, env=dict(os.environ))
    assert run.returncode == 0, run.stdout + run.stderr
    doc = json.loads(cli(home, "batch", "show", "b1", "--json").output)
    assert doc["status"] == "Synced", (doc, run.stdout[-2000:])
    assert dovecot_dst.mailbox_status(email)["INBOX"]["messages"] == 1
    # A second batch for the same domain reuses the endpoint it saved.
    csv2, _ = users_csv(tmp_path, dovecot_src, "bd-srv.test")
    r = cli(home, "batch", "create", "b2", "--csv", str(csv2), "--dest-endpoint", "dst",
            *discover_args(ns, dovecot_src.ca_file))
    assert r.exit_code == 0 and "using stored endpoint bd-srv.test" in r.output, r.output
    assert set(endpoints(home)) == {"dst", "bd-srv.test"}


def test_no_discoverable_server_is_a_clear_error_and_stores_nothing(tmp_path, dns, dovecot_src, dovecot_dst):
    zone, ns = dns
    zone.set("imap.bd-dead.test", "A", [A("127.0.0.2")])  # resolves, but nothing listens there
    home = tmp_path / "home"
    add_dst(home, dovecot_dst)
    for domain in ("bd-none.test", "bd-dead.test"):
        csv, _ = users_csv(tmp_path, dovecot_src, domain)
        for extra in ([], ["--dry-run"]):
            r = cli(home, "batch", "create", "b", "--csv", str(csv), "--dest-endpoint", "dst",
                    *discover_args(ns, dovecot_src.ca_file), *extra)
            assert r.exit_code == 4, r.output
            assert f"no usable IMAP server found for {domain}; tried:" in r.output
            assert f"SRV _imaps._tcp.{domain}: nothing" in r.output and "MX " in r.output
            assert "mailtrek endpoint add" in r.output
    assert "candidate imap.bd-dead.test:993 (ssl) from guess: tcp: cannot connect to 127.0.0.2:993" in r.output
    assert set(endpoints(home)) == {"dst"}
    assert "(none)" in cli(home, "batch", "list").output


def test_existing_endpoint_is_reused_and_dry_run_stores_nothing(tmp_path, dns, dovecot_src, dovecot_dst):
    zone, ns = dns
    srv(zone, "bd-reuse.test", dovecot_src.ssl_port)
    csv, _ = users_csv(tmp_path, dovecot_src, "bd-reuse.test", dst=dovecot_dst)
    home = tmp_path / "home"
    add_dst(home, dovecot_dst)
    r = cli(home, "batch", "create", "dry", "--csv", str(csv), "--dest-endpoint", "dst", "--dry-run",
            *discover_args(ns, dovecot_src.ca_file))
    assert r.exit_code == 0, r.output
    assert "dry run: endpoint bd-reuse.test" in r.output and "not stored" in r.output
    assert "no batch created" in r.output
    assert set(endpoints(home)) == {"dst"} and "(none)" in cli(home, "batch", "list").output
    # An endpoint for the same host, port and security is used as it is, under its name.
    assert cli(home, "endpoint", "add", "mine", "--host", "LOCALHOST", "--port", str(dovecot_src.ssl_port),
               "--security", "ssl", "--ca-file", str(dovecot_src.ca_file)).exit_code == 0
    r = cli(home, "batch", "create", "b", "--csv", str(csv), "--dest-endpoint", "dst",
            *discover_args(ns, dovecot_src.ca_file))
    assert r.exit_code == 0, r.output
    assert "using stored endpoint mine" in r.output and "saved endpoint" not in r.output
    assert set(endpoints(home)) == {"dst", "mine"}
    assert json.loads(cli(home, "batch", "show", "b", "--json").output)["source_endpoint"] == "mine"


def test_domains_on_different_servers_are_refused(tmp_path, dns, dovecot_src, dovecot_dst):
    zone, ns = dns
    srv(zone, "bd-one.test", dovecot_src.ssl_port)
    srv(zone, "bd-two.test", dovecot_dst.ssl_port)
    srv(zone, "bd-three.test", dovecot_src.ssl_port)
    one, _ = users_csv(tmp_path, dovecot_src, "bd-one.test")
    two, _ = users_csv(tmp_path, dovecot_src, "bd-two.test")
    three, _ = users_csv(tmp_path, dovecot_src, "bd-three.test")
    mixed = tmp_path / "mixed.csv"
    mixed.write_text(one.read_text() + "".join(two.read_text().splitlines(keepends=True)[1:]))
    same = tmp_path / "same.csv"
    same.write_text(one.read_text() + "".join(three.read_text().splitlines(keepends=True)[1:]))
    home = tmp_path / "home"
    add_dst(home, dovecot_dst)
    bundle = tmp_path / "bundle.pem"  # trusts both servers, so both probes succeed
    bundle.write_bytes(dovecot_src.ca_file.read_bytes() + dovecot_dst.ca_file.read_bytes())
    r = cli(home, "batch", "create", "b", "--csv", str(mixed), "--dest-endpoint", "dst", *discover_args(ns, bundle))
    assert r.exit_code == 2, r.output
    assert "served by 2 different IMAP servers" in r.output
    assert f"bd-one.test -> localhost:{dovecot_src.ssl_port} (ssl)" in r.output
    assert f"bd-two.test -> localhost:{dovecot_dst.ssl_port} (ssl)" in r.output
    assert "--endpoint" in r.output
    assert set(endpoints(home)) == {"dst"} and "(none)" in cli(home, "batch", "list").output
    # Naming the endpoint is the way out; --discover with it is a usage error.
    r = cli(home, "batch", "create", "b", "--csv", str(mixed), "--dest-endpoint", "dst", "--endpoint", "dst",
            *discover_args(ns, bundle))
    assert r.exit_code == 2 and "not both" in r.output
    # Two domains on one server: one endpoint, named after the first domain of the CSV.
    r = cli(home, "batch", "create", "b", "--csv", str(same), "--dest-endpoint", "dst", *discover_args(ns, bundle))
    assert r.exit_code == 0, r.output
    assert "for bd-one.test, bd-three.test from SRV" in r.output
    assert set(endpoints(home)) == {"dst", "bd-one.test"}


def test_source_is_required_and_failed_create_leaves_no_endpoint(tmp_path, dns, dovecot_src, dovecot_dst):
    zone, ns = dns
    srv(zone, "bd-busy.test", dovecot_src.ssl_port)
    csv, _ = users_csv(tmp_path, dovecot_src, "bd-busy.test")
    home = tmp_path / "home"
    add_dst(home, dovecot_dst)
    r = cli(home, "batch", "create", "b", "--csv", str(csv), "--dest-endpoint", "dst")
    assert r.exit_code == 2 and "--endpoint" in r.output and "--discover" in r.output
    r = cli(home, "batch", "create", "b", "--csv", str(csv), *discover_args(ns, dovecot_src.ca_file))
    assert r.exit_code == 2 and "exactly one destination" in r.output and "discovered" not in r.output
    assert cli(home, "batch", "create", "first", "--csv", str(csv), "--dest-endpoint", "dst",
               "--endpoint", "dst").exit_code == 0
    # Same users, still in an unfinished batch: refused after discovery, the new endpoint goes again.
    r = cli(home, "batch", "create", "second", "--csv", str(csv), "--dest-endpoint", "dst",
            *discover_args(ns, dovecot_src.ca_file))
    assert r.exit_code == 2 and "already in an unfinished batch" in r.output, r.output
    assert "saved endpoint bd-busy.test" in r.output and "removed again" in r.output
    assert set(endpoints(home)) == {"dst"}
    # A taken batch name is refused before any network work.
    r = cli(home, "batch", "create", "first", "--csv", str(csv), "--dest-endpoint", "dst",
            *discover_args(ns, dovecot_src.ca_file))
    assert r.exit_code == 2 and "exists" in r.output and "discovered" not in r.output


# -- every address of a host -----------------------------------------------------------------
def refused(address: str, port: int) -> bool:
    try:
        socket.create_connection((address, port), 1).close()
    except OSError:
        return True
    return False


def test_probe_tries_each_address_until_one_answers(dns, dovecot_src):
    zone, ns = dns
    assert refused("127.0.0.2", dovecot_src.ssl_port)  # Dovecot listens on 127.0.0.1 only
    zone.set("localhost", "A", [A("127.0.0.2"), A("127.0.0.1")])
    srv(zone, "bd-multi.test", dovecot_src.ssl_port)
    cfg = DiscoveryConfig(nameserver=ns, ca_file=str(dovecot_src.ca_file), ispdb_url=NOWHERE, timeout=2.0)
    d = discover("x@bd-multi.test", cfg)
    best = d.best
    assert best is not None and best.port == dovecot_src.ssl_port, d.as_dict()
    assert best.steps[0].detail == "localhost resolves to 127.0.0.2, 127.0.0.1"
    tcp = best.steps[1]
    assert tcp.ok and tcp.detail.startswith(f"connected to 127.0.0.1:{dovecot_src.ssl_port}")
    assert best.notes == [f"cannot connect to 127.0.0.2:{dovecot_src.ssl_port}: Connection refused"]
    # Every address failing: each one is reported, in order.
    zone.set("localhost", "A", [A("127.0.0.2"), A("127.0.0.3")])
    zone.set("localhost", "AAAA", [AAAA("::1")])
    c = probe_candidate(Candidate("localhost", dovecot_src.ssl_port, "ssl"), Lookup(cfg), cfg)
    assert not c.ok and [s.name for s in c.steps] == ["dns", "tcp"]
    assert [n.split(": ")[0] for n in c.notes] == [f"cannot connect to {a}:{dovecot_src.ssl_port}"
                                                  for a in ("127.0.0.2", "127.0.0.3", "[::1]")]
    assert c.steps[1].detail.startswith(f"no address of localhost answered on port {dovecot_src.ssl_port}")
    assert "127.0.0.3" in c.steps[1].detail and "[::1]" in c.steps[1].detail
    assert c.as_dict()["notes"] == c.notes


def test_without_a_nameserver_addresses_come_from_getaddrinfo(dovecot_src):
    cfg = DiscoveryConfig(ca_file=str(dovecot_src.ca_file), timeout=2.0)
    system = list(dict.fromkeys(i[4][0] for i in socket.getaddrinfo("localhost", None, type=socket.SOCK_STREAM)))
    assert Lookup(cfg).addresses("localhost") == (system, None)
    c = probe_candidate(Candidate("localhost", dovecot_src.ssl_port, "ssl"), Lookup(cfg), cfg)
    assert c.ok, c.as_dict()  # ::1 first, where the system lists it, is skipped for 127.0.0.1
    assert len(c.notes) == system.index("127.0.0.1")
    addrs, why = Lookup(cfg).addresses("no-such-host.invalid")
    assert addrs == [] and "does not resolve" in why
