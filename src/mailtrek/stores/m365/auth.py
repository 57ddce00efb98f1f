"""App-only tokens for Microsoft 365 through MSAL (client credentials).

``TokenSource.get_token(scope)`` returns a bearer token for ``GRAPH_SCOPE`` or
``OUTLOOK_SCOPE`` (IMAP XOAUTH2), cached and renewed ``REFRESH_MARGIN`` seconds before it
expires, so long runs never send an expired token. ``invalidate`` drops a token the
service refused (401) so the next call fetches a fresh one.

MSAL is synchronous (``requests``); calls run in a worker thread. When a CA file is
given, MSAL gets its own ``requests.Session`` with ``trust_env=False`` because
``REQUESTS_CA_BUNDLE`` would otherwise override the session's ``verify``.

Entra's AADSTS error codes become AuthenticationError/ConfigError with plain advice.
The client secret never appears in any message.
"""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import Any

import msal
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from mailtrek.errors import (
    AuthenticationError,
    CertificateError,
    ConfigError,
    ConnectionFailedError,
)
from mailtrek.stores.m365.config import ENV_CLIENT_ID, ENV_CLIENT_SECRET, TenantConfig

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
OUTLOOK_SCOPE = "https://outlook.office365.com/.default"
REFRESH_MARGIN = 300.0  # renew tokens this many seconds before they expire

# AADSTS code -> (error class, message, advice). Codes: learn.microsoft.com/entra/identity-platform/reference-error-codes
_AADSTS_ADVICE: dict[int, tuple[type[Exception], str, str]] = {
    7000215: (AuthenticationError, "Microsoft Entra refused the client secret",
              f"put the secret's Value (not its Secret ID) in {ENV_CLIENT_SECRET}"),
    7000222: (AuthenticationError, "The app's client secret has expired",
              "create a new client secret under Certificates & secrets and use it"),
    700016: (ConfigError, "The app (client id) was not found in this tenant",
             f"check {ENV_CLIENT_ID} and that an admin consented the app in this tenant"),
    90002: (ConfigError, "The tenant was not found",
            "check the tenant id (a GUID or a verified domain such as contoso.onmicrosoft.com)"),
    900023: (ConfigError, "The tenant id is not valid",
             "use the tenant's GUID or a verified domain"),
    700027: (AuthenticationError, "Microsoft Entra refused the certificate",
             "upload this certificate (public part) to the app registration"),
    700024: (AuthenticationError, "The client assertion is not within its valid time range",
             "check this machine's clock"),
    7000112: (AuthenticationError, "The app is disabled in this tenant",
              "enable the enterprise application in Microsoft Entra"),
    1002012: (ConfigError, "The requested scope is not valid", "this is a bug in mailtrek"),
    70011: (ConfigError, "The requested scope is not valid", "this is a bug in mailtrek"),
    65001: (AuthenticationError, "The app has not been consented in this tenant",
            "grant admin consent to the app's application permissions"),
}
_AADSTS_CODE = re.compile(r"AADSTS(\d+)")


def load_certificate_credential(cert_path: Path, key_path: Path | None = None,
                                passphrase: str | None = None) -> dict[str, str]:
    """Return MSAL's certificate credential: PEM private key + SHA-1 thumbprint of the cert.

    ``cert_path`` holds the certificate (and the key unless ``key_path`` is given).
    Raises ConfigError when either part is missing or unreadable.
    """
    try:
        cert_pem = Path(cert_path).read_bytes()
        key_pem = Path(key_path).read_bytes() if key_path else cert_pem
    except OSError as exc:
        raise ConfigError(f"Cannot read the certificate file: {exc.strerror}: {exc.filename}") from exc
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError as exc:
        raise ConfigError(f"No PEM certificate found in {cert_path}",
                          hint="convert a .pfx with: openssl pkcs12 -in f.pfx -out f.pem -nodes"
                          ) from exc
    key_block = re.search(rb"-----BEGIN ([A-Z ]*)PRIVATE KEY-----.*?-----END \1PRIVATE KEY-----",
                          key_pem, re.S)
    if key_block is None:
        raise ConfigError(f"No PEM private key found in {key_path or cert_path}")
    try:
        serialization.load_pem_private_key(
            key_block.group(0), passphrase.encode() if passphrase else None)
    except (ValueError, TypeError) as exc:
        raise ConfigError("The certificate's private key cannot be read",
                          hint="check the passphrase") from exc
    credential = {
        "private_key": key_block.group(0).decode(),
        "thumbprint": cert.fingerprint(hashes.SHA1()).hex().upper(),  # SHA-1: Entra's x5t
    }
    if passphrase:
        credential["passphrase"] = passphrase
    return credential


def _http_session(ca_file: Path | None) -> requests.Session | None:
    """Return a requests session that trusts exactly ``ca_file`` (None: MSAL's default)."""
    if ca_file is None:
        return None
    session = requests.Session()
    session.trust_env = False  # REQUESTS_CA_BUNDLE would replace verify= otherwise
    session.verify = str(ca_file)
    return session


def _redact(text: str, secret: str | None) -> str:
    return text.replace(secret, "***") if secret else text


class TokenSource:
    """Hand out app-only bearer tokens for one tenant; safe for many concurrent tasks."""

    def __init__(self, tenant: TenantConfig, *, clock: Any = time.time) -> None:
        self.tenant = tenant
        self._clock = clock
        self._app: msal.ConfidentialClientApplication | None = None
        self._app_lock = asyncio.Lock()
        self._locks: dict[str, asyncio.Lock] = {}
        self._tokens: dict[str, tuple[str, float]] = {}  # scope -> (token, expires_at)
        self.fetches = 0  # tokens actually requested from Entra (tests, diagnostics)

    async def get_token(self, scope: str = GRAPH_SCOPE) -> str:
        """Return a token for ``scope`` valid for at least REFRESH_MARGIN seconds.

        Raises AuthenticationError/ConfigError with advice, ConnectionFailedError when
        the identity endpoint cannot be reached.
        """
        cached = self._tokens.get(scope)
        if cached and cached[1] - self._clock() > REFRESH_MARGIN:
            return cached[0]
        lock = self._locks.setdefault(scope, asyncio.Lock())
        async with lock:
            cached = self._tokens.get(scope)
            if cached and cached[1] - self._clock() > REFRESH_MARGIN:
                return cached[0]
            app = await self._application()
            result = await asyncio.to_thread(self._acquire, app, scope)
            token = result["access_token"]
            self._tokens[scope] = (token, self._clock() + float(result.get("expires_in", 0)))
            return token

    def invalidate(self, scope: str, token: str) -> None:
        """Forget ``token`` (the service refused it) so the next get_token fetches anew."""
        cached = self._tokens.get(scope)
        if cached and cached[0] == token:
            del self._tokens[scope]
        if self._app is not None:
            cache = self._app.token_cache
            for item in list(cache.search(msal.TokenCache.CredentialType.ACCESS_TOKEN)):
                if item.get("secret") == token:
                    cache.remove_at(item)

    async def _application(self) -> msal.ConfidentialClientApplication:
        async with self._app_lock:
            if self._app is None:
                self._app = await asyncio.to_thread(self._build_application)
            return self._app

    def _build_application(self) -> msal.ConfidentialClientApplication:
        t = self.tenant
        credential: str | dict[str, str]
        if t.cert_path is not None:
            credential = load_certificate_credential(t.cert_path, t.cert_key_path,
                                                     t.cert_passphrase)
        else:
            credential = t.client_secret or ""
        kwargs: dict[str, Any] = {}
        session = _http_session(t.ca_file)
        if session is not None:
            kwargs["http_client"] = session
        if not t.is_microsoft_authority:
            kwargs["instance_discovery"] = False  # would ask login.microsoftonline.com
        try:
            # MSAL fetches the authority's OpenID configuration right here.
            return msal.ConfidentialClientApplication(
                t.client_id, client_credential=credential, authority=t.authority_url,
                token_cache=msal.TokenCache(), **kwargs)
        except requests.exceptions.SSLError as exc:
            raise CertificateError(
                f"TLS certificate of {t.authority_url} not trusted",
                hint="pass the CA file that signed it (--ca-file) if it is a private CA",
            ) from exc
        except requests.exceptions.RequestException as exc:
            raise ConnectionFailedError(
                f"Cannot reach the identity endpoint {t.authority_url}: {type(exc).__name__}"
            ) from exc
        except ValueError as exc:
            raise ConfigError(
                f"The tenant or authority {t.authority_url} is not known to Microsoft Entra",
                hint="check the tenant id and --m365-authority",
            ) from exc

    def _acquire(self, app: msal.ConfidentialClientApplication, scope: str) -> dict[str, Any]:
        self.fetches += 1
        try:
            result = app.acquire_token_for_client(scopes=[scope])
        except requests.exceptions.SSLError as exc:
            raise CertificateError("TLS certificate of the token endpoint not trusted") from exc
        except requests.exceptions.RequestException as exc:
            raise ConnectionFailedError(
                f"Cannot reach the token endpoint: {type(exc).__name__}") from exc
        if "access_token" in result:
            return result
        raise self._error_from(result)

    def _error_from(self, result: dict[str, Any]) -> Exception:
        """Turn an MSAL error answer into a mailtrek error with plain advice."""
        secret = self.tenant.client_secret
        description = _redact(str(result.get("error_description", "")), secret)
        codes = [int(c) for c in result.get("error_codes") or [] if str(c).isdigit()]
        codes += [int(c) for c in _AADSTS_CODE.findall(description)]
        for code in codes:
            if code in _AADSTS_ADVICE:
                cls, message, advice = _AADSTS_ADVICE[code]
                return cls(f"{message} (AADSTS{code})", hint=advice)  # type: ignore[call-arg]
        error = _redact(str(result.get("error", "unknown_error")), secret)
        first_line = description.splitlines()[0] if description else ""
        cls2 = ConfigError if error in ("invalid_request", "invalid_scope") else AuthenticationError
        return cls2(f"Microsoft Entra refused the token request: {error} {first_line}".strip(),
                    hint="check the tenant id, client id and credential of the app")
