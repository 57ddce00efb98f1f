"""Simulator tokens for outlook.office365.com are accepted by a real Dovecot (XOAUTH2).

Dovecot validates the JWT locally with the simulator's public key, issuer and scope, the
way shared/testing.md ("XOAUTH2 against a real IMAP server") describes; one app-only token
opens every mailbox of the domain, like Exchange's IMAP.AccessAsApp.
"""

from __future__ import annotations

import imaplib
import shutil
import ssl
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailtrek.sim import SimConfig, Simulator, UserSpec
from mailtrek.sim.testing import fetch_token

pytestmark = pytest.mark.skipif(shutil.which("dovecot") is None, reason="dovecot not installed")

CLIENT_ID = "imap-app"
OUTLOOK = "https://outlook.office365.com"


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    users = [UserSpec("dave@contoso.test"), UserSpec("erin@contoso.test")]
    with Simulator(SimConfig(users=users)) as running:
        yield running


@pytest.fixture(scope="module")
def dovecot(sim: Simulator) -> Iterator[object]:
    from mailtrek.devtools.dovecot import DovecotInstance, OAuthConfig

    oauth = OAuthConfig(
        # The per-user passdb is not used here; an issuer nobody signs for keeps it inert.
        issuer="https://unused.invalid/", scope="unused",
        keys={(sim.token_azp(CLIENT_ID), sim.jwt_algorithm, sim.jwt_kid): sim.jwt_public_key_pem},
        apponly_issuer=sim.imap_oauth_issuer, apponly_scope=sim.imap_oauth_scope,
        apponly_claim=sim.imap_oauth_username_claim,
    )
    root = Path(tempfile.mkdtemp(prefix="dvsim-"))
    instance = DovecotInstance(root, name="sim-xoauth2", oauth=oauth)
    for user in ("dave@contoso.test", "erin@contoso.test", "zoe@other.test"):
        instance.add_user(user, "unused-password-" + user.split("@")[0])
    instance.start()
    try:
        yield instance
    finally:
        instance.remove()


def _login(dovecot: object, user: str, token: str) -> str:
    context = ssl.create_default_context(cafile=str(dovecot.ca_file))  # type: ignore[attr-defined]
    with imaplib.IMAP4_SSL("127.0.0.1", dovecot.ssl_port, ssl_context=context) as imap:  # type: ignore[attr-defined]
        sent = False

        def answer(_challenge: bytes) -> bytes:
            nonlocal sent
            if sent:  # Dovecot's JSON failure challenge: reply empty to get the NO
                return b""
            sent = True
            return f"user={user}\x01auth=Bearer {token}\x01\x01".encode()

        typ, _ = imap.authenticate("XOAUTH2", answer)
        status, _data = imap.select("INBOX")
        assert status == "OK"
        return typ


def test_one_app_token_opens_two_mailboxes_of_the_domain(sim: Simulator, dovecot: object) -> None:
    token = fetch_token(sim, client_id=CLIENT_ID, resource=OUTLOOK)
    assert _login(dovecot, "dave@contoso.test", token) == "OK"
    assert _login(dovecot, "erin@contoso.test", token) == "OK"
    with pytest.raises(imaplib.IMAP4.error):
        _login(dovecot, "zoe@other.test", token)


def test_expired_and_graph_tokens_are_refused(sim: Simulator, dovecot: object) -> None:
    lifetime = sim.config.token_lifetime_s
    sim.config.token_lifetime_s = -120
    try:
        expired = fetch_token(sim, client_id=CLIENT_ID, resource=OUTLOOK)
    finally:
        sim.config.token_lifetime_s = lifetime
    with pytest.raises(imaplib.IMAP4.error):
        _login(dovecot, "dave@contoso.test", expired)
    graph_token = fetch_token(sim, client_id=CLIENT_ID)  # no scope claim, other audience
    with pytest.raises(imaplib.IMAP4.error):
        _login(dovecot, "dave@contoso.test", graph_token)
