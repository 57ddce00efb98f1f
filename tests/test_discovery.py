"""Endpoint discovery against a local DNS server (dnslib), a local HTTPS server and real Dovecot.

Everything listens on 127.0.0.1; every name is resolved through the test DNS server, so
nothing leaves the loopback interface (names outside the zone simply do not resolve).
"""

from __future__ import annotations

import datetime as dt
import http.server
import ipaddress
import json
import ssl
import subprocess
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from dnslib import MX, SRV, A

from dns_helpers import Zone, start_dns
from mailtrek.orchestrate.discovery import (
    DiscoveryConfig,
    discover,
    endpoint_add_command,
    parse_autoconfig,
    preset_for_mx,
)


def write_ca_and_cert(directory: Path, names: list[str]) -> tuple[Path, Path, Path]:
    """Write a fresh CA and a server certificate for ``names``; return (ca, cert, key) paths."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "discovery test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
    sans.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False)
            .sign(ca_key, hashes.SHA256()))
    directory.mkdir(parents=True, exist_ok=True)
    paths = directory / "ca.pem", directory / "cert.pem", directory / "key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


class Site:
    """Documents served by (Host without port, path without query); records each request."""

    def __init__(self) -> None:
        self.documents: dict[tuple[str, str], bytes] = {}
        self.requests: list[tuple[str, str]] = []


def start_https(site: Site, cert: Path, key: Path) -> tuple[http.server.ThreadingHTTPServer, int]:
    """Start an HTTPS server on 127.0.0.1 serving ``site``; return it and its port."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            host = (self.headers.get("Host") or "").rsplit(":", 1)[0].lower()
            path = self.path.split("?", 1)[0]
            site.requests.append((host, self.path))
            body = site.documents.get((host, path))
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


def autoconfig_xml(*servers: tuple[str, int, str], username: str = "%EMAILADDRESS%") -> bytes:
    """Return a Thunderbird config-v1.1.xml listing IMAP ``servers`` (host, port, socketType)."""
    entries = "".join(
        f"""<incomingServer type="imap"><hostname>{h}</hostname><port>{p}</port>
        <socketType>{s}</socketType><username>{username}</username>
        <authentication>password-cleartext</authentication></incomingServer>"""
        for h, p, s in servers)
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<clientConfig version="1.1"><emailProvider id="x"><domain>x</domain>
<incomingServer type="pop3"><hostname>pop.example.invalid</hostname><port>995</port>
<socketType>SSL</socketType></incomingServer>{entries}</emailProvider></clientConfig>""".encode()


# -- the tests -----------------------------------------------------------------------------

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def net(tmp_path_factory, dovecot_src):
    """DNS + HTTPS on loopback; a CA bundle trusting both the web server and Dovecot."""
    d = tmp_path_factory.mktemp("disc")
    ca, cert, key = write_ca_and_cert(d / "web", ["autoconfig.ac.test", "ac.test", "ispdb.test", "wk.test",
                                                  "autoconfig.badweb.test-other", "autoconfig.multi.test"])
    bundle = d / "bundle.pem"
    bundle.write_bytes(ca.read_bytes() + dovecot_src.ca_file.read_bytes())
    zone = Zone()
    dns_server, ns = start_dns(zone)
    site = Site()
    web, port = start_https(site, cert, key)
    zone.set("localhost", "A", [A("127.0.0.1")])
    for name in ("autoconfig.ac.test", "ispdb.test", "wk.test", "autoconfig.badweb.test"):
        zone.set(name, "A", [A("127.0.0.1")])
    yield {"zone": zone, "ns": ns, "site": site, "port": port, "bundle": str(bundle), "dir": d}
    web.shutdown()
    dns_server.stop()


def config(net, **kw) -> DiscoveryConfig:
    return DiscoveryConfig(nameserver=net["ns"], ca_file=net["bundle"], https_port=net["port"],
                           ispdb_url=f"https://ispdb.test:{net['port']}/v1.1/", timeout=3.0, **kw)


def test_srv_records_name_the_server_and_tls_ranks_first(net, dovecot_src):
    z = net["zone"]
    z.set("_imaps._tcp.srv.test", "SRV", [SRV(0, 1, dovecot_src.ssl_port, "localhost.")])
    z.set("_imap._tcp.srv.test", "SRV", [SRV(0, 1, dovecot_src.port, "localhost.")])
    d = discover("alice@srv.test", config(net))
    best = d.best
    assert best is not None and (best.host, best.port, best.security) == ("localhost", dovecot_src.ssl_port, "ssl")
    assert best.sources == [f"SRV _imaps._tcp.srv.test -> localhost:{dovecot_src.ssl_port}"]
    assert [s.name for s in best.steps] == ["dns", "tcp", "tls", "capabilities"]  # no login unless asked
    second = d.candidates[1]
    assert (second.port, second.security, second.ok) == (dovecot_src.port, "starttls", True)
    assert any(n.startswith("autoconfig") and "nothing" in n for n in d.notes)
    cmd = endpoint_add_command(best, "src", net["bundle"])
    assert cmd.startswith(f"mailtrek endpoint add src --host localhost --port {dovecot_src.ssl_port} --security ssl")


def test_autoconfig_document_plain_ranked_below_tls(net, dovecot_src):
    net["site"].documents["autoconfig.ac.test", "/mail/config-v1.1.xml"] = autoconfig_xml(
        ("localhost", dovecot_src.port, "plain"), ("localhost", dovecot_src.ssl_port, "SSL"))
    d = discover("bob@ac.test", config(net))
    assert [(c.port, c.security, c.ok) for c in d.candidates[:2]] == [
        (dovecot_src.ssl_port, "ssl", True), (dovecot_src.port, "none", True)]
    assert d.best.username == "bob@ac.test"
    assert d.best.sources == [f"autoconfig https://autoconfig.ac.test:{net['port']}/mail/config-v1.1.xml"]
    # Thunderbird passes the address to the domain's own server.
    assert ("autoconfig.ac.test", "/mail/config-v1.1.xml?emailaddress=bob@ac.test") in net["site"].requests
    assert "no TLS" in d.candidates[1].steps[2].detail


def test_plain_text_is_never_chosen_unless_allowed(net, dovecot_src):
    """A stripped STARTTLS fails; the autoconfig's plain entry answers but is not chosen."""
    from mailtrek.devtools.hostile_imap import HostileImap
    from mailtrek.orchestrate.discovery import DiscoveryFailedError, choose_source

    with HostileImap("no-starttls") as mitm:
        net["site"].documents["autoconfig.ac.test", "/mail/config-v1.1.xml"] = autoconfig_xml(
            ("localhost", mitm.port, "STARTTLS"), ("localhost", dovecot_src.port, "plain"))
        d = discover("pat@ac.test", config(net))
        allowed = discover("pat@ac.test", config(net, allow_plain=True))
    assert d.best is None
    by_security = {c.security: c for c in d.candidates}
    starttls, plain = by_security["starttls"], by_security["none"]
    assert not starttls.ok and "no STARTTLS" in starttls.steps[-1].detail
    assert plain.ok and plain.security == "none"
    with pytest.raises(DiscoveryFailedError, match="not used unless you pass --allow-plain"):
        choose_source([d])
    assert allowed.best is not None and allowed.best.port == dovecot_src.port


def test_well_known_and_isp_database_when_autoconfig_host_is_missing(net, dovecot_src):
    net["site"].documents["ispdb.test", "/v1.1/isp.test"] = autoconfig_xml(
        ("localhost", dovecot_src.ssl_port, "SSL"), username="%EMAILLOCALPART%")
    d = discover("carol@isp.test", config(net))
    assert d.best is not None and d.best.sources == [f"ISP database https://ispdb.test:{net['port']}/v1.1/isp.test"]
    assert d.best.username == "carol"
    assert any("autoconfig.isp.test" in n and "does not resolve" in n for n in d.notes)
    net["site"].documents["wk.test", "/.well-known/autoconfig/mail/config-v1.1.xml"] = autoconfig_xml(
        ("localhost", dovecot_src.ssl_port, "SSL"))
    d = discover("dan@wk.test", config(net))
    assert d.best is not None and "well-known" in d.best.sources[0]


def test_bad_certificate_reported_not_accepted(net, dovecot_src):
    z = net["zone"]
    z.set("_imaps._tcp.badcert.test", "SRV", [SRV(0, 1, dovecot_src.ssl_port, "imapserver.badcert.test.")])
    z.set("imapserver.badcert.test", "A", [A("127.0.0.1")])
    d = discover("eve@badcert.test", config(net))
    assert d.best is None
    (c,) = [c for c in d.candidates if c.host == "imapserver.badcert.test"]
    assert c.certificate_rejected and not c.ok
    assert "certificate not trusted for imapserver.badcert.test" in c.steps[-1].detail
    # Without our CA the certificate is not trusted either: the system roots do not know it.
    d = discover("eve@srv.test", DiscoveryConfig(nameserver=net["ns"], ispdb_url=f"https://ispdb.test:{net['port']}/",
                                                 https_port=net["port"], timeout=3.0))
    assert d.best is None and d.candidates[0].certificate_rejected


def test_web_server_with_untrusted_certificate_is_ignored(net, dovecot_src):
    net["site"].documents["autoconfig.badweb.test", "/mail/config-v1.1.xml"] = autoconfig_xml(
        ("localhost", dovecot_src.ssl_port, "SSL"))
    d = discover("f@badweb.test", config(net))  # the web certificate does not name autoconfig.badweb.test
    assert not any(c.port == dovecot_src.ssl_port for c in d.candidates)
    assert any("autoconfig.badweb.test" in n and "certificate" in n for n in d.notes)


def test_mx_matches_a_preset_and_guesses_close_the_chain(net):
    z = net["zone"]
    z.set("gw.test", "MX", [MX("aspmx.l.google.com.", 1), MX("alt1.aspmx.l.google.com.", 5)])
    d = discover("g@gw.test", config(net))
    (c,) = d.candidates
    assert (c.host, c.port, c.security, c.preset) == ("imap.gmail.com", 993, "ssl", "google-workspace")
    assert c.sources == ["MX aspmx.l.google.com -> preset google-workspace",
                         "MX alt1.aspmx.l.google.com -> preset google-workspace"]
    # imap.gmail.com is not in our zone: the probe stops at DNS, nothing leaves loopback.
    assert c.steps[0].name == "dns" and not c.steps[0].ok and d.best is None
    z.set("imap.guess.test", "A", [A("127.0.0.1")])
    d = discover("h@guess.test", config(net))
    assert {(c.host, c.port, c.security) for c in d.candidates} == {
        ("imap.guess.test", 993, "ssl"), ("imap.guess.test", 143, "starttls")}
    assert all(c.sources == ["guess imap.guess.test"] for c in d.candidates)
    for source in ("SRV _imaps._tcp.guess.test", "SRV _imap._tcp.guess.test", "ISP database", "MX guess.test",
                   "guess mail.guess.test"):
        assert any(n.startswith(source) and "nothing" in n for n in d.notes), (source, d.notes)


def test_no_probe_lists_candidates_without_connecting(net, dovecot_src):
    d = discover("alice@srv.test", config(net, probe=False))
    assert len(d.candidates) == 2 and all(not c.probed and not c.steps for c in d.candidates)
    assert d.candidates[0].security == "ssl" and d.best is None


def test_parse_autoconfig_rejects_bad_documents():
    with pytest.raises(ValueError):
        parse_autoconfig(b"<!DOCTYPE x [<!ENTITY a 'b'>]><clientConfig/>", "a@b.test")
    with pytest.raises(ValueError):
        parse_autoconfig(b"<html>", "a@b.test")
    with pytest.raises(ValueError):
        parse_autoconfig(b"<other/>", "a@b.test")
    doc = autoconfig_xml(("bad host!", 993, "SSL"), ("ok.%EMAILDOMAIN%", 70000, "SSL"), ("ok.%EMAILDOMAIN%", 993, "weird"),
                         ("imap.%EMAILDOMAIN%", 993, "SSL"))
    assert parse_autoconfig(doc, "x@b.test") == [("imap.b.test", 993, "ssl", "x@b.test")]
    assert preset_for_mx("mx1.mail.icloud.com.") == "icloud" and preset_for_mx("notgoogle.com") is None


def mailtrek(home, *args, env=None):
    """Run the CLI in this process (a subprocess costs a second of start-up per call).

    Returns what ``subprocess.run`` would: ``returncode``, ``stdout`` and ``stderr`` apart.
    """
    from typer.testing import CliRunner

    from mailtrek.cli.main import app

    r = CliRunner().invoke(app, list(args), env={"MAILTREK_HOME": str(home), **(env or {})})
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        raise r.exception
    return subprocess.CompletedProcess(["mailtrek", *args], r.exit_code, r.stdout, r.stderr)


def test_cli_discover_prints_command_and_saves(net, dovecot_src, tmp_path):
    home = tmp_path / "home"
    z = net["zone"]
    z.set("_imaps._tcp.srv.test", "SRV", [SRV(0, 1, dovecot_src.ssl_port, "localhost.")])
    z.set("_imaps._tcp.badcert.test", "SRV", [SRV(0, 1, dovecot_src.ssl_port, "imapserver.badcert.test.")])
    z.set("imapserver.badcert.test", "A", [A("127.0.0.1")])
    common = ["--nameserver", net["ns"], "--ca-file", net["bundle"], "--https-port", str(net["port"]),
              "--ispdb-url", f"https://ispdb.test:{net['port']}/v1.1/"]
    p = mailtrek(home, "endpoint", "discover", "alice@srv.test", *common)
    assert p.returncode == 0, p.stderr
    assert f"mailtrek endpoint add srv-test --host localhost --port {dovecot_src.ssl_port} --security ssl" in p.stdout
    p = mailtrek(home, "endpoint", "discover", "alice@srv.test", *common, "--save", "found", "--json")
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert doc["best"]["port"] == dovecot_src.ssl_port and doc["saved"] == "found"
    shown = json.loads(mailtrek(home, "endpoint", "show", "found").stdout)
    assert (shown["host"], shown["port"], shown["security"]) == ("localhost", dovecot_src.ssl_port, "ssl")
    p = mailtrek(home, "endpoint", "discover", "nobody@nothing.test", *common)
    assert p.returncode == 4 and "no candidate IMAP server found for nothing.test" in p.stderr
    p = mailtrek(home, "endpoint", "discover", "eve@badcert.test", *common, "--save", "bad")
    assert p.returncode == 4 and "no working IMAP server found" in p.stderr
    assert "CERTIFICATE REJECTED" in p.stdout
    assert mailtrek(home, "endpoint", "show", "bad").returncode != 0
    p = mailtrek(home, "endpoint", "discover", "not-an-address", *common)
    assert p.returncode == 2


def test_every_address_is_tried_for_documents_and_servers(net, dovecot_src, tmp_path):
    z = net["zone"]
    # The first address of each host has nobody listening (everything here is on 127.0.0.1).
    z.set("autoconfig.multi.test", "A", [A("127.0.0.2"), A("127.0.0.1")])
    z.set("imapserver.multi.test", "A", [A("127.0.0.2"), A("127.0.0.1")])
    z.set("localhost2.multi.test", "A", [A("127.0.0.2"), A("127.0.0.3")])
    net["site"].documents["autoconfig.multi.test", "/mail/config-v1.1.xml"] = autoconfig_xml(
        ("localhost", dovecot_src.ssl_port, "SSL"), ("localhost2.multi.test", 993, "SSL"))
    z.set("_imaps._tcp.multi.test", "SRV", [SRV(0, 1, dovecot_src.ssl_port, "imapserver.multi.test.")])
    d = discover("m@multi.test", config(net))
    assert any(n.startswith("autoconfig") and f"localhost:{dovecot_src.ssl_port}" in n for n in d.notes), d.notes
    best = d.best
    assert best is not None and best.host == "localhost" and best.kinds == {"autoconfig"}
    # The SRV host answers on its second address, but its certificate does not name it.
    (srv_c,) = [c for c in d.candidates if c.host == "imapserver.multi.test"]
    assert srv_c.certificate_rejected and srv_c.steps[1].ok
    assert srv_c.notes == [f"cannot connect to 127.0.0.2:{dovecot_src.ssl_port}: Connection refused"]
    (dead,) = [c for c in d.candidates if c.host == "localhost2.multi.test"]
    assert not dead.ok and len(dead.notes) == 2 and "127.0.0.3:993" in dead.steps[1].detail
    home = tmp_path / "home"
    common = ["--nameserver", net["ns"], "--ca-file", net["bundle"], "--https-port", str(net["port"]),
              "--ispdb-url", f"https://ispdb.test:{net['port']}/v1.1/"]
    z.set("localhost", "A", [A("127.0.0.2"), A("127.0.0.1")])
    try:
        p = mailtrek(home, "endpoint", "discover", "m@multi.test", *common)
    finally:
        z.set("localhost", "A", [A("127.0.0.1")])
    assert p.returncode == 0, p.stderr
    assert f"note: cannot connect to 127.0.0.2:{dovecot_src.ssl_port}" in p.stdout
