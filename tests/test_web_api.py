"""The dashboard's JSON API and pages through FastAPI's TestClient, over a real home.

Auth (401 without a session, 403 without the CSRF token, rate-limited logins, cookie
flags), then every action the CLI has: endpoints tested against the session's real
Dovecot, a tenant checked against the Microsoft 365 simulator, batches from CSV uploads
through start/stop/resume/complete/delete, reports, cutover. The runner is not started
here (tests/test_web_browser.py runs real syncs); commands only change statuses.
"""

from __future__ import annotations

import json
import threading

import pytest
from dnslib import MX, QTYPE, RR, TXT
from dnslib.server import BaseResolver, DNSLogger, DNSServer
from fastapi.testclient import TestClient

import mailtrek.state.web  # noqa: F401  (web tables before open_home)
from mailtrek.devtools.dovecot import DovecotInstance
from mailtrek.errors import UsageError
from mailtrek.orchestrate.home import open_home
from mailtrek.sim.config import SimConfig
from mailtrek.sim.server import Simulator
from mailtrek.web.app import create_app
from mailtrek.web.auth import set_admin_password

ADMIN_PW = "correct horse battery"
DOMAIN = "contoso.test"
SECRET = "Tenant-Secret-9f8e7d"


@pytest.fixture(scope="module")
def sim():
    s = Simulator(SimConfig(users=[]))
    s.start()
    yield s
    s.stop()


class Zone(BaseResolver):
    """A tiny mutable DNS zone served on loopback (as tests/test_cutover.py does)."""

    def __init__(self) -> None:
        self.records: dict[tuple[str, str], list] = {}
        self.lock = threading.Lock()

    def resolve(self, request, handler):
        reply = request.reply()
        name = str(request.q.qname).rstrip(".").lower()
        with self.lock:
            for rdata in self.records.get((name, QTYPE[request.q.qtype]), []):
                reply.add_answer(RR(request.q.qname, request.q.qtype, rdata=rdata, ttl=60))
        return reply


@pytest.fixture(scope="module")
def dns():
    zone = Zone()
    zone.records[DOMAIN, "MX"] = [MX("mail.oldhost.test", 10)]
    zone.records[DOMAIN, "TXT"] = [TXT("v=spf1 mx -all")]
    zone.records["moved.test", "MX"] = [MX("moved-test.mail.protection.outlook.com", 0)]
    server = DNSServer(zone, address="127.0.0.1", port=0,
                       logger=DNSLogger(log="-request,-reply,-truncated,-error,-recv,-send,-data", prefix=False))
    server.start_thread()
    yield f"127.0.0.1:{server.server.server_address[1]}"
    server.stop()


@pytest.fixture
def home(tmp_path):
    h = open_home(tmp_path / "home")
    set_admin_password(h, ADMIN_PW)
    return h


@pytest.fixture
def client(home):
    with TestClient(create_app(home, login_attempts=3, login_window=60)) as c:
        yield c


def login(c: TestClient) -> str:
    r = c.post("/api/login", json={"password": ADMIN_PW})
    assert r.status_code == 200, r.text
    csrf = r.json()["csrf"]
    c.headers["X-CSRF-Token"] = csrf
    return csrf


def add_src(c: TestClient, dov: DovecotInstance, name: str = "src") -> None:
    r = c.post("/api/endpoints", json={"name": name, "host": dov.host, "port": dov.ssl_port,
                                       "security": "ssl", "ca_file": str(dov.ca_file), "preset": "dovecot"})
    assert r.status_code == 201, r.text


def add_dst(c: TestClient, dov: DovecotInstance) -> None:
    assert c.post("/api/endpoints", json={"name": "dst", "host": dov.host, "port": dov.ssl_port,
                                          "ca_file": str(dov.ca_file)}).status_code == 201


def csv_bytes(rows: list[tuple[str, str, str]]) -> bytes:
    return ("EmailAddress,UserName,Password\n" + "".join(f"{e},{u},{p}\n" for e, u, p in rows)).encode()


def create(c: TestClient, name: str, data: bytes, **fields: str):
    form = {"name": name, "endpoint": "src", "dest_endpoint": "dst", **fields}
    return c.post("/api/batches", data=form, files={"csv": ("users.csv", data, "text/csv")})


# -- auth ----------------------------------------------------------------------------------
API_READS = ["/openapi.json", "/api/endpoints", "/api/endpoints/x", "/api/endpoint-presets", "/api/tenants", "/api/tenants/x",
             "/api/batches", "/api/batches/x", "/api/batches/x/report?format=csv", "/api/session"]
API_WRITES = [("post", "/api/endpoints"), ("delete", "/api/endpoints/x"), ("post", "/api/endpoints/x/test"),
              ("post", "/api/tenants"), ("delete", "/api/tenants/x"), ("post", "/api/tenants/x/test"),
              ("post", "/api/batches"), ("post", "/api/batches/x/start"), ("post", "/api/batches/x/stop"),
              ("post", "/api/batches/x/resume"), ("post", "/api/batches/x/complete"),
              ("delete", "/api/batches/x"), ("post", "/api/cutover/check"), ("post", "/api/logout")]
PAGES = ["/", "/docs", "/batches", "/batches/new", "/batches/x", "/batches/x/live", "/batches/x/users/a@b.c",
         "/batches/x/confirm/stop", "/batches/x/report.csv", "/endpoints", "/cutover", "/confirm/endpoints/x/remove"]
PAGE_POSTS = ["/endpoints", "/endpoints/x/test", "/endpoints/x/remove", "/tenants", "/tenants/x/test",
              "/tenants/x/remove", "/batches", "/batches/x/start", "/batches/x/stop", "/batches/x/resume",
              "/batches/x/complete", "/batches/x/delete", "/cutover", "/logout"]


def test_everything_needs_a_session(client):
    for url in API_READS:
        assert client.get(url).status_code == 401, url
    for method, url in API_WRITES:
        assert client.request(method, url, json={}).status_code == 401, url
    for url in PAGES:
        r = client.get(url, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/login", url
    for url in PAGE_POSTS:
        r = client.post(url, data={"csrf": "x"}, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/login", url
    assert client.get("/login").status_code == 200
    assert client.get("/static/app.css").status_code == 200


def test_openapi_mirrors_the_cli(client):
    login(client)
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/api/endpoints", "/api/endpoints/{name}/test", "/api/tenants", "/api/tenants/{name}/test",
                 "/api/batches", "/api/batches/{name}", "/api/batches/{name}/{action}",
                 "/api/batches/{name}/complete", "/api/batches/{name}/report", "/api/cutover/check"):
        assert path in paths, path
    assert not any(p.startswith("/batches") for p in paths)  # pages are not part of the API
    r = client.get("/docs")
    assert r.status_code == 200 and "/openapi.json" in r.text


def test_mutations_need_the_csrf_token(client):
    csrf = login(client)
    del client.headers["X-CSRF-Token"]
    for method, url in API_WRITES:
        assert client.request(method, url, json={}).status_code == 403, url
        r = client.request(method, url, json={}, headers={"X-CSRF-Token": csrf[:-2] + "xx"})
        assert r.status_code == 403, url
    for url in PAGE_POSTS:
        assert client.post(url, data={"csrf": "wrong"}, follow_redirects=False).status_code == 403, url
        assert client.post(url, data={}, follow_redirects=False).status_code == 403, url
    # The token works as a header (API) and as a form field (pages).
    assert client.post("/api/batches/x/start", headers={"X-CSRF-Token": csrf}).status_code == 404
    r = client.post("/batches/x/start", data={"csrf": csrf}, follow_redirects=False)
    assert r.status_code == 404 and "no batch named" in r.text


def test_login_cookie_flags_logout_and_rate_limit(home):
    app = create_app(home, login_attempts=3, login_window=60)
    with TestClient(app) as c:
        r = c.post("/api/login", json={"password": ADMIN_PW})
        cookie = r.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=lax" in cookie and "secure" not in cookie
        assert c.get("/api/batches").status_code == 200
        csrf = r.json()["csrf"]
        assert c.post("/api/logout", headers={"X-CSRF-Token": csrf}).status_code == 200
        c.cookies.clear()
        assert c.get("/api/batches").status_code == 401
        for _ in range(3):
            assert c.post("/api/login", json={"password": "not the password"}).status_code == 401
        r = c.post("/api/login", json={"password": ADMIN_PW})  # right, but too late
        assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
    with TestClient(app, base_url="https://testserver") as c:
        r = c.post("/api/login", json={"password": ADMIN_PW}, headers={"X-Forwarded-For": "ignored"})
        # TestClient's client address is the same, so still limited: the limit is per client.
        assert r.status_code == 429
    with TestClient(create_app(home), base_url="https://testserver") as c:
        r = c.post("/api/login", json={"password": ADMIN_PW})
        assert r.status_code == 200 and "secure" in r.headers["set-cookie"].lower()
        assert c.get("/api/batches").status_code == 200


def test_session_ends_when_the_password_changes(client, home):
    login(client)
    assert client.get("/api/batches").status_code == 200
    set_admin_password(home, "another long password")
    assert client.get("/api/batches").status_code == 401
    with pytest.raises(UsageError):
        set_admin_password(home, "short")


def test_login_page_form_token_and_errors(client):
    r = client.get("/login")
    token = r.text.split('name="login_token" value="')[1].split('"')[0]
    assert client.post("/login", data={"password": ADMIN_PW, "login_token": "forged"},
                       follow_redirects=False).status_code == 403
    r = client.post("/login", data={"password": "wrong one", "login_token": token}, follow_redirects=False)
    assert r.status_code == 401 and "Wrong password" in r.text
    token = r.text.split('name="login_token" value="')[1].split('"')[0]
    r = client.post("/login", data={"password": ADMIN_PW, "login_token": token}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/batches"
    r = client.get("/batches")
    assert r.status_code == 200 and "No batches yet" in r.text
    assert "default-src 'self'" in r.headers["content-security-policy"]
    assert r.headers["x-frame-options"] == "DENY"


# -- endpoints and tenants -------------------------------------------------------------------
def test_endpoint_add_test_remove(client, dovecot_src, src_user):
    user, password = src_user
    login(client)
    add_src(client, dovecot_src)
    assert client.post("/api/endpoints", json={"name": "src", "host": "x"}).status_code == 409
    r = client.post("/api/endpoints", json={"name": "bad name", "host": "x"})
    assert r.status_code == 400 and "invalid endpoint name" in r.json()["detail"]
    assert client.post("/api/endpoints", json={"name": "e2", "host": "x", "ca_file": "/nonexistent"}).status_code == 400
    assert [e["name"] for e in client.get("/api/endpoints").json()] == ["src"]
    assert client.get("/api/endpoints/src").json()["port"] == dovecot_src.ssl_port
    assert client.get("/api/endpoints/nope").status_code == 404

    r = client.post("/api/endpoints/src/test", json={"user": user, "password": password})
    assert r.status_code == 200
    res = r.json()
    assert res["ok"] and [s["name"] for s in res["steps"]] == ["dns", "tcp", "tls", "capabilities", "login"]
    r = client.post("/api/endpoints/src/test", json={"user": user, "password": "Wrong-" + password})
    assert r.json()["ok"] is False and r.json()["failed_step"] == "login"
    assert password not in r.text

    # An endpoint on a closed port fails at the tcp step with advice.
    client.post("/api/endpoints", json={"name": "closed", "host": "127.0.0.1", "port": 9})
    res = client.post("/api/endpoints/closed/test", json={}).json()
    assert res["failed_step"] == "tcp" and res["steps"][-1]["advice"]

    # The page shows the same steps.
    csrf = client.headers["X-CSRF-Token"]
    r = client.post("/endpoints/src/test", data={"csrf": csrf, "user": user, "password": password})
    assert r.status_code == 200 and "All checks passed" in r.text and "logged in as" in r.text
    assert password not in r.text
    assert client.delete("/api/endpoints/closed").status_code == 200
    assert [e["name"] for e in client.get("/api/endpoints").json()] == ["src"]


def test_endpoint_page_form(client, dovecot_src):
    csrf = login(client)
    r = client.post("/endpoints", data={"csrf": csrf, "name": "p1", "host": "", "port": "x"})
    assert r.status_code == 400 and "Port must be a whole number" in r.text
    r = client.post("/endpoints", data={"csrf": csrf, "name": "p1", "host": dovecot_src.host,
                                        "port": str(dovecot_src.ssl_port), "ca_file": str(dovecot_src.ca_file),
                                        "admin_user": "root", "admin_password": "Admin-Pw-123"},
                    follow_redirects=False)
    assert r.status_code == 303
    page = client.get("/endpoints").text
    assert "p1" in page and "Admin-Pw-123" not in page
    assert client.get("/api/endpoints/p1").json()["admin_password"] == "stored"
    r = client.get("/confirm/endpoints/p1/remove")
    assert "Remove endpoint p1?" in r.text
    assert client.post("/endpoints/p1/remove", data={"csrf": csrf}, follow_redirects=False).status_code == 303
    assert client.get("/api/endpoints/p1").status_code == 404


def test_tenant_add_test_remove(client, sim, tmp_path):
    csrf = login(client)
    body = {"name": "t", "tenant_id": sim.config.tenant_id, "client_id": "mailtrek-web",
            "client_secret": SECRET, "authority": sim.authority(), "graph_url": f"{sim.base_url}/graph",
            "ca_file": str(sim.ca_file)}
    r = client.post("/api/tenants", json=body)
    assert r.status_code == 201, r.text
    assert r.json()["client_secret"] == "stored" and SECRET not in r.text
    assert client.post("/api/tenants/t/test").json() == {"tenant": "t", "ok": True, "detail": "token acquired"}
    # A tenant whose identity endpoint is unreachable fails the token check and is not stored.
    bad = dict(body, name="t2", authority="https://127.0.0.1:9/x")
    r = client.post("/api/tenants", json=bad)
    assert r.status_code >= 400 and SECRET not in r.text
    assert [t["name"] for t in client.get("/api/tenants").json()] == ["t"]
    r = client.post("/tenants/t/test", data={"csrf": csrf})
    assert "token acquired" in r.text
    assert SECRET not in client.get("/endpoints").text
    assert client.delete("/api/tenants/t").status_code == 200
    assert client.get("/api/tenants").json() == []


# -- batches -------------------------------------------------------------------------------
def test_batch_lifecycle_and_reports(client, dovecot_src, dovecot_dst):
    login(client)
    add_src(client, dovecot_src)
    add_dst(client, dovecot_dst)
    pw = "Csv-Secret-Pw-1"
    bad = csv_bytes([(f"a@{DOMAIN}", "a", pw), ("not-an-address", "b", pw + "b"), (f"c@{DOMAIN}", "c", "")])
    r = create(client, "b1", bad)
    assert r.status_code == 422
    problems = r.json()["problems"]
    assert [p["line"] for p in problems] == [3, 4]
    assert "not an e-mail address" in problems[0]["reason"] and "Password is empty" in problems[1]["reason"]
    assert pw not in r.text
    assert client.get("/api/batches").json() == []  # nothing stored

    good = csv_bytes([(f"a@{DOMAIN}", "a", pw), (f"b@{DOMAIN}", "b", pw + "b")])
    r = create(client, "b1", good, max_size="10M", since="2020-01-01", exclude_folder="Junk")
    assert r.status_code == 201 and r.json() == {"name": "b1", "status": "Created", "users": 2}
    assert create(client, "b1", good).status_code == 409  # name taken (and users busy)
    assert create(client, "b2", good, max_size="lots").status_code == 400

    listed = client.get("/api/batches").json()
    assert listed[0]["name"] == "b1" and listed[0]["by_status"] == {"Queued": 2} and listed[0]["users"] == 2
    doc = client.get("/api/batches/b1").json()
    assert doc["options"]["max_size"] == 10 << 20 and doc["options"]["exclude"] == ["Junk"]
    assert [u["email"] for u in doc["users"]] == [f"a@{DOMAIN}", f"b@{DOMAIN}"]
    assert {"percent", "speed", "eta_seconds", "total_items"} <= set(doc["users"][0])

    assert client.post("/api/batches/b1/resume").json()["status"] == "Syncing"  # Created: resume = start
    assert client.post("/api/batches/b1/start").json()["status"] == "Syncing"  # idempotent
    assert client.post("/api/batches/b1/stop").json()["status"] == "Stopped"
    assert {u["status"] for u in client.get("/api/batches/b1").json()["users"]} == {"Stopped"}
    r = client.post("/api/batches/b1/complete", json={"force": True})
    assert r.status_code == 409 and "cannot complete a batch that is Stopped" in r.json()["detail"]
    assert client.post("/api/batches/b1/resume").json()["status"] == "Syncing"
    assert client.post("/api/batches/b1/bogus").status_code == 422

    # Complete: refused without force (IMAP destination, no expected MX), done with it.
    r = client.post("/api/batches/b1/complete", json={})
    assert r.status_code == 409 or r.status_code == 400
    assert "cannot complete" in r.json()["detail"] or "cutover" in r.json()["detail"]

    for fmt, ctype, needle in (("csv", "text/csv", "email,status"), ("json", "application/json", '"users"'),
                               ("html", "text/html", "<table>"), ("skipped-csv", "text/csv", "folder")):
        r = client.get(f"/api/batches/b1/report?format={fmt}")
        assert r.status_code == 200 and r.headers["content-type"].startswith(ctype), fmt
        assert "attachment" in r.headers["content-disposition"] and needle in r.text, fmt
        assert pw not in r.text
        page = client.get(f"/batches/b1/report.{fmt}")
        assert page.status_code == 200 and page.text == r.text
    assert json.loads(client.get("/api/batches/b1/report?format=json").text)["name"] == "b1"
    assert client.get("/api/batches/b1/report?format=pdf").status_code == 422

    # The pages: batch, live part, a user, confirmations. No password anywhere.
    texts = [client.get(u).text for u in ("/batches", "/batches/b1", "/batches/b1/live",
                                           f"/batches/b1/users/a@{DOMAIN}", "/batches/b1/confirm/delete")]
    assert f"a@{DOMAIN}" in texts[1] and 'data-live="/batches/b1/live"' in texts[1]
    assert "<table" in texts[2] and "<html" not in texts[2]
    assert "Skipped items" in texts[3] and "Delete batch b1?" in texts[4]
    assert all(pw not in t for t in texts)
    assert client.get("/batches/b1/users/zz@x.test").status_code == 404

    r = client.delete("/api/batches/b1")
    assert r.json() == {"name": "b1", "users_removed": 2}
    assert client.get("/api/batches/b1").status_code == 404
    assert client.get("/api/batches").json() == []


def test_complete_with_force_and_page_actions(client, dovecot_src, dovecot_dst, home, dns):
    from sqlalchemy import update

    from mailtrek.state.orchestration import batch_users, batches

    csrf = login(client)
    add_src(client, dovecot_src)
    add_dst(client, dovecot_dst)
    assert create(client, "b3", csv_bytes([(f"x@{DOMAIN}", "x", "Pw-x-1234")]), autostart="true").status_code == 201
    # Pretend the runner synced the user (the browser test does it for real).
    with home.engine.begin() as c:
        c.execute(update(batch_users).values(status="Synced", ever_synced=True, items_synced=7, bytes=2048))
        c.execute(update(batches).values(status="Synced"))
    r = client.post("/api/batches/b3/complete", json={"expect_mx": ["mx.example.test"], "nameserver": dns})
    assert r.status_code == 400 and "mail.oldhost.test" in r.json()["detail"]
    assert client.get("/api/batches/b3").json()["status"] == "Synced"
    r = client.post("/api/batches/b3/complete", json={"force": True, "expect_mx": ["mx.example.test"],
                                                      "nameserver": dns})
    assert r.status_code == 200 and r.json()["status"] == "Completing" and r.json()["warnings"]
    live = client.get("/batches/b3/live").text
    assert "Completing" in live and "action-stop" in live and "action-complete" not in live

    # Page actions go through a confirmation page, then redirect back with a notice.
    r = client.get("/batches/b3/confirm/stop")
    assert 'action="/batches/b3/stop"' in r.text and f'value="{csrf}"' in r.text
    r = client.post("/batches/b3/stop", data={"csrf": csrf}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/batches/b3?done=stop"
    assert "Done: stop" in client.get(r.headers["location"]).text
    r = client.post("/batches/b3/complete", data={"csrf": csrf, "force": "true"})
    assert r.status_code == 409 and "cannot complete a batch that is Stopped" in r.text
    r = client.post("/batches/b3/delete", data={"csrf": csrf}, follow_redirects=False)
    assert r.headers["location"] == "/batches?deleted=b3"


def test_upload_page_shows_problems_per_line(client, dovecot_src, dovecot_dst):
    csrf = login(client)
    add_src(client, dovecot_src)
    add_dst(client, dovecot_dst)
    pw = "Page-Csv-Pw-77"
    bad = csv_bytes([(f"a@{DOMAIN}", "a", pw), (f"a@{DOMAIN}", "a2", pw)])
    form = {"csrf": csrf, "name": "pb", "endpoint": "src", "destination": "endpoint:dst"}
    r = client.post("/batches", data=form, files={"csv": ("u.csv", bad, "text/csv")})
    assert r.status_code == 422
    assert "duplicate EmailAddress" in r.text and '<td class="num">3</td>' in r.text and pw not in r.text
    good = csv_bytes([(f"a@{DOMAIN}", "a", pw)])
    r = client.post("/batches", data=form, files={"csv": ("u.csv", good, "text/csv")}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/batches/pb"
    r = client.post("/batches", data=dict(form, name="pb2", destination="tenant:none"),
                    files={"csv": ("u.csv", csv_bytes([(f"z@{DOMAIN}", "z", pw)]), "text/csv")})
    assert r.status_code == 400 and "no tenant named" in r.text


def test_cutover_check(client, dns):
    csrf = login(client)
    r = client.post("/api/cutover/check", json={"domain": DOMAIN, "nameserver": dns})
    assert r.status_code == 200
    d = r.json()
    assert d["domain"] == DOMAIN and d["switched"] is False and d["mx"] == [{"preference": 10, "host": "mail.oldhost.test"}]
    assert d["spf"] == ["v=spf1 mx -all"]
    r = client.post("/cutover", data={"csrf": csrf, "domain": "moved.test", "nameserver": dns})
    assert r.status_code == 200 and "switched</span>" in r.text and "not switched" not in r.text
    assert "moved-test.mail.protection.outlook.com" in r.text
    r = client.post("/cutover", data={"csrf": csrf, "domain": " "})
    assert r.status_code == 400 and "give a domain" in r.text


def test_batch_page_pages_filters_and_sorts_230_users(client, dovecot_src, dovecot_dst):
    """The dashboard at 200+ users: 50 a page, a filter, and a live part that keeps the view."""
    login(client)
    add_src(client, dovecot_src)
    add_dst(client, dovecot_dst)
    rows = [(f"u{i:03d}@{DOMAIN}", f"u{i:03d}", f"Pw-{i}") for i in range(230)]
    assert create(client, "big", csv_bytes(rows)).status_code == 201, "batch not created"
    page1 = client.get("/batches/big").text
    assert page1.count('<tr data-email="') == 50 and f"u000@{DOMAIN}" in page1 and f"u050@{DOMAIN}" not in page1
    assert "230 of 230 users, page 1 of 5" in page1 and 'id="page-next"' in page1
    last = client.get("/batches/big?page=5&sort=-email").text
    assert last.count('<tr data-email="') == 30 and f"u000@{DOMAIN}" in last and f"u229@{DOMAIN}" not in last
    found = client.get("/batches/big?q=u12").text
    assert found.count('<tr data-email="') == 10 and "10 of 230 users" in found
    assert 'data-live="/batches/big/live?q=u12"' in found  # the refresh keeps the filter
    live = client.get("/batches/big/live?q=u12").text
    assert live.count('<tr data-email="') == 10
    none = client.get("/batches/big?status=Failed").text
    assert '<tr data-email="' not in none and "0 of 230 users" in none


def test_batch_create_discovers_the_source_and_sets_gmail_labels(client, dovecot_src, dovecot_dst):
    """As `batch create --discover --gmail-labels`: the API and the New batch form do it too."""
    from urllib.parse import unquote

    from dnslib import SRV, A

    from dns_helpers import Zone as SrvZone
    from dns_helpers import start_dns

    zone = SrvZone()
    server, ns = start_dns(zone)
    try:
        zone.set("localhost", "A", [A("127.0.0.1")])
        zone.set("_imaps._tcp.web-disc.test", "SRV", [SRV(0, 1, dovecot_src.ssl_port, "localhost.")])
        csrf = login(client)
        add_dst(client, dovecot_dst)
        pw = "Disc-Web-Pw-31"
        users = csv_bytes([("a@web-disc.test", "a", pw)])
        disc = {"discover": "true", "nameserver": ns, "ca_file": str(dovecot_src.ca_file),
                "ispdb_url": "https://ispdb.invalid/v1.1/", "discover_timeout": "2"}

        def post(name: str, data: bytes = users, **fields: str):
            return client.post("/api/batches", data={"name": name, "dest_endpoint": "dst", **fields},
                               files={"csv": ("users.csv", data, "text/csv")})

        # Refused after discovery (the user is busy): the endpoint stored for it goes again.
        assert post("plain", endpoint="dst").status_code == 201
        r = post("d0", **disc)
        assert r.status_code == 409 and "already in an unfinished batch" in r.json()["detail"], r.text
        assert [e["name"] for e in client.get("/api/endpoints").json()] == ["dst"]
        assert client.delete("/api/batches/plain").status_code == 200
        assert post("x", endpoint="dst", **disc).status_code == 400  # both: which one?
        assert "unknown --gmail-labels value" in post("x", endpoint="dst", gmail_labels="bogus").json()["detail"]

        r = post("d1", gmail_labels="folders", **disc)
        assert r.status_code == 201, r.text
        body = r.json()
        assert {k: body[k] for k in ("name", "status", "users")} == {"name": "d1", "status": "Created", "users": 1}
        src = body["source"]
        assert (src["endpoint"], src["host"], src["port"], src["security"], src["found_by"]) == (
            "web-disc.test", "localhost", dovecot_src.ssl_port, "ssl", "SRV")
        assert src["saved"] is True and src["reused"] is False and src["domains"] == ["web-disc.test"]
        eps = {e["name"]: e for e in client.get("/api/endpoints").json()}
        assert eps["web-disc.test"]["ca_file"] == str(dovecot_src.ca_file.resolve())
        doc = client.get("/api/batches/d1").json()
        assert doc["source_endpoint"] == "web-disc.test" and doc["options"]["gmail_labels"] == "folders"
        assert pw not in r.text

        # The New batch form: "discover" is a choice of the source list; Gmail labels a select.
        new = client.get("/batches/new").text
        assert 'value="(discover)"' in new and 'name="gmail_labels"' in new and "all-mail" in new
        form = {"csrf": csrf, "name": "d2", "endpoint": "(discover)", "destination": "endpoint:dst",
                "nameserver": ns, "ca_file": str(dovecot_src.ca_file), "gmail_labels": "off"}
        r = client.post("/batches", data=form, follow_redirects=False,
                        files={"csv": ("u.csv", csv_bytes([("c@web-disc.test", "c", pw)]), "text/csv")})
        assert r.status_code == 303, r.text
        assert unquote(r.headers["location"]).startswith("/batches/d2?done=created; source localhost:")
        assert "stored endpoint web-disc.test used" in unquote(r.headers["location"])
        doc = client.get("/api/batches/d2").json()
        assert doc["source_endpoint"] == "web-disc.test" and doc["options"]["gmail_labels"] == "off"
    finally:
        server.stop()
