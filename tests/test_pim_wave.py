"""Contacts and calendars in a migration wave: per-user items, the PIM phase after mail,
counts in `batch show`, re-runs that add nothing, and the Microsoft 365 refusal.

Real servers only: Dovecot (mail, source and destination) and the suite's Radicale
(contacts and calendars, one account per side), driven by the real scheduler.
"""

from __future__ import annotations

import asyncio
import os
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from mailtrek.devtools.dav_load import Loader
from mailtrek.orchestrate.batches import BatchOptions, create_batch, start_batch, user_rows
from mailtrek.orchestrate.csvfile import parse_users_csv
from mailtrek.orchestrate.endpoints import Tenant, add_endpoint, add_tenant, make_endpoint
from mailtrek.orchestrate.home import open_home, utcnow
from mailtrek.orchestrate.notify import Notifier
from mailtrek.orchestrate.pim_phase import pim_summary
from mailtrek.orchestrate.reports import batch_document
from mailtrek.orchestrate.runner import Runner
from mailtrek.state.orchestration import batch_users
from pim_helpers import vcalendar, vcard, vevent

pytestmark = pytest.mark.timeout(120)
DOMAIN = "contoso.test"


def fill_dav(radicale, user: str, password: str, tmp_path, events: int, cards: int) -> None:
    files = tmp_path / f"src-{user}"
    files.mkdir()
    for i in range(events):
        (files / f"e{i}.ics").write_bytes(vcalendar(vevent(
            f"ev-{i}@{user}", f"Meeting {i} ü", f":2024030{i + 1}T090000Z", f":2024030{i + 1}T100000Z")))
    for i in range(cards):
        (files / f"c{i}.vcf").write_bytes(vcard(f"card-{i}@{user}", f"Person {i}", f"p{i}@example.test"))
    with Loader(radicale.base_url, user, password, verify=radicale.ssl_context()) as load:
        load.load(load.make_collection("Work", "calendar"), sorted(files.glob("*.ics")), "calendar")
        load.load(load.make_collection("People", "contacts"), sorted(files.glob("*.vcf")), "contacts")


async def run(home) -> None:
    r = Runner(home, notifier=Notifier(None), lease_seconds=5.0, poll_seconds=0.05)
    r.retry_delay = 0.01
    await r.run(until_idle=True)


def users_by_name(home, batch: str) -> dict[str, dict]:
    return {u["email"].split("@")[0]: u for u in user_rows(home, batch)}


def test_batch_moves_mail_then_contacts_and_calendars_once(tmp_path, radicale, dovecot_src, dovecot_dst):
    tag = os.urandom(3).hex()
    both, only = f"pw{tag}a", f"pw{tag}b"
    pw = {both: f"Pw-{both}", only: f"Pw-{only}"}
    dovecot_src.add_user(both, pw[both])  # `only` has no mailbox: its mail must not be tried
    dovecot_dst.add_user(f"{both}@{DOMAIN}", pw[both])
    for n in (both, only):
        radicale.add_user(n, pw[n])
        radicale.add_user(f"{n}@{DOMAIN}", pw[n])
    fill_dav(radicale, both, pw[both], tmp_path, events=3, cards=2)
    fill_dav(radicale, only, pw[only], tmp_path, events=2, cards=4)
    bundle = tmp_path / "cas.pem"  # one endpoint CA file trusts both its IMAP and its DAV server
    bundle.write_bytes(dovecot_src.ca_file.read_bytes() + dovecot_dst.ca_file.read_bytes()
                       + radicale.ca_file.read_bytes())
    home = open_home(tmp_path / "home")
    add_endpoint(home, make_endpoint("src", host=dovecot_src.host, port=dovecot_src.ssl_port,
                                     ca_file=str(bundle), dav_url=radicale.base_url + "/"))
    add_endpoint(home, make_endpoint("dst", host=dovecot_dst.host, port=dovecot_dst.ssl_port,
                                     ca_file=str(bundle), dav_url=f"dav+{radicale.base_url}/"))
    users = parse_users_csv((
        "EmailAddress,UserName,Password,Items\n"
        f"{both}@{DOMAIN},{both},{pw[both]},\n"
        f"{only}@{DOMAIN},{only},{pw[only]},contacts\n"
        f"nodav{tag}@{DOMAIN},nodav{tag},Pw-secret-{tag},contacts\n").encode())  # no DAV account
    create_batch(home, "w", endpoint="src", dest_endpoint="dst", users=users,
                 options=BatchOptions(items=["mail", "calendars", "contacts"]))
    start_batch(home, "w")
    asyncio.run(run(home))
    got = users_by_name(home, "w")
    assert got[both]["status"] == "Synced" and got[both]["error"] is None, got[both]
    assert got[only]["status"] == "Synced" and got[only]["error"] is None, got[only]
    nodav = got[f"nodav{tag}"]  # its contacts fail alone, with the reason and no password
    assert nodav["status"] == "Synced" and "contacts/calendars: " in nodav["error"]
    assert "refused the login" in nodav["error"] and f"Pw-secret-{tag}" not in nodav["error"]
    assert nodav["pim"]["error"] and pim_summary(nodav["pim"]) == "error"
    a, b = got[both]["pim"]["by_kind"], got[only]["pim"]["by_kind"]
    assert (a["calendar"]["copied"], a["contacts"]["copied"]) == (3, 2)
    assert list(b) == ["contacts"] and b["contacts"]["copied"] == 4  # calendars not asked for
    assert pim_summary(got[both]["pim"]) == "3 calendar objects, 2 contacts"
    doc = {u["email"].split("@")[0]: u for u in batch_document(home, "w")["users"]}
    assert doc[only]["items"] == ["contacts"] and doc[both]["items"] == ["mail", "calendars", "contacts"]
    assert doc[both]["pim"]["selected"] == 5
    # The next incremental sync copies nothing again.
    with home.engine.begin() as c:
        c.execute(update(batch_users).where(batch_users.c.batch == "w").values(
            next_sync=utcnow() - timedelta(seconds=1)))
    asyncio.run(run(home))
    again = users_by_name(home, "w")[both]["pim"]
    assert (again["copied"], again["skipped"], again["failed"]) == (0, 5, 0)
    shown(home, tmp_path, "w", both, "3 calendar objects, 2 contacts")


def shown(home, tmp_path, batch: str, user: str, summary: str) -> None:
    """`batch show`, the API's status JSON and the dashboard's user table carry the counts."""
    from fastapi.testclient import TestClient
    from typer.testing import CliRunner

    import mailtrek.state.web  # noqa: F401  (web tables)
    from mailtrek.cli.main import app
    from mailtrek.web.app import create_app
    from mailtrek.web.auth import set_admin_password

    out = CliRunner().invoke(app, ["batch", "show", batch, "--home", str(tmp_path / "home")])
    assert out.exit_code == 0 and "contacts/calendars" in out.output and summary in out.output, out.output
    set_admin_password(home, "a long admin password 7")
    with TestClient(create_app(home)) as c:
        r = c.post("/api/login", json={"password": "a long admin password 7"})
        assert r.status_code == 200, r.text
        users = {u["email"].split("@")[0]: u for u in c.get(f"/api/batches/{batch}").json()["users"]}
        assert users[user]["pim_summary"] == summary and users[user]["pim"]["by_kind"]
        page = c.get(f"/batches/{batch}").text
        assert "<th>Contacts/calendars</th>" in page and summary in page
        page = c.get(f"/batches/{batch}/preflight").text  # the pre-flight page counts them too
        assert "<th>Contacts/calendars</th>" in page and "1 calendar(s): 3 objects" in page
        # An endpoint says where its DAV server is (API and dashboard form alike).
        c.headers["X-CSRF-Token"] = r.json()["csrf"]
        ok = c.post("/api/endpoints", json={"name": "nc", "host": "cloud.example.test", "preset": "nextcloud",
                                            "dav_url": "https://cloud.example.test/remote.php/dav"})
        assert ok.status_code == 201, ok.text
        assert c.get("/api/endpoints/nc").json()["dav_url"] == "https://cloud.example.test/remote.php/dav"
        bad = c.post("/api/endpoints", json={"name": "x", "host": "h.test", "dav_url": "https://u@h.test/"})
        assert bad.status_code == 400 and "no user or password" in bad.text
        # The dashboard's new-batch form: mail ticked by default; calendars and contacts chosen.
        assert 'id="items-mail" checked' in c.get("/batches/new").text
        form = {"csrf": r.json()["csrf"], "name": "viaform", "endpoint": "nc", "destination": "endpoint:nc",
                "items": ["calendars", "contacts"]}
        made = c.post("/batches", data=form, follow_redirects=False, files={"csv": (
            "u.csv", b"EmailAddress,UserName,Password\nf@contoso.test,f,pw\n", "text/csv")})
        assert made.status_code == 303, made.text
        assert c.get("/api/batches/viaform").json()["options"]["items"] == ["calendars", "contacts"]


@pytest.fixture(scope="module")
def sim():
    from mailtrek.sim.config import SimConfig
    from mailtrek.sim.server import Simulator

    s = Simulator(SimConfig(users=[]))
    s.start()
    yield s
    s.stop()


def test_contacts_and_calendars_into_microsoft_365_without_mail(tmp_path, radicale, sim):
    user = f"m{os.urandom(3).hex()}"
    pw = f"Pw-{user}"
    radicale.add_user(user, pw)
    fill_dav(radicale, user, pw, tmp_path, events=2, cards=3)
    sim.add_user(f"{user}@{DOMAIN}")
    home = open_home(tmp_path / "home")
    add_endpoint(home, make_endpoint("src", host="127.0.0.1", port=1, ca_file=str(radicale.ca_file),
                                     dav_url=radicale.base_url))
    add_tenant(home, Tenant(name="t", tenant_id=sim.config.tenant_id, client_id="pim-wave",
                            client_secret_enc=home.box.encrypt("Pim-Wave-Secret-7"), authority=sim.authority(),
                            graph_url=f"{sim.base_url}/graph", ca_file=str(sim.ca_file)))
    users = parse_users_csv(f"EmailAddress,UserName,Password\n{user}@{DOMAIN},{user},{pw}\n".encode())
    create_batch(home, "m", endpoint="src", tenant="t", users=users,
                 options=BatchOptions(items=["calendars", "contacts"]))  # no mail: port 1 is never tried
    start_batch(home, "m")
    asyncio.run(run(home))
    u = users_by_name(home, "m")[user]
    assert u["status"] == "Synced" and u["error"] is None, u
    assert (u["pim"]["copied"], u["pim"]["failed"]) == (5, 0), u["pim"]
    assert len(sim.events(f"{user}@{DOMAIN}")) == 2 and len(sim.contacts(f"{user}@{DOMAIN}")) == 3
    assert sim.outbox() == []


def test_preflight_counts_contacts_and_calendars_per_collection(tmp_path, radicale, sim):
    from mailtrek.orchestrate.csvfile import UserRow
    from mailtrek.orchestrate.endpoints import get_endpoint, get_tenant
    from mailtrek.orchestrate.preflight import pim_text, preflight_users, summary_rows

    user = f"p{os.urandom(3).hex()}"
    pw = f"Pw-{user}"
    radicale.add_user(user, pw)
    fill_dav(radicale, user, pw, tmp_path, events=2, cards=3)
    sim.add_user(f"{user}@{DOMAIN}")
    sim.add_user(f"nobody-{user}@{DOMAIN}")
    home = open_home(tmp_path / "home")
    add_endpoint(home, make_endpoint("src", host="127.0.0.1", port=1, ca_file=str(radicale.ca_file),
                                     dav_url=radicale.base_url))
    add_tenant(home, Tenant(name="t", tenant_id=sim.config.tenant_id, client_id="pim-preflight",
                            client_secret_enc=home.box.encrypt("Pim-Preflight-7"), authority=sim.authority(),
                            graph_url=f"{sim.base_url}/graph", ca_file=str(sim.ca_file)))
    rows = [UserRow(2, f"{user}@{DOMAIN}", user, pw, items=("calendars", "contacts")),
            UserRow(3, f"nobody-{user}@{DOMAIN}", user, "wrong", items=("contacts",))]
    report = asyncio.run(preflight_users(home, rows, source=get_endpoint(home, "src"),
                                         tenant=get_tenant(home, "t"),
                                         options=BatchOptions(items=["mail"])))
    good, bad = report.users
    assert good.pim_objects == 5 and pim_text(good) == "1 calendar(s): 2 objects; 1 address book(s): 3 contacts"
    assert sorted((c["kind"], c["objects"]) for c in good.pim) == [("calendar", 2), ("contacts", 3)]
    assert good.messages == 0 and good.can_start  # no mail asked for: port 1 was never dialled
    assert bad.pim_objects is None and [f.kind for f in bad.findings] == ["pim"]
    assert "refused the login" in bad.findings[0].reason and pw not in bad.findings[0].reason
    assert summary_rows(report)[1]["contacts/calendars"] == "not countable"


def test_without_dav_url_or_preset_the_users_domain_is_asked(tmp_path, radicale, monkeypatch):
    """RFC 6764 from the wave: the e-mail domain's SRV records lead to the DAV server."""
    from dnslib import SRV

    from dns_helpers import Zone, start_dns

    zone = Zone()
    server, ns = start_dns(zone)
    try:
        monkeypatch.setenv("MAILTREK_NAMESERVER", ns)
        for service in ("_caldavs._tcp", "_carddavs._tcp"):
            zone.set(f"{service}.srvwave.test", "SRV", [SRV(0, 1, radicale.port, "localhost.")])
        user = f"s{os.urandom(3).hex()}"
        pw = f"Pw-{user}"
        radicale.add_user(user, pw)
        radicale.add_user(f"{user}@srvwave.test", pw)
        fill_dav(radicale, user, pw, tmp_path, events=1, cards=2)
        home = open_home(tmp_path / "home")
        add_endpoint(home, make_endpoint("src", host="127.0.0.1", port=1, ca_file=str(radicale.ca_file)))
        add_endpoint(home, make_endpoint("dst", host="127.0.0.1", port=2, ca_file=str(radicale.ca_file),
                                         dav_url=radicale.base_url))
        users = parse_users_csv(f"EmailAddress,UserName,Password\n{user}@srvwave.test,{user},{pw}\n".encode())
        create_batch(home, "s", endpoint="src", dest_endpoint="dst", users=users,
                     options=BatchOptions(items=["contacts", "calendars"]))
        start_batch(home, "s")
        asyncio.run(run(home))
    finally:
        server.stop()
    u = users_by_name(home, "s")[user]
    assert u["status"] == "Synced" and u["error"] is None, u
    assert (u["pim"]["copied"], u["pim"]["failed"]) == (3, 0), u["pim"]


def test_google_service_account_asks_for_the_dav_scopes_per_user(tmp_path, radicale):
    """A Workspace endpoint logs each user in with a token delegated for Calendar and
    CardDAV (Bearer); Radicale, which takes no tokens, refuses: a finding, not a crash."""
    from mailtrek.orchestrate.csvfile import UserRow
    from mailtrek.orchestrate.endpoints import attach_service_account, get_endpoint
    from mailtrek.orchestrate.preflight import preflight_users
    from mailtrek.stores.dav.presets import GOOGLE_CALENDAR_SCOPE, GOOGLE_CONTACTS_SCOPE
    from test_gmail_auth import TokenEndpoint

    class DavScopes(TokenEndpoint):
        def answer(self, form):
            import jwt

            claims = jwt.decode(form["assertion"][0], self.key.public_key(), algorithms=["RS256"],
                                audience="https://oauth2.googleapis.com/token")
            self.requests.append(claims)
            return 200, {"access_token": "ya29.dav", "expires_in": 600, "token_type": "Bearer"}

    google = DavScopes(tmp_path)
    try:
        bundle = tmp_path / "cas.pem"
        bundle.write_bytes(Path(google.ca_file).read_bytes() + radicale.ca_file.read_bytes())
        home = open_home(tmp_path / "home")
        ep = make_endpoint("ws", host="127.0.0.1", port=1, preset="google-workspace", ca_file=str(bundle),
                           dav_url=radicale.base_url)
        attach_service_account(home, ep, google.info())
        add_endpoint(home, ep)
        report = asyncio.run(preflight_users(
            home, [UserRow(2, f"ann@{DOMAIN}", f"ann@{DOMAIN}", "", items=("calendars",))],
            source=get_endpoint(home, "ws"), options=BatchOptions()))
    finally:
        google.server.shutdown()
        google.server.server_close()
    [claims] = google.requests
    assert claims["sub"] == f"ann@{DOMAIN}"
    assert claims["scope"].split() == [GOOGLE_CALENDAR_SCOPE, GOOGLE_CONTACTS_SCOPE]
    [finding] = report.users[0].findings
    assert finding.kind == "pim" and "refused the login" in finding.reason
