"""The admin's new dashboard views in Chromium: Pre-flight, Audit, and /docs with no internet.

`mailtrek serve` runs as a subprocess over a home prepared in-process; the session's real
Dovecot is source and destination. Screenshots of each view go to ``artifacts/``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from mailtrek.orchestrate.batches import create_batch
from mailtrek.orchestrate.csvfile import parse_users_csv
from mailtrek.orchestrate.endpoints import add_endpoint, make_endpoint
from mailtrek.orchestrate.home import open_home
from mailtrek.web.auth import set_admin_password

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip("needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)", allow_module_level=True)
playwright_api = pytest.importorskip("playwright.sync_api")

pytestmark = pytest.mark.timeout(120)
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
MAILTREK = [sys.executable, "-c", "import sys; from mailtrek.cli.main import main; sys.argv[0] = 'mailtrek'; main()"]
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
ADMIN_PW = "admin2 browser pw"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_preflight_audit_and_offline_docs_in_chromium(tmp_path, dovecot_src):
    dov = dovecot_src
    name, pw = f"br{os.urandom(3).hex()}", f"Pw-{os.urandom(6).hex()}"
    dov.add_user(name, pw)
    dov.add_user(f"{name}@x.test", pw)  # the destination login (the same server stands in for both sides)
    h = open_home(tmp_path / "home")
    set_admin_password(h, ADMIN_PW)
    add_endpoint(h, make_endpoint("src", host=dov.host, port=dov.ssl_port, security="ssl", ca_file=str(dov.ca_file)))
    csv = f"EmailAddress;UserName;Password\n{name}@x.test;{name};{pw}\nbad@x.test;nobody{name};wrong\n"
    create_batch(h, "b", endpoint="src", dest_endpoint="src", users=parse_users_csv(csv.encode()))
    h.engine.dispose()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILTREK_")} | {"MAILTREK_HOME": str(h.path)}
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen([*MAILTREK, "serve", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(url + "/login", timeout=2)
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
                time.sleep(0.1)
        outside: list[str] = []
        with playwright_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
            try:
                page = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
                page.set_default_timeout(30_000)

                def only_local(route) -> None:  # no internet: anything else would hang or fail
                    if route.request.url.startswith(url):
                        route.continue_()
                    else:
                        outside.append(route.request.url)
                        route.abort()
                page.route("**/*", only_local)
                page.goto(url + "/login")
                page.fill("input[name=password]", ADMIN_PW)
                page.click("button[type=submit]")
                page.wait_for_url("**/batches")

                page.goto(url + "/batches/b")
                assert not page.locator("#action-stop").count()  # never started: nothing to stop
                page.click("#preflight")
                page.wait_for_url("**/batches/b/preflight")
                assert "blocker(s): some users cannot start" in page.inner_text("#preflight-verdict")
                blockers = page.inner_text("#blockers")
                assert "bad@x.test" in blockers and f"{name}@x.test" not in blockers and pw not in blockers
                assert "no measurement yet" in page.inner_text("main")
                shot(page, "admin2-preflight")

                page.goto(url + "/audit")
                assert "web POST /login" in page.inner_text("#audit")
                shot(page, "admin2-audit")

                page.goto(url + "/docs")
                assert "POST /api/batches" in page.inner_text("main")
                assert "PATCH /api/endpoints/{name}" in page.inner_text("main")
                shot(page, "admin2-docs-offline")
            finally:
                browser.close()
        assert outside == []
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()
