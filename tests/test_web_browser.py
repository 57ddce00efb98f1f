"""The dashboard in a real browser: Playwright drives Debian's headless chromium.

`mailtrek serve --run` runs as a subprocess over a fresh home, with the session's real
Dovecot as the source and the Microsoft 365 simulator as the destination. The test logs
in, adds and tests an endpoint, adds a tenant, uploads a bad CSV (sees the line), uploads
a good one, starts the batch and watches the users reach Synced without reloading, stops
and resumes, downloads the reports, and saves screenshots.
"""

from __future__ import annotations

import imaplib
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from mailtrek.sim.config import SimConfig
from mailtrek.sim.server import Simulator

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip("needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)", allow_module_level=True)
playwright_api = pytest.importorskip("playwright.sync_api")

pytestmark = pytest.mark.timeout(120)
DOMAIN = "contoso.test"
ADMIN_PW = "browser-test admin pw"
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
SERVE = [sys.executable, "-c", "import sys, typer; from mailtrek.cli import web_cmds; app = typer.Typer(); "
         "web_cmds.register(app); sys.argv[0] = 'mailtrek'; app()"]
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def message(user: str, n: int) -> bytes:
    return (f"From: sender{n}@example.test\r\nTo: {user}@{DOMAIN}\r\nSubject: message {n} for {user}\r\n"
            f"Message-ID: <{user}.{n}@example.test>\r\nDate: Mon, 2 Mar 2026 10:{n:02d}:00 +0000\r\n"
            f"\r\nBody {n}\r\n" + "x" * (300 * n) + "\r\n").encode()


@pytest.fixture(scope="module")
def sim():
    s = Simulator(SimConfig(users=[]))
    s.start()
    yield s
    s.stop()


@pytest.fixture
def server(tmp_path):
    """Set the admin password with the CLI, then run `serve --run`; yield the base URL."""
    home = tmp_path / "home"
    env = dict(os.environ, MAILTREK_HOME=str(home), MAILTREK_LEASE_SECONDS="10")
    pw_file = tmp_path / "admin-pw"
    pw_file.write_text(ADMIN_PW + "\n")
    p = subprocess.run([*SERVE, "admin", "set-password", "--password-file", str(pw_file)], env=env,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    port = free_port()
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen([*SERVE, "serve", "--run", "--port", str(port), "--poll-seconds", "0.5"],
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(url + "/login", timeout=2)
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError((tmp_path / "serve.log").read_text()) from None
            time.sleep(0.1)
    yield url
    proc.terminate()
    proc.wait(timeout=20)
    log.close()


def shot(page, tmp_path: Path, name: str, keep: bool = False) -> Path:
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    if keep:
        ARTIFACTS.mkdir(exist_ok=True)
        shutil.copy(path, ARTIFACTS / path.name)
    return path


def confirm(page, action: str) -> None:
    page.click(f"#action-{action}")
    page.wait_for_url(f"**/confirm/{action}")
    page.click("#confirm")
    page.wait_for_url(f"**?done={action}")


def test_dashboard_in_chromium(tmp_path, server, dovecot_src, sim):
    dov = dovecot_src
    users = {}
    for i in range(3):
        name = f"web{i}{os.urandom(3).hex()}"
        users[name] = f"Pw-{name}-{os.urandom(4).hex()}"
        dov.add_user(name, users[name])
        c = imaplib.IMAP4_SSL(dov.host, dov.ssl_port, ssl_context=ssl.create_default_context(cafile=str(dov.ca_file)))
        c.login(name, users[name])
        for n in range(1, 6):
            c.append("INBOX", "", None, message(name, n))
        c.logout()
        sim.add_user(f"{name}@{DOMAIN}")
    first = next(iter(users))
    secret = "Browser-Client-Secret-31"
    seen: list[str] = []

    with playwright_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        try:
            ctx = browser.new_context(viewport={"width": 1280, "height": 800}, accept_downloads=True)
            page = ctx.new_page()
            page.set_default_timeout(15_000)

            # Log in (a wrong password first).
            page.goto(server + "/batches")
            page.wait_for_url("**/login")
            page.fill("input[name=password]", "not the password")
            page.click("button[type=submit]")
            assert "Wrong password" in page.inner_text("main")
            page.fill("input[name=password]", ADMIN_PW)
            page.click("button[type=submit]")
            page.wait_for_url("**/batches")
            assert "No batches yet" in page.inner_text("main")

            # Add the Dovecot endpoint and test it step by step.
            page.goto(server + "/endpoints")
            form = page.locator("#endpoint-form")
            form.locator("input[name=name]").fill("src")
            form.locator("input[name=host]").fill(dov.host)
            form.locator("input[name=port]").fill(str(dov.ssl_port))
            form.locator("select[name=security]").select_option("ssl")
            form.locator("input[name=ca_file]").fill(str(dov.ca_file))
            form.locator("button[type=submit]").click()
            page.wait_for_url("**/endpoints?added=src")
            probe = page.locator("form.probe").first
            probe.locator("input[name=user]").fill(first)
            probe.locator("input[name=password]").fill(users[first])
            probe.locator("button").click()
            page.wait_for_url("**/endpoints/src/test")
            assert "All checks passed" in page.inner_text("#probe-verdict")
            steps = page.locator("ol.steps li")
            assert steps.count() == 5 and "logged in as" in steps.nth(4).inner_text()
            seen.append(page.content())
            shot(page, tmp_path, "endpoint-test", keep=True)

            # Add the simulator tenant (the form gets a token before storing it).
            page.goto(server + "/endpoints")
            page.click("text=Add a tenant")
            tform = page.locator("form[action='/tenants']")
            for field, value in (("name", "t"), ("tenant_id", sim.config.tenant_id), ("client_id", "mailtrek-web"),
                                 ("client_secret", secret), ("authority", sim.authority()),
                                 ("graph_url", f"{sim.base_url}/graph"), ("ca_file", str(sim.ca_file))):
                tform.locator(f"input[name={field}]").fill(value)
            tform.locator("button[type=submit]").click()
            page.wait_for_url("**/endpoints?added=t")
            seen.append(page.content())

            # A CSV with one bad line: the page names the line; nothing is created.
            rows = [f"{n}@{DOMAIN},{n},{p}" for n, p in users.items()]
            bad = tmp_path / "bad.csv"
            bad.write_text("EmailAddress,UserName,Password\n" + "\n".join([rows[0], "nobody-at-all,x,Pw-x-999", *rows[1:]]) + "\n")
            page.goto(server + "/batches/new")
            page.fill("input[name=name]", "b1")
            page.set_input_files("input[name=csv]", str(bad))
            page.select_option("select[name=destination]", "tenant:t")
            page.click("#batch-form button[type=submit]")
            problems = page.locator("#csv-problems tbody tr")
            assert problems.count() == 1
            assert problems.first.inner_text().startswith("3") and "not an e-mail address" in problems.first.inner_text()
            seen.append(page.content())
            shot(page, tmp_path, "csv-problems")

            # The good CSV: the batch page, then Start with confirmation.
            good = tmp_path / "good.csv"
            good.write_text("EmailAddress,UserName,Password\n" + "\n".join(rows) + "\n")
            page.fill("input[name=name]", "b1")
            page.set_input_files("input[name=csv]", str(good))
            page.select_option("select[name=destination]", "tenant:t")
            page.click("#batch-form button[type=submit]")
            page.wait_for_url("**/batches/b1")
            assert page.inner_text("#batch-status") == "Created"
            confirm(page, "start")

            # Live updates: the rows turn Synced while the page stays loaded (no reload).
            page.evaluate("window.__stay = 42")
            page.wait_for_function(
                "() => { const r = document.querySelectorAll('tr[data-status]');"
                " return r.length === 3 && [...r].every(x => x.dataset.status === 'Synced'); }",
                timeout=45_000)
            assert page.evaluate("window.__stay") == 42
            assert page.get_attribute("#live", "data-updated")
            page.wait_for_function("() => document.querySelector('#batch-status').textContent === 'Synced'")
            table = page.inner_text("table.users")
            assert "100%" in table and "5 / 5" in table
            for n in users:
                assert len(sim.messages(f"{n}@{DOMAIN}")) == 5
            seen.append(page.content())
            shot(page, tmp_path, "batch-synced", keep=True)

            # Stop, then resume.
            confirm(page, "stop")
            page.wait_for_function("() => document.querySelector('#batch-status').textContent === 'Stopped'")
            assert {r.get_attribute("data-status") for r in page.locator("tr[data-status]").all()} == {"Stopped"}
            confirm(page, "resume")
            # Resumed users that had synced get an incremental sync right away: wait for it to
            # finish (second run recorded), reading the JSON API with the page's own session.
            deadline = time.monotonic() + 30
            while not page.evaluate(
                    "async () => { const d = await (await fetch('/api/batches/b1')).json();"
                    " return d.status === 'Synced' && d.users.every(u => u.status === 'Synced' && u.runs === 2); }"):
                assert time.monotonic() < deadline, page.evaluate("fetch('/api/batches/b1').then(r => r.text())")
                time.sleep(0.3)
            page.wait_for_function(
                "() => [...document.querySelectorAll('tr[data-status]')].every(x => x.dataset.status === 'Synced')")

            # A user's page with the skipped items (none here).
            page.click(f"text={first}@{DOMAIN}")
            assert "None: every message was copied." in page.inner_text("main")
            page.go_back()

            # Reports download.
            texts = {}
            for fmt in ("csv", "html"):
                with page.expect_download() as dl:
                    page.click(f"a[href='/batches/b1/report.{fmt}']")
                texts[fmt] = Path(dl.value.path()).read_text()
                assert dl.value.suggested_filename == f"b1-report.{fmt}"
            assert texts["csv"].startswith("email,status")
            assert all(f"{n}@{DOMAIN},Synced,5," in texts["csv"] for n in users)
            assert "<table>" in texts["html"]

            # A phone-sized screen: the users table becomes stacked cards.
            phone = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2,
                                        storage_state=ctx.storage_state())
            ph = phone.new_page()
            ph.goto(server + "/batches/b1")
            assert ph.evaluate("document.documentElement.scrollWidth") <= 390 + 1
            shot(ph, tmp_path, "batch-phone", keep=True)
            phone.close()
        finally:
            browser.close()

    for text in [*seen, *texts.values()]:
        assert secret not in text
        for p in users.values():
            assert p not in text
