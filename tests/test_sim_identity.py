"""The simulator's identity side: discovery, MSAL client credentials, token errors, expiry."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import jwt
import msal
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mailtrek.sim import SimConfig, Simulator
from mailtrek.sim.testing import fetch_token, graph_client, tls_context

GRAPH_SCOPE = ["https://graph.microsoft.com/.default"]


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    config = SimConfig(client_secrets={"locked-app": "right-secret"})
    with Simulator(config) as running:
        yield running


def _msal_session(sim: Simulator) -> requests.Session:
    # REQUESTS_CA_BUNDLE would override verify= (shared/testing.md), hence trust_env=False.
    session = requests.Session()
    session.trust_env = False
    session.verify = str(sim.ca_file)
    return session


def _client(sim: Simulator) -> httpx.Client:
    return httpx.Client(verify=tls_context(sim), trust_env=False)


def test_discovery_document_names_this_server(sim: Simulator) -> None:
    with _client(sim) as client:
        doc = client.get(f"{sim.authority('contoso.test')}/v2.0/.well-known/openid-configuration").json()
    assert doc["token_endpoint"] == f"{sim.base_url}/contoso.test/oauth2/v2.0/token"
    assert doc["issuer"] == f"{sim.base_url}/{sim.config.tenant_id}/v2.0"
    for key in ("authorization_endpoint", "jwks_uri", "token_endpoint_auth_methods_supported"):
        assert key in doc


def test_msal_gets_a_graph_token_with_a_secret(sim: Simulator) -> None:
    app = msal.ConfidentialClientApplication(
        "app-1", client_credential="anything", authority=sim.authority("contoso.test"),
        instance_discovery=False, http_client=_msal_session(sim),
    )
    result = app.acquire_token_for_client(scopes=GRAPH_SCOPE)
    assert "access_token" in result, result.get("error_description")
    claims = jwt.decode(result["access_token"], sim.jwt_public_key_pem, algorithms=["RS256"],
                        audience="https://graph.microsoft.com")
    assert claims["appid"] == claims["azp"] == "app-1"
    assert claims["tid"] == sim.config.tenant_id
    assert "Mail.ReadWrite" in claims["roles"]
    assert jwt.get_unverified_header(result["access_token"])["kid"] == sim.jwt_kid
    with graph_client(sim, result["access_token"]) as graph:
        assert graph.get("/users/alice@contoso.test").status_code == 200


def test_msal_certificate_credential_is_verified(sim: Simulator) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "cert-app")])
    now = time.time()
    import datetime as dt
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(dt.datetime.fromtimestamp(now - 60, dt.UTC))
            .not_valid_after(dt.datetime.fromtimestamp(now + 3600, dt.UTC))
            .sign(key, hashes.SHA256()))
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    thumb = cert.fingerprint(hashes.SHA1()).hex()
    sim.config.client_certificates["cert-app"] = cert_pem
    good = msal.ConfidentialClientApplication(
        "cert-app", client_credential={"private_key": key_pem, "thumbprint": thumb},
        authority=sim.authority(), instance_discovery=False, http_client=_msal_session(sim))
    assert "access_token" in good.acquire_token_for_client(scopes=GRAPH_SCOPE)

    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    other_pem = other.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()).decode()
    forged = msal.ConfidentialClientApplication(
        "cert-app", client_credential={"private_key": other_pem, "thumbprint": thumb},
        authority=sim.authority(), instance_discovery=False, http_client=_msal_session(sim))
    result = forged.acquire_token_for_client(scopes=GRAPH_SCOPE)
    assert result.get("error") == "invalid_client"
    assert "AADSTS700027" in result["error_description"]


def test_wrong_secret_gets_aadsts7000215(sim: Simulator) -> None:
    with _client(sim) as client:
        response = client.post(f"{sim.authority()}/oauth2/v2.0/token", data={
            "grant_type": "client_credentials", "client_id": "locked-app",
            "client_secret": "wrong", "scope": GRAPH_SCOPE[0]})
    assert response.status_code == 401
    body = response.json()
    assert body["error"] == "invalid_client"
    assert body["error_codes"] == [7000215]
    assert body["error_description"].startswith("AADSTS7000215:")
    assert "wrong" not in response.text
    assert fetch_token(sim, client_id="locked-app", client_secret="right-secret")


@pytest.mark.parametrize(("form", "error"), [
    ({"grant_type": "password", "client_id": "a", "client_secret": "s",
      "scope": GRAPH_SCOPE[0]}, "unsupported_grant_type"),
    ({"grant_type": "client_credentials", "client_id": "a", "client_secret": "s",
      "scope": "Mail.Read"}, "invalid_scope"),
    ({"grant_type": "client_credentials", "client_secret": "s",
      "scope": GRAPH_SCOPE[0]}, "invalid_request"),
    ({"grant_type": "client_credentials", "client_id": "a",
      "scope": GRAPH_SCOPE[0]}, "invalid_client"),
])
def test_bad_token_requests_get_aad_errors(sim: Simulator, form: dict[str, str], error: str) -> None:
    with _client(sim) as client:
        response = client.post(f"{sim.authority()}/oauth2/v2.0/token", data=form)
    assert response.status_code in (400, 401)
    assert response.json()["error"] == error


def test_outlook_token_carries_what_dovecot_checks(sim: Simulator) -> None:
    token = fetch_token(sim, resource="https://outlook.office365.com")
    claims = jwt.decode(token, sim.jwt_public_key_pem, algorithms=["RS256"],
                        audience="https://outlook.office365.com")
    assert claims["iss"] == sim.imap_oauth_issuer
    assert claims["scope"] == sim.imap_oauth_scope == "IMAP.AccessAsApp"
    assert claims["mailbox_domain"] == "*@contoso.test"
    assert len(token) < 6000
    # A token for Exchange IMAP is not a Graph token.
    with graph_client(sim, token) as graph:
        response = graph.get("/users/alice@contoso.test")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "InvalidAuthenticationToken"


def test_missing_forged_and_expired_tokens_get_401(sim: Simulator) -> None:
    with _client(sim) as client:
        url = f"{sim.graph_url}/users/alice@contoso.test/mailFolders"
        assert client.get(url).status_code == 401
        assert client.get(url, headers={"Authorization": "Bearer not.a.jwt"}).status_code == 401
    token = fetch_token(sim)
    with graph_client(sim, token) as graph:
        assert graph.get("/users/alice@contoso.test/mailFolders").status_code == 200
        sim.expire_tokens()
        response = graph.get("/users/alice@contoso.test/mailFolders")
        assert response.status_code == 401
        error = response.json()["error"]
        assert error["code"] == "InvalidAuthenticationToken"
        assert "expired" in error["message"]
        assert set(error["innerError"]) >= {"date", "request-id", "client-request-id"}
    with graph_client(sim) as fresh:
        assert fresh.get("/users/alice@contoso.test/mailFolders").status_code == 200


def test_short_token_lifetime_expires_for_real() -> None:
    # Long enough that a loaded machine still uses the token while it is valid.
    with Simulator(SimConfig(token_lifetime_s=4)) as short:
        token = fetch_token(short)
        with graph_client(short, token) as graph:
            assert graph.get("/users/alice@contoso.test").status_code == 200
            time.sleep(5.1)
            assert graph.get("/users/alice@contoso.test").status_code == 401
