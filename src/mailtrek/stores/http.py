"""The one way mailtrek's HTTP stores (DAV, Microsoft Graph) open an httpx client.

TLS is always verified: against ``ca_file`` when given, else the default trust. Two
defaults exist, kept as they were: the DAV store trusts the system's store and ignores
the environment (``from_env=False``); the Graph client goes by httpx's defaults
(``from_env=True``: proxies and ``SSL_CERT_FILE``/``SSL_CERT_DIR`` from the environment,
else certifi's roots), like the MSAL session that fetches its tokens. HTTP/1.1 only.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping

import httpx


def tls_context(ca_file: str | None, *, from_env: bool = False) -> ssl.SSLContext | bool:
    """What httpx verifies with: ``ca_file``'s CA, else the system's trust store
    (``from_env``: ``True``, httpx's own default trust, see the module doc)."""
    if ca_file:
        return ssl.create_default_context(cafile=ca_file)
    return True if from_env else ssl.create_default_context()


def http_client(*, ca_file: str | None = None, timeout: float, connect_timeout: float | None = None,
                max_connections: int, from_env: bool = False, tls: bool = True,
                base_url: str = "", auth: httpx.Auth | None = None,
                headers: Mapping[str, str] | None = None,
                transport: httpx.AsyncBaseTransport | None = None) -> httpx.AsyncClient:
    """An httpx client verifying TLS (``tls=False`` only for a plain ``http://`` origin),
    ``timeout`` seconds per operation (``connect_timeout`` for connecting, if other) and at
    most ``max_connections`` open (all of them kept alive)."""
    return httpx.AsyncClient(
        base_url=base_url, auth=auth, headers=headers, transport=transport,
        verify=tls_context(ca_file, from_env=from_env) if tls else False,
        timeout=httpx.Timeout(timeout, connect=connect_timeout if connect_timeout is not None
                              else timeout),
        limits=httpx.Limits(max_connections=max_connections,
                            max_keepalive_connections=max_connections),
        trust_env=from_env)
