"""The CLI prints errors one way, secrets redacted on every path.

`cli/common.py:fail_on_error` is the one renderer (`handled` wraps commands in it); a
failing `batch create` (a users CSV without its header) and a failing `endpoint test`
(a server that repeats the LOGIN arguments in its refusal) never show the password.
"""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from mailtrek.cli.common import fail_on_error, handled
from mailtrek.cli.main import app
from mailtrek.devtools.hostile_imap import HostileImap
from mailtrek.errors import UsageError
from mailtrek.secrets import MASK, remember

pytestmark = pytest.mark.timeout(60)


def cli(home, *args, env=None):
    return CliRunner().invoke(app, [*args, "--home", str(home)], env=env)


@pytest.mark.parametrize("prefix", ["mailtrek: ", ""])
def test_one_renderer_redacts_message_and_hint(prefix):
    secret = remember(f"Render-Pw-{len(prefix)}-93c1")
    demo = typer.Typer()

    def fail() -> None:
        raise UsageError(f"login {secret} refused", hint=f"not {secret}")

    @demo.command()
    def boom() -> None:
        if prefix:  # copy, pim, demo: `with fail_on_error()`
            with fail_on_error():
                fail()
        else:  # the workflow commands: @handled
            handled(fail)()

    r = CliRunner().invoke(demo, [])
    assert r.exit_code == 2, r.output
    assert secret not in r.output
    assert f"{prefix}error: login {MASK} refused" in r.output and f"{prefix}hint: not {MASK}" in r.output


def test_failing_batch_create_never_prints_a_password(tmp_path):
    home = tmp_path / "home"
    for name in ("src", "dst"):
        assert cli(home, "endpoint", "add", name, "--host", "localhost", "--port", "993").exit_code == 0
    secret = "Csv-Pw-No-Header-5521"
    csv = tmp_path / "users.csv"  # the header was left out: line 1 is a user with a password
    csv.write_text(f"alice@contoso.test,alice,{secret}\nbob@contoso.test,bob,Other-Pw-0042\n")
    for extra in ([], ["--dry-run"], ["--allow-unknown-columns"]):
        r = cli(home, "batch", "create", "b", "--csv", str(csv), "--endpoint", "src", "--dest-endpoint", "dst",
                *extra)
        assert r.exit_code == 2, r.output
        assert "the header is missing" in r.output, r.output
        assert secret not in r.output
    assert "(none)" in cli(home, "batch", "list").output


def test_failing_endpoint_test_never_prints_a_password(tmp_path):
    home = tmp_path / "home"
    secret = "Echoed-Login-Pw-7788"
    pw_file = tmp_path / "pw.txt"
    pw_file.write_text(secret + "\n")
    with HostileImap("echo-login") as srv:
        r = cli(home, "endpoint", "add", "h", "--host", "127.0.0.1", "--port", str(srv.port), "--security", "none")
        assert r.exit_code == 0, r.output
        for how, env in ((["--password-file", str(pw_file)], None), ([], {"MAILTREK_SOURCE_PASSWORD": secret})):
            r = cli(home, "endpoint", "test", "h", "--user", "alice", *how, env=env)
            assert r.exit_code == 3, r.output  # the login step failed
            assert "[FAILED] login" in r.output and "rejected" in r.output, r.output
            assert secret not in r.output
        # The password did reach the server (and came back in its refusal).
        assert any(b"LOGIN " in line and secret.encode() in line for line in srv.lines)
