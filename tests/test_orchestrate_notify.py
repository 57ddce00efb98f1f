"""Status e-mails, received by a real local SMTP server (aiosmtpd)."""

from __future__ import annotations

import email
import socket
import ssl
from email import policy

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from mailtrek.errors import AuthenticationError
from mailtrek.orchestrate.batches import complete_batch, create_batch, start_batch
from mailtrek.orchestrate.csvfile import UserRow
from mailtrek.orchestrate.endpoints import add_endpoint, make_endpoint
from mailtrek.orchestrate.home import open_home, utcnow
from mailtrek.orchestrate.notify import Notifier, SmtpSettings, send_mail
from mailtrek.orchestrate.runner import Runner
from mailtrek.state.db import MailboxState, MessageState
from mailtrek.sync.options import CopyReport, FolderReport

pytestmark = pytest.mark.timeout(60)


class Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[list[str], bytes]] = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((list(envelope.rcpt_tos), envelope.original_content or envelope.content))
        return "250 OK"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def smtp():
    inbox = Inbox()
    c = Controller(inbox, hostname="127.0.0.1", port=free_port())
    c.start()
    yield inbox, c.port
    c.stop()


def parsed(raw: bytes):
    return email.message_from_bytes(raw, policy=policy.default)


async def mover(home, job):
    if job.email.startswith("bad"):
        raise AuthenticationError(f"LOGIN {job.username} {job.password} refused")
    st = MailboxState(home.engine, job.mailbox)
    st.record(("INBOX",), 1, [MessageState(1, "1", None, 10, frozenset())])
    st.flush()
    r = CopyReport(source=job.username, destination=job.email, started=utcnow())
    r.folders.append(FolderReport("INBOX", "INBOX", copied=1))
    return r


async def test_status_mails_on_start_sync_and_completion(tmp_path, smtp):
    inbox, port = smtp
    home = open_home(tmp_path / "home")
    add_endpoint(home, make_endpoint("src", host="127.0.0.1"))
    add_endpoint(home, make_endpoint("dst", host="127.0.0.1"))
    users = [UserRow(2, "alice@contoso.test", "alice", "pw-Alice-Secret"),
             UserRow(3, "bad@contoso.test", "bad", "pw-Bad-Secret")]
    create_batch(home, "b", endpoint="src", dest_endpoint="dst", users=users,
                 notify=["ops@contoso.test", "boss@contoso.test"])
    start_batch(home, "b")
    notifier = Notifier(SmtpSettings(host="127.0.0.1", port=port, security="none"))
    await Runner(home, mover=mover, notifier=notifier, poll_seconds=0.05).run(until_idle=True)
    subjects = [parsed(raw)["Subject"] for _, raw in inbox.messages]
    assert subjects == ["mailtrek: batch b started (Syncing)",
                        "mailtrek: batch b sync done with errors (SyncedWithErrors)"]
    rcpts, raw = inbox.messages[-1]
    assert rcpts == ["ops@contoso.test", "boss@contoso.test"]  # never the migrated users
    msg = parsed(raw)
    body = msg.get_body(("plain",)).get_content()
    assert "bad@contoso.test: Failed" in body and "refused" in body
    attachment = next(msg.iter_attachments())
    assert attachment.get_filename() == "b-users.csv" and "alice@contoso.test" in attachment.get_content()
    for _, raw in inbox.messages:
        assert b"pw-Bad-Secret" not in raw and b"pw-Alice-Secret" not in raw
    complete_batch(home, "b")
    await Runner(home, mover=mover, notifier=notifier, poll_seconds=0.05).run(until_idle=True)
    assert parsed(inbox.messages[-1][1])["Subject"] == "mailtrek: batch b completed with errors (CompletedWithErrors)"
    # A restart does not send the same notice again.
    n = len(inbox.messages)
    await Runner(home, mover=mover, notifier=notifier, poll_seconds=0.05).run(until_idle=True)
    assert len(inbox.messages) == n


async def test_unreachable_smtp_is_logged_not_fatal(tmp_path, caplog):
    home = open_home(tmp_path / "home")
    add_endpoint(home, make_endpoint("src", host="127.0.0.1"))
    add_endpoint(home, make_endpoint("dst", host="127.0.0.1"))
    create_batch(home, "b", endpoint="src", dest_endpoint="dst",
                 users=[UserRow(2, "alice@contoso.test", "alice", "pw-A-1")], notify=["ops@contoso.test"])
    start_batch(home, "b")
    notifier = Notifier(SmtpSettings(host="127.0.0.1", port=free_port(), security="none", timeout=2))
    await Runner(home, mover=mover, notifier=notifier, poll_seconds=0.05).run(until_idle=True)
    assert "could not mail ops@contoso.test" in caplog.text
    assert notifier.sent == 0


def test_starttls_and_auth(tmp_path):
    from mailtrek.devtools.dovecot import write_self_signed_cert

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    write_self_signed_cert(cert, key)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    seen_logins: list[str] = []

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = isinstance(auth_data, LoginPassword) and auth_data.password == b"smtp-Pass-9"
        seen_logins.append(auth_data.login.decode())
        return AuthResult(success=ok)

    inbox = Inbox()
    c = Controller(inbox, hostname="127.0.0.1", port=free_port(), tls_context=ctx, require_starttls=True,
                   authenticator=authenticator, auth_required=True)
    c.start()
    try:
        good = SmtpSettings(host="127.0.0.1", port=c.port, security="starttls", user="mailer",
                            password="smtp-Pass-9", ca_file=str(cert), sender="mailtrek@contoso.test")
        send_mail(good, ["ops@contoso.test"], "hello", "body")
        assert len(inbox.messages) == 1 and seen_logins == ["mailer"]
        untrusted = SmtpSettings(host="127.0.0.1", port=c.port, security="starttls", user="mailer",
                                 password="smtp-Pass-9", timeout=5)
        with pytest.raises(ssl.SSLCertVerificationError):  # verification stays on
            send_mail(untrusted, ["ops@contoso.test"], "hello", "body")
    finally:
        c.stop()


def test_settings_from_env_and_file(tmp_path, monkeypatch):
    home = open_home(tmp_path / "home")
    assert SmtpSettings.load(home) is None
    pw = tmp_path / "pw"
    pw.write_text("file-Pass-1\n")
    (home.path / "smtp.json").write_text(
        f'{{"host": "smtp.contoso.test", "security": "ssl", "user": "u", "password_file": "{pw}"}}')
    s = SmtpSettings.load(home)
    assert (s.host, s.port, s.security, s.password) == ("smtp.contoso.test", 465, "ssl", "file-Pass-1")
    assert "file-Pass-1" not in repr(s)
    monkeypatch.setenv("MAILTREK_SMTP_HOST", "relay.test")
    monkeypatch.setenv("MAILTREK_SMTP_SECURITY", "none")
    s = SmtpSettings.load(home)
    assert (s.host, s.port) == ("relay.test", 25)
