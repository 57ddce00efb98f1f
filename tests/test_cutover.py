"""Cutover checks against a real (local) DNS server, and `batch complete`'s MX guard."""

from __future__ import annotations

from datetime import timedelta

import pytest
from dnslib import CNAME, MX, TXT
from dnslib.server import DNSLogger, DNSServer
from sqlalchemy import update
from typer.testing import CliRunner

from dns_helpers import Zone
from mailtrek.cli.main import app
from mailtrek.orchestrate.cutover import CutoverStatus, check_cutover, decide
from mailtrek.orchestrate.home import open_home, utcnow
from mailtrek.state.orchestration import mx_sightings

pytestmark = pytest.mark.timeout(60)
M365_MX = "contoso-test.mail.protection.outlook.com"


@pytest.fixture(scope="module")
def dns():
    zone = Zone()
    server = DNSServer(zone, address="127.0.0.1", port=0, logger=DNSLogger(log="-request,-reply,-truncated,-error,-recv,-send,-data", prefix=False))
    server.start_thread()
    port = server.server.server_address[1]
    yield zone, f"127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def home(tmp_path):
    return open_home(tmp_path / "home")


def old_mx(zone, domain="contoso.test"):
    zone.set(domain, "MX", [MX("mail.oldhost.test", 10)])
    zone.set(domain, "TXT", [TXT("v=spf1 mx -all"), TXT("google-site-verification=abc")])
    zone.set(f"autodiscover.{domain}", "CNAME", [])


def new_mx(zone, domain="contoso.test"):
    zone.set(domain, "MX", [MX(M365_MX, 0)])
    zone.set(domain, "TXT", [TXT("v=spf1 include:spf.protection.outlook.com -all")])
    zone.set(f"autodiscover.{domain}", "CNAME", [CNAME("autodiscover.outlook.com")])


async def test_not_switched_then_switched_and_remembered(dns, home):
    zone, ns = dns
    old_mx(zone)
    st = await check_cutover(home, "contoso.test", nameserver=ns, expected_mx=[M365_MX])
    assert st.mx == [(10, "mail.oldhost.test")] and st.spf == ["v=spf1 mx -all"]
    assert not st.switched and st.switched_since is None and st.autodiscover == []
    new_mx(zone)
    st = await check_cutover(home, "Contoso.Test.", nameserver=ns, expected_mx=[M365_MX])
    assert st.switched and st.switched_since is not None and not st.settled
    assert st.autodiscover == ["autodiscover.outlook.com"]
    first = st.switched_since
    st = await check_cutover(home, "contoso.test", nameserver=ns, expected_mx=[M365_MX])
    assert st.switched_since == first  # "since when" is the first sighting
    old_mx(zone)  # switched back: the clock starts again next time
    st = await check_cutover(home, "contoso.test", nameserver=ns, expected_mx=[M365_MX])
    assert not st.switched and st.switched_since is None


async def test_suffix_fallback_without_tenant(dns, home):
    zone, ns = dns
    new_mx(zone, "fabrikam.test")
    st = await check_cutover(home, "fabrikam.test", nameserver=ns)
    assert st.expected_from == "suffix" and st.switched


def test_decide_needs_every_mx_host():
    st = CutoverStatus("d.test", mx=[(0, M365_MX), (10, "backup.old.test")], expected_mx=[M365_MX])
    assert not decide(st)
    st.mx = [(0, M365_MX)]
    assert decide(st)
    st.expected_mx = []
    assert not decide(st)  # the tenant lists nothing: never "switched"
    st.expected_from, st.mx = "suffix", [(0, "contoso-test.abc123.mx.microsoft")]
    assert decide(st)


async def test_dns_server_down_is_a_problem_not_a_crash(home):
    import socket

    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    from mailtrek.orchestrate import cutover

    real = cutover.resolver_for
    cutover.resolver_for = lambda ns: real(ns, timeout=0.3)
    try:
        st = await check_cutover(home, "contoso.test", nameserver=f"127.0.0.1:{port}", expected_mx=[M365_MX])
    finally:
        cutover.resolver_for = real
    assert not st.switched and any("MX lookup" in p for p in st.problems)


def cli(home, *args):
    return CliRunner().invoke(app, [*args, "--home", str(home.path)])


def test_cli_check_exit_codes(dns, home):
    zone, ns = dns
    old_mx(zone)
    r = cli(home, "cutover", "check", "contoso.test", "--nameserver", ns, "--expect-mx", M365_MX)
    assert r.exit_code == 1 and "does NOT flow" in r.output and "mail.oldhost.test" in r.output
    new_mx(zone)
    r = cli(home, "cutover", "check", "contoso.test", "--nameserver", ns, "--expect-mx", M365_MX)
    assert r.exit_code == 0 and "first seen switched" in r.output and "less than 72 hours" in r.output


def test_batch_complete_guard(dns, home, tmp_path):
    zone, ns = dns
    old_mx(zone)
    csv = tmp_path / "u.csv"
    csv.write_text("EmailAddress,UserName,Password\nalice@contoso.test,alice,pw-Alice-1\n")
    assert cli(home, "endpoint", "add", "src", "--host", "127.0.0.1").exit_code == 0
    assert cli(home, "endpoint", "add", "dst", "--host", "127.0.0.1").exit_code == 0
    assert cli(home, "batch", "create", "b", "--endpoint", "src", "--dest-endpoint", "dst",
               "--csv", str(csv), "--autostart").exit_code == 0
    from mailtrek.state.orchestration import batch_users, batches

    with home.engine.begin() as c:  # pretend the initial sync is done
        c.execute(update(batches).values(status="Synced"))
        c.execute(update(batch_users).values(status="Synced", ever_synced=True))
    r = cli(home, "batch", "complete", "b")
    assert r.exit_code == 2 and "--expect-mx" in r.output
    r = cli(home, "batch", "complete", "b", "--nameserver", ns, "--expect-mx", M365_MX)
    assert r.exit_code == 2 and "does not point to the destination" in r.output
    new_mx(zone)
    r = cli(home, "batch", "complete", "b", "--nameserver", ns, "--expect-mx", M365_MX)
    assert r.exit_code == 2 and "less than 72 hours" in r.output
    with home.engine.begin() as c:
        c.execute(update(mx_sightings).values(switched_since=utcnow() - timedelta(hours=73)))
    r = cli(home, "batch", "complete", "b", "--nameserver", ns, "--expect-mx", M365_MX)
    assert r.exit_code == 0 and "Completing" in r.output, r.output


def test_batch_complete_force(dns, home, tmp_path):
    zone, ns = dns
    old_mx(zone)
    csv = tmp_path / "u.csv"
    csv.write_text("EmailAddress,UserName,Password\nalice@contoso.test,alice,pw-Alice-1\n")
    cli(home, "endpoint", "add", "src", "--host", "127.0.0.1")
    cli(home, "endpoint", "add", "dst", "--host", "127.0.0.1")
    cli(home, "batch", "create", "b", "--endpoint", "src", "--dest-endpoint", "dst", "--csv", str(csv), "--autostart")
    from mailtrek.state.orchestration import batch_users, batches

    with home.engine.begin() as c:
        c.execute(update(batches).values(status="Synced"))
        c.execute(update(batch_users).values(status="Synced", ever_synced=True))
    r = cli(home, "batch", "complete", "b", "--nameserver", ns, "--expect-mx", M365_MX, "--force")
    assert r.exit_code == 0 and "warning" in r.output and "Completing" in r.output


def test_tenant_expected_records_from_simulator(dns, home, tmp_path):
    sim_mod = pytest.importorskip("mailtrek.sim.server")
    from mailtrek.sim.config import SimConfig

    zone, ns = dns
    with sim_mod.Simulator(SimConfig(mx_records={"contoso.test": "contoso-test.r4nd0m.mx.microsoft"})) as sim:
        secret = tmp_path / "secret"
        secret.write_text("client-Secret-123\n")
        r = cli(home, "tenant", "add", "t", "--tenant-id", sim.config.tenant_id, "--client-id", "app",
                "--client-secret-file", str(secret), "--m365-authority", sim.authority(),
                "--graph-url", f"{sim.base_url}/graph", "--ca-file", str(sim.ca_file))
        assert r.exit_code == 0, r.output
        assert "client-Secret-123" not in r.output
        old_mx(zone)
        r = cli(home, "cutover", "check", "contoso.test", "--nameserver", ns, "--tenant", "t")
        assert r.exit_code == 1 and "contoso-test.r4nd0m.mx.microsoft" in r.output, r.output
        # The MX looks like Microsoft's, but it is not the one this tenant expects.
        new_mx(zone)
        r = cli(home, "cutover", "check", "contoso.test", "--nameserver", ns, "--tenant", "t")
        assert r.exit_code == 1, r.output
        zone.set("contoso.test", "MX", [MX("contoso-test.r4nd0m.mx.microsoft", 0)])
        r = cli(home, "cutover", "check", "contoso.test", "--nameserver", ns, "--tenant", "t")
        assert r.exit_code == 0 and "mail flows" in r.output, r.output
        r = cli(home, "tenant", "show", "t")
        assert "client-Secret-123" not in r.output and '"client_secret": "stored"' in r.output
