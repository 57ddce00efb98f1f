"""Workspace service-account XOAUTH2: signing, delegation and refresh, against a local
HTTPS token endpoint that checks the signed assertion like Google's does (no network)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import ssl
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mailtrek.devtools.dovecot import write_self_signed_cert
from mailtrek.errors import AuthenticationError, ConfigError, TransientError
from mailtrek.stores.gmail.auth import GMAIL_SCOPE, ServiceAccountTokens, load_key

DELEGATED = {"alice@example.test"}


class TokenEndpoint:
    def __init__(self, tmp: Path) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.requests: list[dict[str, Any]] = []
        self.expires_in = 3600
        cert, key = tmp / "cert.pem", tmp / "key.pem"
        write_self_signed_cert(cert, key)
        self.ca_file = str(cert)
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a: object) -> None:
                pass

            def do_POST(self) -> None:
                form = urllib.parse.parse_qs(self.rfile.read(
                    int(self.headers["Content-Length"])).decode())
                status, body = endpoint.answer(form)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}/token"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, form: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
        if form.get("grant_type") != ["urn:ietf:params:oauth:grant-type:jwt-bearer"]:
            return 400, {"error": "unsupported_grant_type"}
        try:
            claims = jwt.decode(form["assertion"][0], self.key.public_key(),
                                algorithms=["RS256"],
                                audience="https://oauth2.googleapis.com/token")  # what Google checks
        except jwt.PyJWTError as e:
            return 400, {"error": "invalid_grant", "error_description": str(e)}
        self.requests.append(claims)
        if claims.get("scope") != GMAIL_SCOPE or claims.get("sub") not in DELEGATED:
            return 401, {"error": "unauthorized_client",
                         "error_description": "Client is unauthorized to retrieve access "
                                              "tokens using this method."}
        return 200, {"access_token": f"ya29.token-{len(self.requests)}",
                     "expires_in": self.expires_in, "token_type": "Bearer"}

    def info(self) -> dict[str, Any]:
        pem = self.key.private_bytes(serialization.Encoding.PEM,
                                     serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()).decode()
        return {"type": "service_account", "project_id": "p", "private_key_id": "k1",
                "private_key": pem, "client_email": "mailtrek@p.iam.gserviceaccount.com",
                "client_id": "1234", "token_uri": self.url}


@pytest.fixture
def endpoint(tmp_path: Path) -> Iterator[TokenEndpoint]:
    ep = TokenEndpoint(tmp_path)
    yield ep
    ep.server.shutdown()
    ep.server.server_close()


def test_tokens_are_signed_per_user_cached_and_refreshed_before_expiry(
        endpoint: TokenEndpoint, tmp_path: Path) -> None:
    key_file = tmp_path / "sa.json"
    key_file.write_text(json.dumps(endpoint.info()))
    tokens = ServiceAccountTokens(load_key(key_file), ca_file=endpoint.ca_file)
    get = tokens.for_user("alice@example.test")

    async def run() -> list[str]:
        return [await get(), await get()]

    first = asyncio.run(run())
    assert first == ["ya29.token-1", "ya29.token-1"] and tokens.refreshes == 1
    [claims] = endpoint.requests
    assert claims["sub"] == "alice@example.test"
    assert claims["iss"] == "mailtrek@p.iam.gserviceaccount.com"
    # 58 minutes into a long run the token is close to expiry: refreshed, not reused.
    creds = tokens._creds["alice@example.test"]
    creds.expiry -= dt.timedelta(minutes=58)
    assert asyncio.run(get()) == "ya29.token-2" and tokens.refreshes == 2
    assert asyncio.run(get()) == "ya29.token-2" and tokens.refreshes == 2


def test_missing_delegation_names_the_admin_setting_and_leaks_no_secret(
        endpoint: TokenEndpoint) -> None:
    info = endpoint.info()
    tokens = ServiceAccountTokens(info, ca_file=endpoint.ca_file)
    with pytest.raises(AuthenticationError) as e:
        asyncio.run(tokens.token("mallory@example.test"))
    text = str(e.value)
    assert "unauthorized_client" in text and "Domain-wide delegation" in text
    assert "PRIVATE KEY" not in text and "assertion" not in text.lower()


def test_untrusted_or_unreachable_token_endpoint_is_transient(endpoint: TokenEndpoint) -> None:
    tokens = ServiceAccountTokens(endpoint.info())  # the local CA is not trusted: TLS fails
    with pytest.raises(TransientError):
        asyncio.run(tokens.token("alice@example.test"))


def test_bad_key_files_are_config_errors(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text("{oops")
    (tmp_path / "b.json").write_text(json.dumps({"type": "authorized_user"}))
    for name in ("a.json", "b.json", "missing.json"):
        with pytest.raises(ConfigError):
            load_key(tmp_path / name)


@pytest.mark.parametrize(("answer", "words"), [
    ("NO [ALERT] Application-specific password required: https://support.google.com/mail/"
     "accounts/answer/185833 (Failure)", "App passwords"),
    ("NO [WEBALERT https://accounts.google.com/signin/continue?x] Web login required.",
     "sign in once"),
    ("NO [ALERT] Your account is not enabled for IMAP use. Please visit your Gmail settings "
     "page and enable your account for IMAP access. (Failure)", "POP and IMAP access"),
    ("NO [ALERT] Too many simultaneous connections. (Failure)", "15 IMAP connections"),
    ("NO [AUTHENTICATIONFAILED] Invalid credentials (Failure)", "app password"),
])
def test_google_refusals_name_the_setting_to_change(answer: str, words: str) -> None:
    from mailtrek.orchestrate.presets import get_preset, login_advice
    from mailtrek.stores.gmail.advice import google_login_advice, is_google_host

    advice = google_login_advice(answer)
    assert advice is not None and words in advice
    assert login_advice(get_preset("google-workspace"), answer) == advice
    assert login_advice(get_preset("dovecot"), answer) is None
    assert is_google_host("imap.gmail.com") and not is_google_host("gmail.com.evil.test")
    assert google_login_advice("NO something else") is None
