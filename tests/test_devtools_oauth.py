"""XOAUTH2 against a private Dovecot that validates JWTs locally (no identity service)."""

from __future__ import annotations

import imaplib
import ssl
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mailtrek.devtools.dovecot import DovecotInstance, OAuthConfig, hmac_key_text

ISSUER = "https://login.mailtrek.test/tenant-0001/v2.0"
SCOPE = "https://outlook.office.com/IMAP.AccessAsUser.All"
APP_ISSUER = "https://sts.mailtrek.test/tenant-0001/"
APP_ID = "app/1"  # a '/' must be escaped in the key path
SECRET = b"test-hmac-secret-0123456789abcdef"
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
RSA_PUBLIC = RSA_KEY.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
).decode()


@pytest.fixture(scope="module")
def oauth_server() -> Iterator[DovecotInstance]:
    oauth = OAuthConfig(
        issuer=ISSUER,
        scope=SCOPE,
        keys={
            (None, "HS256", None): hmac_key_text(SECRET),
            (None, "RS256", "rsa1"): RSA_PUBLIC,
            (APP_ID, "RS256", "rsa1"): RSA_PUBLIC,
        },
        apponly_issuer=APP_ISSUER,
    )
    inst = DovecotInstance(
        Path(tempfile.mkdtemp(prefix="mt-oa-", dir="/tmp")), name="oauth", oauth=oauth
    )
    for user in ("alice@contoso.test", "bob@contoso.test", "carol@other.test"):
        inst.add_user(user, "pw-" + user.split("@")[0])
    inst.start()
    try:
        yield inst
    finally:
        inst.remove()


def _token(key: Any, alg: str, *, kid: str | None = None, **claims: Any) -> str:
    now = int(time.time())
    body = {"iss": ISSUER, "sub": "x", "exp": now + 600, "iat": now, "scope": SCOPE} | claims
    headers = {"kid": kid} if kid else None
    return jwt.encode(body, key, algorithm=alg, headers=headers)


def _xoauth2(inst: DovecotInstance, user: str, token: str) -> str:
    ctx = ssl.create_default_context(cafile=str(inst.ca_file))
    with imaplib.IMAP4_SSL("localhost", inst.ssl_port, ssl_context=ctx, timeout=10) as conn:
        sent = False

        def answer(_challenge: bytes) -> bytes:
            nonlocal sent
            if sent:  # the JSON failure challenge wants an empty reply before the NO
                return b""
            sent = True
            return f"user={user}\x01auth=Bearer {token}\x01\x01".encode()

        typ, _ = conn.authenticate("XOAUTH2", answer)
        return typ


def test_user_tokens_hs256_and_rs256(oauth_server: DovecotInstance) -> None:
    user = "alice@contoso.test"
    assert _xoauth2(oauth_server, user, _token(SECRET, "HS256", email=user)) == "OK"
    assert _xoauth2(oauth_server, user, _token(RSA_KEY, "RS256", kid="rsa1", email=user)) == "OK"


@pytest.mark.parametrize(
    "case",
    ["expired", "other_user", "wrong_issuer", "no_scope", "unknown_kid", "bad_signature"],
)
def test_bad_user_tokens_are_refused(oauth_server: DovecotInstance, case: str) -> None:
    user = "alice@contoso.test"
    claims: dict[str, Any] = {"email": user}
    key: Any = SECRET
    kid = None
    if case == "expired":
        claims["exp"] = int(time.time()) - 60
    elif case == "other_user":
        claims["email"] = "bob@contoso.test"
    elif case == "wrong_issuer":
        claims["iss"] = "https://evil.test/"
    elif case == "no_scope":
        claims["scope"] = "openid"
    elif case == "unknown_kid":
        kid = "nope"
    else:
        key = b"another-secret-entirely-000000000"
    token = _token(key, "HS256", kid=kid, **claims)
    with pytest.raises(imaplib.IMAP4.error):
        _xoauth2(oauth_server, user, token)


def test_app_only_token_opens_every_mailbox_of_its_domain(oauth_server: DovecotInstance) -> None:
    token = _token(
        RSA_KEY, "RS256", kid="rsa1", iss=APP_ISSUER, azp=APP_ID, scope="IMAP.AccessAsApp",
        roles=["IMAP.AccessAsApp"], mailbox_domain="*@contoso.test",
    )
    assert _xoauth2(oauth_server, "alice@contoso.test", token) == "OK"
    assert _xoauth2(oauth_server, "bob@contoso.test", token) == "OK"
    with pytest.raises(imaplib.IMAP4.error):
        _xoauth2(oauth_server, "carol@other.test", token)


def test_passwords_still_work_and_tokens_are_not_passwords(oauth_server: DovecotInstance) -> None:
    conn = imaplib.IMAP4(oauth_server.host, oauth_server.port, timeout=10)
    assert conn.login("alice@contoso.test", "pw-alice")[0] == "OK"
    conn.logout()
    token = _token(SECRET, "HS256", email="alice@contoso.test")
    conn = imaplib.IMAP4(oauth_server.host, oauth_server.port, timeout=10)
    with pytest.raises(imaplib.IMAP4.error):
        conn.login("alice@contoso.test", token)
    conn.shutdown()
    key_file = oauth_server.root / "oauth2-keys" / "app%2f1" / "RS256" / "rsa1"
    assert key_file.read_text() == RSA_PUBLIC
