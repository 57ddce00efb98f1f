"""Per-user control in a real browser: a wrong password fixed from the user page, sync now,
the schedule form, and completion that names the failed user first (Chromium, Playwright).

Reuses the `mailtrek serve --run` fixture of tests/test_web_browser.py (real Dovecot
source, Microsoft 365 simulator destination); screenshots of each new view go to
``artifacts/``.
"""

from __future__ import annotations

import imaplib
import os
import ssl
import time

import pytest

from test_web_browser import (  # noqa: F401
    ADMIN_PW,
    ARGS,
    CHROMIUM,
    DOMAIN,
    message,
    playwright_api,
    server,
    shot,
    sim,
)

pytestmark = pytest.mark.timeout(150)


def inproc(home, *args: str) -> str:
    from typer.testing import CliRunner

    from mailtrek.cli.main import app

    r = CliRunner().invoke(app, list(args), env={"MAILTREK_HOME": str(home)})
    assert r.exit_code == 0, r.output
    return r.output


def fill(dov, user: str, password: str, *ns: int) -> None:
    c = imaplib.IMAP4_SSL(dov.host, dov.ssl_port, ssl_context=ssl.create_default_context(cafile=str(dov.ca_file)))
    c.login(user, password)
    for n in ns:
        c.append("INBOX", "", None, message(user, n))
    c.logout()


def test_fix_a_user_sync_now_and_complete_in_chromium(tmp_path, server, dovecot_src, sim):  # noqa: F811
    tag = os.urandom(3).hex()
    good, bad = f"bg{tag}", f"bb{tag}"
    pw = {u: f"Pw-{u}-{os.urandom(4).hex()}" for u in (good, bad)}
    for u in (good, bad):
        dovecot_src.add_user(u, pw[u])
        fill(dovecot_src, u, pw[u], 1, 2, 3)
        sim.add_user(f"{u}@{DOMAIN}")
    home = tmp_path / "home"  # the server fixture's home
    inproc(home, "endpoint", "add", "src", "--host", dovecot_src.host, "--port", str(dovecot_src.ssl_port),
           "--security", "ssl", "--ca-file", str(dovecot_src.ca_file))
    secret = tmp_path / "secret"
    secret.write_text("Members-Browser-Secret-5\n")
    inproc(home, "tenant", "add", "t", "--tenant-id", sim.config.tenant_id, "--client-id", "members",
           "--client-secret-file", str(secret), "--m365-authority", sim.authority(),
           "--graph-url", f"{sim.base_url}/graph", "--ca-file", str(sim.ca_file), "--no-test")
    users = tmp_path / "users.csv"
    users.write_text(f"EmailAddress,UserName,Password\n{good}@{DOMAIN},{good},{pw[good]}\n"
                     f"{bad}@{DOMAIN},{bad},Wrong-{pw[bad]}\n")
    inproc(home, "batch", "create", "w", "--endpoint", "src", "--tenant", "t", "--csv", str(users), "--autostart")

    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        try:
            page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
            page.set_default_timeout(20_000)
            page.goto(server + "/login")
            page.fill("input[name=password]", ADMIN_PW)
            page.click("button[type=submit]")
            page.wait_for_url("**/batches")
            page.goto(server + "/batches/w")
            page.wait_for_function(
                "() => document.querySelector('#batch-status').textContent === 'SyncedWithErrors'")
            assert "Download failed users" in page.inner_text("#failed-users")
            shot(page, tmp_path, "members-batch-failed-user", keep=True)

            # Completion names the failed user before anything happens.
            page.goto(server + "/batches/w/confirm/complete")
            assert f"{bad}@{DOMAIN}: Failed" in page.inner_text("#left-out")
            shot(page, tmp_path, "members-complete-warning", keep=True)

            # The user page: failed run in the history, no next sync; new password, retry.
            page.goto(server + f"/batches/w/users/{bad}@{DOMAIN}")
            assert "after a retry" in page.inner_text("main") and "failed" in page.inner_text("#runs")
            shot(page, tmp_path, "members-user-failed", keep=True)
            page.fill("#retry-password", pw[bad])
            page.click("#user-retry")
            page.wait_for_url("**?done=retry")
            deadline = time.monotonic() + 60
            while page.inner_text("#user-status") != "Synced" and time.monotonic() < deadline:
                time.sleep(0.5)
                page.reload()
            assert page.inner_text("#user-status") == "Synced" and len(sim.messages(f"{bad}@{DOMAIN}")) == 3
            assert "INBOX" in page.inner_text("#folders")
            shot(page, tmp_path, "members-user-fixed", keep=True)

            # Sync now brings a new message without waiting for the interval.
            fill(dovecot_src, good, pw[good], 4)
            page.goto(server + f"/batches/w/users/{good}@{DOMAIN}")
            page.click("#user-sync")
            page.wait_for_url("**?done=sync")
            deadline = time.monotonic() + 60
            while len(sim.messages(f"{good}@{DOMAIN}")) < 4 and time.monotonic() < deadline:
                time.sleep(0.3)
            assert len(sim.messages(f"{good}@{DOMAIN}")) == 4
            deadline = time.monotonic() + 30
            while page.inner_text("#runs").count("ok") < 2 and time.monotonic() < deadline:
                time.sleep(0.5)
                page.reload()
            assert page.inner_text("#runs").count("incremental") == 1
            shot(page, tmp_path, "members-user-runs", keep=True)

            # The schedule form.
            page.goto(server + "/batches/w")
            page.fill("#interval", "12")
            page.click("#save-schedule")
            page.wait_for_url("**?done=schedule")
            assert "every 12.0 h" in page.inner_text("#schedule")
            shot(page, tmp_path, "members-schedule", keep=True)

            # Complete: nobody is left out any more.
            page.goto(server + "/batches/w/confirm/complete")
            assert page.locator("#left-out").count() == 0
            page.check("input[name=force]")
            page.click("#confirm")
            page.wait_for_url("**?done=complete")
        finally:
            browser.close()
