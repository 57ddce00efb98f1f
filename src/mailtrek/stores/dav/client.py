"""The one path to a DAV server's wire: an httpx client with error translation and retries.

Every request of the DAV store goes through ``DavClient.request``. Failures become
mailtrek's error tree here (401 → AuthenticationError, TLS → CertificateError, 429/503 →
ThrottledError, 5xx/transport → TransientError); idempotent requests are retried a few
times with backoff (Retry-After honoured). The password lives only in httpx's auth
object: no message, log line or exception text carries it.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping

import httpx

from mailtrek.errors import (
    AuthenticationError,
    CertificateError,
    ConnectionFailedError,
    MailtrekError,
    StoreError,
    ThrottledError,
    TransientError,
)
from mailtrek.stores.dav.address import DavAddress
from mailtrek.stores.dav.xml import Response, parse_multistatus
from mailtrek.stores.http import http_client

log = logging.getLogger(__name__)

IDEMPOTENT = frozenset({"GET", "PROPFIND", "REPORT", "PUT", "DELETE", "OPTIONS"})
MAX_RETRIES = 4
MAX_WAIT = 60.0


def _is_certificate_problem(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        seen = seen.__cause__ or seen.__context__
    return "CERTIFICATE_VERIFY_FAILED" in str(exc)


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None  # an HTTP-date: fall back to our own backoff


class BearerAuth(httpx.Auth):
    """OAuth 2.0 Bearer tokens (RFC 6750) from ``token()``, asked for on every request
    (the provider refreshes it when near expiry); Google's DAV takes nothing else."""

    def __init__(self, token: Callable[[], Awaitable[str]]) -> None:
        self._token = token

    async def async_auth_flow(self, request: httpx.Request
                              ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        request.headers["Authorization"] = f"Bearer {await self._token()}"
        yield request


class DavClient:
    """HTTP for one DAV account. ``connections`` bounds requests in flight; ``token``
    (an async callable) logs in with Bearer tokens instead of the password."""

    def __init__(self, address: DavAddress, password: str, *, ca_file: str | None = None,
                 connections: int = 4, timeout: float = 60.0,
                 transport: httpx.AsyncBaseTransport | None = None,
                 token: Callable[[], Awaitable[str]] | None = None) -> None:
        self.address = address
        self._limit = asyncio.Semaphore(connections)
        auth: httpx.Auth = (BearerAuth(token) if token is not None
                            else httpx.BasicAuth(address.user, password))
        self._http = http_client(
            base_url=address.origin, auth=auth, ca_file=ca_file,
            tls=address.scheme == "https", timeout=timeout, transport=transport,
            max_connections=connections, headers={"User-Agent": "mailtrek"})

    async def close(self) -> None:
        await self._http.aclose()

    async def request(self, method: str, path: str, *, body: bytes | None = None,
                      headers: Mapping[str, str] | None = None,
                      ok: tuple[int, ...] = (200, 201, 204, 207)) -> httpx.Response:
        """Send one request; return the response when its status is in ``ok``.

        Other statuses the caller may want to read (412, 409, 403, 404...) are returned
        too when listed in ``ok``; everything else raises (see the module doc).
        """
        attempt = 0
        while True:
            try:
                async with self._limit:
                    resp = await self._http.request(method, path, content=body,
                                                    headers=dict(headers or {}))
                if resp.status_code in ok:
                    return resp
                raise self._translate(resp)
            except httpx.TransportError as e:
                err = self._translate_transport(e)
            except (ThrottledError, TransientError) as e:
                err = e
            # A refused connection is not retried here: the whole run is re-runnable.
            if (not isinstance(err, TransientError) or method not in IDEMPOTENT
                    or attempt >= MAX_RETRIES):
                raise err
            wait = getattr(err, "retry_after", None) or min(MAX_WAIT, 0.5 * 2 ** attempt)
            log.info("DAV %s %s: %s; retrying in %.1f s", method, path, err.message, wait)
            attempt += 1
            await asyncio.sleep(min(wait, MAX_WAIT))

    async def propfind(self, path: str, body: bytes, depth: str) -> list[Response]:
        """PROPFIND ``path`` with ``Depth``; return the multistatus responses."""
        resp = await self.request("PROPFIND", path, body=body, headers={
            "Depth": depth, "Content-Type": "application/xml; charset=utf-8"}, ok=(207,))
        return parse_multistatus(resp.content)

    async def report(self, path: str, body: bytes, depth: str = "1") -> list[Response]:
        """REPORT on ``path``; return the multistatus responses."""
        resp = await self.request("REPORT", path, body=body, headers={
            "Depth": depth, "Content-Type": "application/xml; charset=utf-8"}, ok=(207,))
        return parse_multistatus(resp.content)

    def _translate(self, resp: httpx.Response) -> MailtrekError:
        status = resp.status_code
        what = f"DAV {resp.request.method} {resp.request.url.path}: HTTP {status}"
        if status == 401:
            return AuthenticationError(
                f"the DAV server {self.address.host} refused the login of {self.address.user}",
                hint="check the user name and the password (MAILTREK_SOURCE_PASSWORD / "
                     "MAILTREK_DEST_PASSWORD); some providers need an app password")
        if status in (429, 503):
            return ThrottledError(f"{what} (throttled)",
                                  retry_after=_retry_after(resp.headers.get("Retry-After")))
        if status >= 500:
            return TransientError(what)
        if status == 403:
            return StoreError(f"{what}: access denied",
                              hint="check that this user may read/write that collection")
        if status == 507:
            return StoreError(f"{what}: the server is out of space")
        return StoreError(what)

    def _translate_transport(self, exc: httpx.TransportError) -> MailtrekError:
        host = self.address.host
        if _is_certificate_problem(exc):
            return CertificateError(f"TLS certificate of {host} not trusted",
                                    hint="pass the CA file that signed it if it is a private CA")
        if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
            return ConnectionFailedError(f"cannot connect to {host}:{self.address.port}: "
                                         f"{type(exc).__name__}")
        return TransientError(f"connection to {host} lost: {type(exc).__name__}")
