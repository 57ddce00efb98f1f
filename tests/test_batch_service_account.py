"""Batches from a Google Workspace domain through one service account (domain-wide delegation).

Real parts only: a Dovecot that validates XOAUTH2 tokens as Gmail would, a local HTTPS
token endpoint that checks the service account's signed assertion like Google's (from
tests/test_gmail_sa_login.py), a destination Dovecot, and the `mailtrek` CLI. The users
CSV has empty passwords; one user is not covered by the delegation and must fail alone.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jwt
import pytest
from typer.testing import CliRunner

from imap_helpers import dump, load
from mailtrek.cli.main import app
from mailtrek.devtools.dovecot import MASTER_USER, DovecotInstance, OAuthConfig, hmac_key_text
from mailtrek.orchestrate.csvfile import CsvInvalidError, parse_users_csv
from test_gmail_auth import GMAIL_SCOPE, TokenEndpoint
from test_gmail_sa_login import ISSUER, SECRET
from test_orchestrate_e2e import mailtrek

pytestmark = pytest.mark.timeout(120)
DOMAIN = "ws.test"
SYNCED = [f"{n}@{DOMAIN}" for n in ("ann", "bob", "cyd")]
REFUSED = f"dora@{DOMAIN}"  # not covered by the delegation
LOCAL_PW = "seed-only-pw"  # used to seed the source mailboxes, never given to mailtrek


class WorkspaceTokens(TokenEndpoint):
    """Google's token endpoint for a domain whose delegation covers ``delegated`` only."""

    def __init__(self, tmp: Path, delegated: set[str]) -> None:
        self.delegated = delegated
        super().__init__(tmp)

    def answer(self, form: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
        try:
            claims = jwt.decode(form["assertion"][0], self.key.public_key(), algorithms=["RS256"],
                                audience="https://oauth2.googleapis.com/token")
        except (KeyError, jwt.PyJWTError) as e:
            return 400, {"error": "invalid_grant", "error_description": str(e)}
        self.requests.append(claims)
        if claims.get("scope") != GMAIL_SCOPE or claims.get("sub") not in self.delegated:
            return 401, {"error": "unauthorized_client",
                         "error_description": "Client is unauthorized to retrieve access "
                                              "tokens using this method."}
        token = jwt.encode({"iss": ISSUER, "sub": claims["sub"], "email": claims["sub"],
                            "scope": GMAIL_SCOPE, "exp": int(time.time()) + 600},
                           SECRET, algorithm="HS256")
        return 200, {"access_token": token, "expires_in": 600, "token_type": "Bearer"}


@pytest.fixture(scope="module")
def workspace() -> Iterator[DovecotInstance]:
    oauth = OAuthConfig(issuer=ISSUER, scope=GMAIL_SCOPE,
                        keys={(None, "HS256", None): hmac_key_text(SECRET)})
    inst = DovecotInstance(Path(tempfile.mkdtemp(prefix="mt-gwb-", dir="/tmp")), name="gwb",
                           oauth=oauth)
    inst.start()
    try:
        for user in (*SYNCED, REFUSED):
            inst.add_user(user, LOCAL_PW)
    except BaseException:
        inst.remove()
        raise
    try:
        yield inst
    finally:
        inst.remove()


@pytest.fixture
def google(tmp_path: Path) -> Iterator[WorkspaceTokens]:
    ep = WorkspaceTokens(tmp_path, set(SYNCED))
    yield ep
    ep.server.shutdown()
    ep.server.server_close()


def cli(home: Path, *args: str) -> Any:
    return CliRunner().invoke(app, [*args, "--home", str(home)])


def pem_body(info: dict[str, Any]) -> str:
    """A line from the middle of the private key: what a leak would contain."""
    return info["private_key"].splitlines()[5]


def state_bytes(home: Path) -> bytes:
    """Every byte of the state database, including its WAL."""
    return b"".join(p.read_bytes() for p in home.rglob("*") if p.is_file()
                    and (p.suffix in (".db", ".sqlite") or p.name.endswith(("-wal", "-journal"))))


def test_a_bad_key_file_is_refused_and_nothing_is_stored(tmp_path: Path, google: WorkspaceTokens) -> None:
    home = tmp_path / "home"
    good = google.info()
    bad = {
        "notjson.json": "{oops",
        "user.json": json.dumps({"type": "authorized_user", "client_id": "x"}),
        "nokey.json": json.dumps({**good, "private_key": ""}),
        "nouri.json": json.dumps({k: v for k, v in good.items() if k != "token_uri"}),
    }
    for name, text in bad.items():
        (tmp_path / name).write_text(text)
    for name in (*bad, "missing.json"):
        r = cli(home, "endpoint", "add", "ws", "--preset", "gmail",
                "--service-account-key", str(tmp_path / name))
        assert r.exit_code == 2, (name, r.output)
        assert "service-account key" in r.output or "service account key" in r.output, r.output
        assert "PRIVATE KEY" not in r.output and pem_body(good) not in r.output
    r = cli(home, "endpoint", "list", "--json")
    assert r.exit_code == 0 and json.loads(r.output) == [], r.output


def test_csv_passwords_may_be_empty_only_when_asked() -> None:
    data = b"EmailAddress,UserName,Password\r\nann@ws.test,ann@ws.test,\r\nbob@ws.test,bob@ws.test,\r\n"
    with pytest.raises(CsvInvalidError) as e:
        parse_users_csv(data)
    assert [str(p) for p in e.value.problems] == ["line 2: Password is empty", "line 3: Password is empty"]
    rows = parse_users_csv(data, allow_empty_password=True)
    assert [(r.email, r.password) for r in rows] == [("ann@ws.test", ""), ("bob@ws.test", "")]
    with pytest.raises(CsvInvalidError):  # the column itself stays required
        parse_users_csv(b"EmailAddress,UserName\r\nann@ws.test,ann@ws.test\r\n", allow_empty_password=True)


def test_a_domain_moves_without_passwords_and_a_refused_user_fails_alone(
        tmp_path: Path, workspace: DovecotInstance, dovecot_dst: DovecotInstance,
        google: WorkspaceTokens) -> None:
    stamp = datetime(2025, 3, 3, 9, 30, tzinfo=UTC)
    for user in (*SYNCED, REFUSED):
        asyncio.run(load(workspace, user, LOCAL_PW, [
            (("INBOX",), f"Subject: hello {user}\r\n\r\nbody\r\n".encode(), frozenset({"\\Seen"}), stamp),
            (("Projects",), f"Subject: plan {user}\r\n\r\nplan\r\n".encode(), frozenset(), stamp),
        ]))
        dovecot_dst.add_user(user, "dest-" + LOCAL_PW)
    info = google.info()
    key = tmp_path / "sa.json"
    key.write_text(json.dumps(info))
    # One CA bundle for the IMAP server and the token endpoint, as behind a corporate proxy.
    bundle = tmp_path / "ca.pem"
    bundle.write_text(Path(workspace.ca_file).read_text() + Path(google.ca_file).read_text())
    home = tmp_path / "home"
    outputs: list[str] = []

    def ok(*args: str, code: int = 0) -> str:
        r = cli(home, *args)
        outputs.append(r.output)
        assert r.exit_code == code, (args, r.output)
        return str(r.output)

    ok("endpoint", "add", "ws", "--preset", "gmail", "--host", "127.0.0.1",
       "--port", str(workspace.ssl_port), "--ca-file", str(bundle), "--service-account-key", str(key))
    who = f"service account {info['client_email']}"
    assert json.loads(ok("endpoint", "show", "ws"))["auth"] == who
    assert who in ok("endpoint", "list")
    db = state_bytes(home)
    assert b"PRIVATE KEY" not in db and pem_body(info).encode() not in db
    assert info["client_email"].encode() in db  # the display name is stored, the key is not readable

    # endpoint test: a token for the user, then an XOAUTH2 login on the real server.
    out = ok("endpoint", "test", "ws", "--user", SYNCED[0])
    assert "[ok] token" in out and "over XOAUTH2" in out
    out = ok("endpoint", "test", "ws", "--user", REFUSED, code=3)
    assert "[FAILED] token" in out and "unauthorized_client" in out and GMAIL_SCOPE in out

    admin_pw = tmp_path / "admin-pw"
    admin_pw.write_text(dovecot_dst.master_password + "\n")
    ok("endpoint", "add", "dst", "--host", "localhost", "--port", str(dovecot_dst.ssl_port),
       "--ca-file", str(dovecot_dst.ca_file), "--admin-user", MASTER_USER,
       "--admin-password-file", str(admin_pw))
    csv = tmp_path / "users.csv"
    csv.write_text("EmailAddress,UserName,Password\n"
                   + "".join(f"{u},{u},\n" for u in (*SYNCED, REFUSED)))
    # A password endpoint keeps Exchange's rule: every row needs its password.
    out = ok("batch", "create", "nopw", "--endpoint", "dst", "--dest-endpoint", "dst", "--csv", str(csv),
             code=2)
    assert "line 2: Password is empty" in out and "line 5: Password is empty" in out
    # The pre-flight logs in with the same delegated tokens (no password needed).
    dry = ok("batch", "create", "gws", "--endpoint", "ws", "--dest-endpoint", "dst",
             "--csv", str(csv), "--dry-run", code=1)  # the refused user cannot start
    assert REFUSED in dry and "cannot be used" not in dry
    assert all(u in dry for u in SYNCED)
    ok("batch", "create", "gws", "--endpoint", "ws", "--dest-endpoint", "dst", "--csv", str(csv),
       "--autostart")

    run = mailtrek(home, "run", "--until-idle", check=False)
    outputs += [run.stdout, run.stderr]
    doc = json.loads(ok("batch", "show", "gws", "--json"))
    by = {u["email"]: u for u in doc["users"]}
    assert {u: by[u]["status"] for u in SYNCED} == dict.fromkeys(SYNCED, "Synced"), doc
    assert by[REFUSED]["status"] == "Failed", doc
    error = by[REFUSED]["error"]
    assert "unauthorized_client" in error and "Domain-wide delegation" in error and GMAIL_SCOPE in error
    assert {c["sub"] for c in google.requests} == {*SYNCED, REFUSED}  # one delegation per user
    for user in SYNCED:
        copied = asyncio.run(dump(dovecot_dst, user, "dest-" + LOCAL_PW))
        assert copied == asyncio.run(dump(workspace, user, LOCAL_PW)) and sum(map(len, copied.values())) == 2
    assert asyncio.run(dump(dovecot_dst, REFUSED, "dest-" + LOCAL_PW)).get(("Projects",)) is None

    for text in outputs:
        assert "PRIVATE KEY" not in text and pem_body(info) not in text, text

    # Deleting the batch, then the endpoint, leaves no trace of the key's ciphertext.
    db_file = next(p for p in home.rglob("*") if p.suffix in (".db", ".sqlite"))
    with sqlite3.connect(db_file) as c:
        [(enc,)] = c.execute("SELECT service_account_key_enc FROM endpoints WHERE name = 'ws'").fetchall()
    assert enc and enc.encode() in state_bytes(home)
    ok("batch", "delete", "gws")
    ok("endpoint", "remove", "ws")
    assert enc.encode()[:60] not in state_bytes(home)


def test_an_older_state_database_gains_the_service_account_columns(tmp_path: Path) -> None:
    from sqlalchemy import inspect

    from mailtrek.state.db import open_engine

    path = tmp_path / "old.db"
    open_engine(path).dispose()
    with sqlite3.connect(path) as c:  # make it look like a database from before revision 0003
        c.execute("ALTER TABLE endpoints DROP COLUMN service_account_key_enc")
        c.execute("ALTER TABLE endpoints DROP COLUMN service_account_email")
        c.execute("UPDATE alembic_version SET version_num = '0002'")
    engine = open_engine(path)
    try:
        columns = {c["name"] for c in inspect(engine).get_columns("endpoints")}
        assert {"service_account_email", "service_account_key_enc"} <= columns
    finally:
        engine.dispose()
    with sqlite3.connect(path) as c:
        from mailtrek.state.migrate import head

        assert c.execute("SELECT version_num FROM alembic_version").fetchall() == [(head(),)]
