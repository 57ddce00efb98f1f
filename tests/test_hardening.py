"""Post-migration hardening: checklist and PowerShell for exactly the completed users, no secrets."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select, update
from typer.testing import CliRunner

from mailtrek.cli.main import app
from mailtrek.orchestrate.batches import create_batch, delete_batch
from mailtrek.orchestrate.csvfile import parse_users_csv
from mailtrek.orchestrate.endpoints import Tenant, add_endpoint, add_tenant, make_endpoint
from mailtrek.orchestrate.hardening import hardening_section, powershell_script
from mailtrek.orchestrate.home import open_home
from mailtrek.orchestrate.reports import batch_document, batch_summary_text, render
from mailtrek.state.orchestration import batch_users, batches

SECRET = "Client-Secret-Hardening-9"
PASSWORDS = {"ann": "Pw-ann-'quoted'-1", "ben": "Pw-ben-2", "cat": "Pw-cat-3"}


@pytest.fixture
def home(tmp_path):
    h = open_home(tmp_path / "home")
    add_endpoint(h, make_endpoint("src", host="imap.example.test", port=993))
    add_tenant(h, Tenant(name="t", tenant_id="tid", client_id="11111111-2222-3333-4444-555555555555",
                         client_secret_enc=h.box.encrypt(SECRET)))
    csv = "EmailAddress,UserName,Password\n" + "".join(
        f"{u}@contoso.test,{u},{p}\n" for u, p in PASSWORDS.items())
    create_batch(h, "b1", endpoint="src", users=parse_users_csv(csv.encode()), tenant="t")
    return h


def finish(h, statuses: dict[str, str], batch_status: str) -> None:
    with h.engine.begin() as c:
        for user, st in statuses.items():
            c.execute(update(batch_users).where(batch_users.c.email == f"{user}@contoso.test").values(status=st))
        c.execute(update(batches).where(batches.c.name == "b1").values(status=batch_status))


def test_no_hardening_before_completion(home):
    assert hardening_section(home, "b1") is None
    assert batch_document(home, "b1")["hardening"] is None
    finish(home, {"ann": "Synced", "ben": "Synced", "cat": "Synced"}, "Synced")
    assert hardening_section(home, "b1") is None
    with pytest.raises(Exception, match="no hardening script"):
        render(home, "b1", "powershell")


def test_script_for_exactly_the_completed_users_without_secrets(home):
    finish(home, {"ann": "Completed", "ben": "Failed", "cat": "Completed"}, "CompletedWithErrors")
    hard = hardening_section(home, "b1")
    assert hard["users"] == ["ann@contoso.test", "cat@contoso.test"]
    script = hard["powershell"]
    assert script.count("'ann@contoso.test'") == 1 and script.count("'cat@contoso.test'") == 1
    # Ben is not acted on, but named: the script does not leave him out silently.
    assert "'ben@contoso.test'" not in script and "#   ben@contoso.test (Failed)" in script
    assert hard["left_out"] == ["ben@contoso.test (Failed)"] and "ben@contoso.test" in hard["checklist"][0]
    assert "Set-CASMailbox -Identity $User -ImapEnabled $false -PopEnabled $false" in script
    assert "Remove-MailboxPermission" in script and "Remove-DistributionGroupMember" in script
    assert "$AppId = '11111111-2222-3333-4444-555555555555'" in script
    assert any("batch delete b1" in s for s in hard["checklist"])
    outputs = [script, render(home, "b1", "json"), render(home, "b1", "html"), render(home, "b1", "powershell"),
               batch_summary_text(home, "b1")]
    assert "Set-CASMailbox" in outputs[2] and "After the migration" in outputs[4]
    assert json.loads(outputs[1])["hardening"]["users"] == hard["users"]
    for text in outputs:
        assert SECRET not in text
        for pw in PASSWORDS.values():
            assert pw not in text


def test_powershell_quotes_addresses():
    script = powershell_script("b", ["o'brien@contoso.test"], app_id=None)
    assert "'o''brien@contoso.test'" in script and "$AppId = ''" in script


def test_cli_report_and_delete_removes_passwords(home, tmp_path):
    finish(home, {"ann": "Completed", "ben": "Completed", "cat": "Completed"}, "Completed")
    runner = CliRunner()
    env = {"MAILTREK_HOME": str(home.path)}
    r = runner.invoke(app, ["batch", "report", "b1", "--format", "powershell"], env=env)
    assert r.exit_code == 0 and r.output.count("@contoso.test'") == 3
    with home.engine.connect() as c:
        ciphertexts = c.execute(select(batch_users.c.password_enc)).scalars().all()
    assert len(ciphertexts) == 3
    r = runner.invoke(app, ["batch", "delete", "b1"], env=env)
    assert r.exit_code == 0 and "3 users and their stored passwords removed" in r.output
    with home.engine.connect() as c:
        assert c.execute(select(batch_users)).first() is None
    home.engine.dispose()
    raw = b"".join(p.read_bytes() for p in home.path.glob("state.db*"))
    for ct in ciphertexts:
        assert ct.encode() not in raw  # secure_delete: not even in freed pages
    with pytest.raises(Exception, match="no batch"):
        delete_batch(home, "b1")
