"""One IMAP client: typed verbs against real Dovecot, the connect steps it reports, and
`endpoint test` logging in exactly as a migration does (issue 16, item 3)."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mailtrek.cli.main import app
from mailtrek.devtools.dovecot import MASTER_USER, DovecotInstance
from mailtrek.errors import AuthenticationError
from mailtrek.orchestrate.endpoints import get_endpoint
from mailtrek.orchestrate.home import open_home
from mailtrek.orchestrate.mover import MoveJob, imap_destination_spec
from mailtrek.stores.imap import verbs
from mailtrek.stores.imap.connection import ConnectParams, Credentials, ImapConnection
from mailtrek.stores.imap.dial import DialStep
from mailtrek.stores.registry import open_destination

pytestmark = pytest.mark.timeout(60)
SRC = Path(__file__).resolve().parent.parent / "src" / "mailtrek"
IMPORTS_IMAPLIB = re.compile(r"^\s*(import|from)\s+imaplib\b", re.M)
MESSAGE = b"From: a@example.com\r\nTo: b@example.com\r\nSubject: verbs\r\n\r\nhello\r\n"


def test_imaplib_is_imported_nowhere_in_the_product() -> None:
    """Probe, discovery and migration share ImapConnection. devtools (the test servers'
    own setup) may drive servers with an independent client."""
    found = [str(f.relative_to(SRC)) for f in SRC.rglob("*.py")
             if f.relative_to(SRC).parts[0] != "devtools"
             and IMPORTS_IMAPLIB.search(f.read_text(encoding="utf-8"))]
    assert found == []
    assert IMPORTS_IMAPLIB.search("x = 1\n    import imaplib as i\n")  # the check can fail


def test_uid_set_and_command_lines() -> None:
    assert verbs.uid_set([7, 1, 2, 3, 3, 9, 10]) == b"1:3,7,9:10"
    assert verbs.uid_fetch(None, [b"UID", b"FLAGS"], changed_since=5).line == (
        b"UID FETCH 1:* (UID FLAGS) (CHANGEDSINCE 5)")
    assert verbs.uid_store([4, 5], ["\\Seen", "$Work"], op="+").line == (
        b"UID STORE 4:5 +FLAGS.SILENT (\\Seen $Work)")
    assert verbs.select(b'a "b"', readonly=True).line == b'EXAMINE "a \\"b\\""'
    with pytest.raises(ValueError):
        verbs.uid_store([1], [], op="*")


async def _connect(inst: DovecotInstance, user: str, password: str) -> ImapConnection:
    conn = ImapConnection(ConnectParams("localhost", inst.ssl_port, "ssl", ca_file=str(inst.ca_file)))
    await conn.open()
    await conn.login(Credentials(user, password))
    return conn


def test_verbs_against_dovecot(dovecot_dst: DovecotInstance, dst_user: tuple[str, str]) -> None:
    user, password = dst_user

    async def go() -> None:
        conn = await _connect(dovecot_dst, user, password)
        try:
            ns = await verbs.get_namespace(conn)
            assert ns is not None and ns.delimiter is not None
            name = ns.prefix + b"Verbs &AMk-t&AOk-"  # "Verbs Été", modified UTF-7
            res, status = await verbs.create_with_status(conn, name, use="\\Archive")
            assert res.ok and status[b"MESSAGES"] == 0 and status[b"UIDNEXT"] >= 1
            again = await verbs.create_mailbox(conn, name)
            assert not again.ok and (again.code or b"").upper().startswith(b"ALREADYEXISTS")
            assert (await conn.append(b'"' + name + b'"', [b"\\Seen"], None, MESSAGE)).ok
            assert (await verbs.mailbox_status(conn, name))[b"MESSAGES"] == 1

            found = await verbs.list_with_status(conn, status_items=verbs.STATUS_ITEMS,
                                                 special_use=True)
            ours = next(m for m in found.mailboxes if m.name == name)
            assert ours.selectable and ours.delimiter == ns.delimiter
            if conn.has("CREATE-SPECIAL-USE"):
                assert b"\\ARCHIVE" in ours.attributes
            assert found.statuses[name][b"MESSAGES"] == 1
            assert any(m.name.upper() == b"INBOX" for m in found.mailboxes)

            sel, fetch = await conn.send_many([  # SELECT and what runs inside it, pipelined
                verbs.select(name, readonly=False).pair,
                verbs.uid_fetch(None, [b"UID", b"FLAGS", b"INTERNALDATE", b"RFC822.SIZE"]).pair,
            ])
            assert (await sel).ok
            [item] = verbs.fetch_responses(verbs.check(await fetch, "UID FETCH"))
            assert verbs.fetched_number(item, b"UID") == 1
            assert verbs.fetched_number(item, b"RFC822.SIZE") == len(MESSAGE)
            assert verbs.fetched_flags(item) - {"\\Recent"} == {"\\Seen"}
            assert verbs.fetched_date(item) is not None
            store = await verbs.run(conn, verbs.uid_store([1], ["\\Flagged"], op="+", silent=False))
            assert [verbs.fetched_uid(i) for i in verbs.fetch_responses(verbs.check(store, "STORE"))] == [1]
            after = await verbs.run(conn, verbs.uid_fetch([1], [b"UID", b"FLAGS", b"BODY.PEEK[HEADER]"]))
            [item] = verbs.fetch_responses(after)
            assert verbs.fetched_flags(item) - {"\\Recent"} == {"\\Seen", "\\Flagged"}
            assert verbs.fetched_header(item).startswith(b"From: a@example.com")
            silent = await verbs.run(conn, verbs.uid_store([1], ["\\Seen"]))
            assert silent.ok and all(b"FLAGS" not in i for i in verbs.fetch_responses(silent))
            after = await verbs.run(conn, verbs.uid_fetch([1], [b"FLAGS"]))
            assert [verbs.fetched_flags(i) - {"\\Recent"} for i in verbs.fetch_responses(after)] == [
                {"\\Seen"}]  # replaced, not added
            assert (await verbs.run(conn, verbs.unselect(conn))).ok
            refused = await verbs.run(conn, verbs.status(b"No such box"))
            assert not refused.ok and verbs.status_values(refused) == {}
        finally:
            await conn.close()

    asyncio.run(go())


@pytest.mark.parametrize("security", ["ssl", "starttls"])
def test_connect_steps_are_reported_with_their_time(dovecot_src: DovecotInstance, security: str) -> None:
    port = dovecot_src.ssl_port if security == "ssl" else dovecot_src.port
    steps: list[DialStep] = []

    async def go() -> None:
        conn = ImapConnection(ConnectParams("localhost", port, security, ca_file=str(dovecot_src.ca_file)))
        conn.on_step = steps.append
        await conn.open()
        await conn.close()

    asyncio.run(go())
    assert [s.name for s in steps] == ["dns", "tcp", "tls"] and all(s.ok for s in steps)
    assert "127.0.0.1" in steps[0].addresses and steps[1].address in steps[0].addresses
    assert steps[2].tls_version and steps[2].tls_version.startswith("TLSv1")
    assert steps[2].starttls is (security == "starttls")
    assert all(0 <= s.seconds < 10 for s in steps)


def cli(home: Path, *args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(app, [*args, "--home", str(home)], env=env)


def test_probe_logs_in_as_the_migration_does_with_a_stored_admin(
        tmp_path: Path, dovecot_dst: DovecotInstance, dst_user: tuple[str, str]) -> None:
    """A destination with a stored admin: the migration logs in as the admin for each user
    (SASL PLAIN authzid). `endpoint test --user U` used to ask for U's own password and
    fail without it; now it makes the migration's login, and both agree either way."""
    user, _ = dst_user
    home = tmp_path / "home"
    args = ("endpoint", "add", "dst", "--host", "localhost", "--port", str(dovecot_dst.ssl_port),
            "--ca-file", str(dovecot_dst.ca_file), "--admin-user", MASTER_USER)
    assert cli(home, *args, env={"MAILTREK_ADMIN_PASSWORD": dovecot_dst.master_password}).exit_code == 0
    args_bad = ("endpoint", "add", "bad", *args[3:])
    assert cli(home, *args_bad, env={"MAILTREK_ADMIN_PASSWORD": "Not-The-Admin-Pw"}).exit_code == 0

    def migration_login(name: str) -> str:
        """Log in as a migration into endpoint ``name`` does: the mover's spec, the registry's store."""
        h = open_home(home)
        ep = get_endpoint(h, name)
        job = MoveJob(batch=None, email=user, username=user, password="", user_root=None,  # type: ignore[arg-type]
                      phase="initial", source=ep, dest_endpoint=ep)
        store = open_destination(imap_destination_spec(h, job))

        async def go() -> str:
            try:
                await store.connect()
                return "ok"
            except AuthenticationError:
                return "refused"
            finally:
                await store.close()

        return asyncio.run(go())

    r = cli(home, "endpoint", "test", "dst", "--user", user, env={})
    assert r.exit_code == 0, r.output
    assert f"logged in as {user} (as {MASTER_USER})" in r.output
    for step in ("dns", "tcp", "tls", "capabilities", "login"):  # each with its time
        assert re.search(rf"^\[ok\] {step}: .* \(\d+ ms\)$", r.output, re.M), (step, r.output)
    assert dovecot_dst.master_password not in r.output
    assert migration_login("dst") == "ok"

    r = cli(home, "endpoint", "test", "bad", "--user", user, env={})
    assert r.exit_code == 3 and "[FAILED] login" in r.output, r.output
    assert "Not-The-Admin-Pw" not in r.output
    assert migration_login("bad") == "refused"


def test_probe_and_migration_agree_on_a_server_with_logindisabled() -> None:
    """LOGINDISABLED with AUTH=PLAIN over plain text: the migration's client logs in with
    AUTHENTICATE PLAIN. The probe used to stop at LOGINDISABLED (a failed endpoint test
    for a server the migration could read); now both log in, and neither sends LOGIN."""
    from mailtrek.devtools.hostile_imap import HostileImap
    from mailtrek.orchestrate.endpoints import make_endpoint
    from mailtrek.orchestrate.probe import probe_endpoint
    from mailtrek.stores.imap.store import ImapSettings, ImapStore

    with HostileImap("login-disabled") as srv:
        ep = make_endpoint("plain", host="127.0.0.1", port=srv.port, security="none")
        r = probe_endpoint(ep, "alice", "Alice-Pw-1", timeout=5)
        assert r.ok, r.steps
        assert "logged in as alice" in r.steps[-1].detail

        async def migrate_list() -> list[tuple[str, ...]]:
            settings = ImapSettings(ConnectParams("127.0.0.1", srv.port, "none"),
                                    Credentials("alice", "Alice-Pw-1"), connections=1)
            async with ImapStore(settings) as store:
                return [f.path for f in await store.list_folders()]

        assert asyncio.run(migrate_list()) == [("INBOX",)]
        assert srv.saw(b"AUTHENTICATE PLAIN") and not srv.saw(b"LOGIN ")
