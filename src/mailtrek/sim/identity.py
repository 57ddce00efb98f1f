"""Entra ID endpoints: OpenID discovery, JWKS and the client-credentials token endpoint.

Discovery document fields follow learn.microsoft.com/entra/identity-platform/v2-protocols-oidc
("Find your app's OpenID configuration document URI", "Sample response"). The token
endpoint implements the client-credentials grant with a shared secret or a certificate
assertion (learn.microsoft.com/entra/identity-platform/v2-oauth2-client-creds-grant-flow;
assertion claims from learn.microsoft.com/entra/identity-platform/certificate-credentials).
"""

from __future__ import annotations

import hashlib
import re
import time
import uuid
from typing import Any
from urllib.parse import parse_qsl

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response

from mailtrek.sim.config import GRAPH_RESOURCE, OUTLOOK_RESOURCE
from mailtrek.sim.errors import aad_error_response
from mailtrek.sim.state import SimState

_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
# "Office 365 Exchange Online" is also addressed by its app-id URI in scopes; both map here.
_RESOURCES = {
    GRAPH_RESOURCE: GRAPH_RESOURCE,
    OUTLOOK_RESOURCE: OUTLOOK_RESOURCE,
    "https://outlook.office.com": OUTLOOK_RESOURCE,
    "https://ps.outlook.com": OUTLOOK_RESOURCE,
}


def tenant_id(state: SimState, tenant: str) -> str:
    """Map the tenant path segment (GUID, domain, 'organizations') to the tenant GUID."""
    return tenant.lower() if _GUID.match(tenant) else state.config.tenant_id


def discovery_document(state: SimState, tenant: str) -> dict[str, object]:
    """Return the v2.0 OpenID configuration of ``tenant`` on this simulator."""
    tid = tenant_id(state, tenant)
    base = f"{state.base_url}/{tid}"
    return {
        "token_endpoint": f"{state.base_url}/{tenant}/oauth2/v2.0/token",
        "token_endpoint_auth_methods_supported": [
            "client_secret_post", "private_key_jwt", "client_secret_basic"],
        "jwks_uri": f"{state.base_url}/{tenant}/discovery/v2.0/keys",
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "issuer": f"{base}/v2.0",
        "request_uri_parameter_supported": False,
        "userinfo_endpoint": f"{state.base_url}/oidc/userinfo",
        "authorization_endpoint": f"{state.base_url}/{tenant}/oauth2/v2.0/authorize",
        "device_authorization_endpoint": f"{state.base_url}/{tenant}/oauth2/v2.0/devicecode",
        "http_logout_supported": True,
        "frontchannel_logout_supported": True,
        "end_session_endpoint": f"{state.base_url}/{tenant}/oauth2/v2.0/logout",
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nbf", "tid", "roles"],
        "kerberos_endpoint": f"{state.base_url}/{tenant}/kerberos",
        "tenant_region_scope": "EU",
        "cloud_instance_name": "mailtrek.test",
        "cloud_graph_host_name": "graph.mailtrek.test",
        "msgraph_host": "graph.mailtrek.test",
    }


def _resource_of(scope: str) -> str | None:
    """Return the resource of a client-credentials scope '{resource}/.default', else None."""
    scopes = scope.split()
    if len(scopes) != 1 or not scopes[0].endswith("/.default"):
        return None
    return _RESOURCES.get(scopes[0][: -len("/.default")].rstrip("/"))


def _check_assertion(state: SimState, client_id: str, assertion: str, audience: str) -> str | None:
    """Return why a client assertion is refused, or None when it is acceptable.

    Without a registered certificate the signature cannot be checked, so only the claims
    are (aud = token endpoint, iss = sub = client id, not expired).
    """
    try:
        header = jwt.get_unverified_header(assertion)
        claims = jwt.decode(assertion, options={"verify_signature": False})
    except jwt.PyJWTError:
        return "AADSTS50027: JWT token is invalid or malformed."
    if claims.get("iss") != client_id or claims.get("sub") != client_id:
        return "AADSTS700023: Client assertion audience claim does not match."
    if claims.get("aud") != audience:
        return "AADSTS700212: No matching federated identity record found for presented assertion audience."
    if int(claims.get("exp", 0)) < time.time():
        return "AADSTS700024: Client assertion is not within its valid time range."
    pem = state.config.client_certificates.get(client_id)
    if pem is None:
        return None
    key_pem = pem.encode()
    public_key: Any
    if b"BEGIN CERTIFICATE" in key_pem:
        cert = x509.load_pem_x509_certificate(key_pem)
        thumbprints = {jwt.utils.base64url_encode(hashlib.sha1(
            cert.public_bytes(serialization.Encoding.DER)).digest()).decode()}
        # MSAL pads x5t with '='; compare without padding.
        if str(header.get("x5t", "")).rstrip("=") not in thumbprints:
            return "AADSTS700027: The certificate with identifier used to sign the client assertion is not registered on application."
        public_key = cert.public_key()
    else:
        public_key = serialization.load_pem_public_key(key_pem)
    try:
        jwt.decode(assertion, public_key, algorithms=["RS256", "PS256"], audience=audience)
    except jwt.PyJWTError:
        return "AADSTS700027: Client assertion failed signature validation."
    return None


def identity_router(state: SimState) -> APIRouter:
    """Return the routes of the identity endpoints."""
    router = APIRouter()

    @router.get("/{tenant}/v2.0/.well-known/openid-configuration")
    async def openid_configuration(tenant: str) -> JSONResponse:
        return JSONResponse(discovery_document(state, tenant))

    @router.get("/{tenant}/discovery/v2.0/keys")
    async def keys(tenant: str) -> JSONResponse:
        return JSONResponse(state.tokens.jwks())

    @router.post("/{tenant}/oauth2/v2.0/token")
    async def token(tenant: str, request: Request) -> Response:
        with state.lock:
            state.token_requests += 1
        # The form is application/x-www-form-urlencoded; parsed here to avoid python-multipart.
        field = dict(parse_qsl((await request.body()).decode("utf-8", "replace"),
                               keep_blank_values=True))
        client_id = field.get("client_id", "")
        grant = field.get("grant_type", "")
        if grant != "client_credentials":
            return aad_error_response(400, "unsupported_grant_type", 70003,
                                      "The app requested an unsupported grant type.")
        if not client_id:
            return aad_error_response(400, "invalid_request", 900144,
                                      "The request body must contain the following parameter: 'client_id'.")
        resource = _resource_of(field.get("scope", ""))
        if resource is None:
            return aad_error_response(
                400, "invalid_scope", 1002012,
                "The provided value for scope is not valid. Client credential flows must have a "
                "scope value with /.default suffixed to the resource identifier (application ID URI).")
        config = state.config
        if config.registered_apps_only and client_id not in config.client_secrets \
                and client_id not in config.client_certificates:
            # Entra's answer for an unknown client id (AADSTS700016, listed in
            # learn.microsoft.com/entra/identity-platform/reference-error-codes).
            return aad_error_response(
                400, "unauthorized_client", 700016,
                f"Application with identifier '{client_id}' was not found in the directory "
                f"'{tenant}'. This can happen if the application has not been installed by "
                "the administrator of the tenant or consented to by any user in the tenant.")
        endpoint = f"{state.base_url}/{tenant}/oauth2/v2.0/token"
        if "client_assertion" in field:
            if field.get("client_assertion_type") != _ASSERTION_TYPE:
                return aad_error_response(400, "invalid_request", 90001,
                                          "Invalid client_assertion_type.")
            refusal = _check_assertion(state, client_id, field["client_assertion"], endpoint)
            if refusal:
                code = int(refusal.split(":")[0][6:])
                return aad_error_response(401, "invalid_client", code, refusal.split(": ", 1)[1])
        elif "client_secret" in field:
            expected = config.client_secrets.get(client_id)
            unregistered = expected is None and config.registered_apps_only
            if unregistered or (expected is not None and field["client_secret"] != expected):
                return aad_error_response(
                    401, "invalid_client", 7000215,
                    f"Invalid client secret provided. Ensure the secret being sent in the request "
                    f"is the client secret value, not the client secret ID, for a secret added to "
                    f"app '{client_id}'.")
        else:
            return aad_error_response(
                401, "invalid_client", 7000218,
                "The request body must contain the following parameter: 'client_assertion' or "
                "'client_secret'.")
        issued = state.tokens.issue(tenant_id(state, tenant), client_id, resource)
        return JSONResponse({
            "token_type": "Bearer",
            "expires_in": issued.expires_in,
            "ext_expires_in": issued.expires_in,
            "access_token": issued.access_token,
        }, headers={"Cache-Control": "no-store", "Pragma": "no-cache",
                    "x-ms-request-id": str(uuid.uuid4())})

    return router
