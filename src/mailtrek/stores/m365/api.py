"""A small Microsoft Graph client: one choke point that paces, authenticates and translates.

Every request goes through ``GraphClient.request``, which
- waits for a place in the mailbox's pacer slot (4 in flight, request/upload budgets),
  then for one of the app's places (``applimit``: 4 in flight per app ID over all
  mailboxes, halved on a 429 and grown back),
- adds a bearer token (fetching a fresh one once when Graph answers 401),
- retries, a bounded number of times and with a logged reason, what a retry may cure:
  429/503 throttling (after Retry-After), 5xx and dropped links for idempotent requests,
- and turns everything else into mailtrek's error tree::

    429, 503 (+ Retry-After)                -> ThrottledError
    5xx, timeouts, connection resets        -> TransientError
        ... after a non-idempotent request was sent -> InDoubtError (the item may exist)
    401 twice                               -> AuthenticationError
    403                                     -> GraphAccessDeniedError (AuthenticationError)
    MailboxNotEnabledForRESTAPI             -> MailboxUnavailableError (ConfigError)
    404                                     -> GraphNotFoundError (StoreError)
    409                                     -> GraphConflictError (StoreError)
    ErrorQuotaExceeded / 507                -> QuotaExceededError
    400, 413, 415, 422                      -> GraphRejectedError (ItemRejectedError)
    TLS verification failure                -> CertificateError

Error format: learn.microsoft.com/graph/errors; throttling: learn.microsoft.com/graph/throttling.
"""

from __future__ import annotations

import email.utils
import json
import logging
import ssl
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx

from mailtrek.errors import (
    AuthenticationError,
    CertificateError,
    ConfigError,
    ItemRejectedError,
    ProtocolError,
    QuotaExceededError,
    StoreError,
    ThrottledError,
    TransientError,
)
from mailtrek.pacer import Pacer
from mailtrek.stores.http import http_client
from mailtrek.stores.m365.applimit import AppLimiter
from mailtrek.stores.m365.auth import GRAPH_SCOPE, TokenSource
from mailtrek.stores.m365.config import TenantConfig

log = logging.getLogger(__name__)

_IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "PATCH", "OPTIONS"})
_WRITES = frozenset({"POST", "PUT", "PATCH"})


class InDoubtError(TransientError):
    """A non-idempotent request was sent but its answer was lost: it may have taken effect."""


class GraphAccessDeniedError(AuthenticationError):
    """Graph answered 403: the app lacks a permission (or RBAC scope) for this request."""

    def __init__(self, message: str, *, code: str = "", hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.code = code


class MailboxUnavailableError(ConfigError):
    """The user has no Exchange Online mailbox reachable through Graph."""


class GraphNotFoundError(StoreError):
    """The addressed user, folder or item does not exist."""

    def __init__(self, message: str, *, code: str = "", hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.code = code


class GraphConflictError(StoreError):
    """Graph answered 409 (e.g. a folder with that name already exists)."""

    def __init__(self, message: str, *, code: str = "", hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.code = code


class GraphRejectedError(ItemRejectedError):
    """Graph refused the request's content (400, 413, 415, 422); ``code`` says why."""

    def __init__(self, message: str, *, status: int, code: str = "", hint: str | None = None):
        super().__init__(message, reason=f"{code or status}: {message}", hint=hint)
        self.status = status
        self.code = code


class _TokenRefused(Exception):
    """Graph answered 401 to this token."""


MAILBOX_ADVICE = ("the user has no Exchange Online mailbox: assign a licence that includes "
                  "Exchange Online (or move the on-premises mailbox to the cloud) and wait "
                  "for provisioning")


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Return Retry-After in seconds (delta-seconds or HTTP-date), None when absent/bad."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def error_of(response: httpx.Response) -> tuple[str, str]:
    """Return Graph's (error code, message) from an error response; tolerant of any body."""
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
        return "", response.text[:200].strip()
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict):
        return str(err.get("code") or ""), str(err.get("message") or "")
    return "", str(body)[:200]


def translate_response(response: httpx.Response, *, idempotent: bool) -> Exception:
    """Turn a non-2xx Graph response into mailtrek's error tree (see module doc)."""
    status = response.status_code
    code, message = error_of(response)
    what = f"Graph {response.request.method} {response.request.url.path}: {status} {code}".strip()
    if code == "MailboxNotEnabledForRESTAPI":
        return MailboxUnavailableError(f"{what}: {message}", hint=MAILBOX_ADVICE)
    if code == "ErrorQuotaExceeded" or status == 507:
        return QuotaExceededError(f"The destination mailbox is full ({what})",
                                  hint="raise the mailbox quota or archive, then run again")
    if status == 401:
        return _TokenRefused(what)
    if status in (429, 503) or (status == 504 and idempotent):
        return ThrottledError(f"{what} (throttled)",
                              retry_after=parse_retry_after(response.headers.get("Retry-After")))
    if status >= 500:
        cls = TransientError if idempotent else InDoubtError
        return cls(f"{what}: {message}".rstrip(": "))
    if status == 403:
        return GraphAccessDeniedError(
            f"{what}: {message}", code=code,
            hint="grant the app the application permission this needs (Mail.ReadWrite, "
                 "User.Read.All) with admin consent, and check RBAC for Applications scopes")
    if status == 404:
        return GraphNotFoundError(f"{what}: {message}", code=code)
    if status == 409:
        return GraphConflictError(f"{what}: {message}", code=code)
    return GraphRejectedError(message or what, status=status, code=code)


def _is_certificate_problem(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        seen = seen.__cause__ or seen.__context__
    return "CERTIFICATE_VERIFY_FAILED" in str(exc)


def translate_transport(exc: httpx.TransportError, *, idempotent: bool, url: str) -> Exception:
    """Turn an httpx transport failure into Transient/InDoubt/Certificate errors."""
    if _is_certificate_problem(exc):
        return CertificateError(f"TLS certificate of {httpx.URL(url).host} not trusted",
                                hint="pass the CA file that signed it if it is a private CA")
    # The request never left: always safe to send again.
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
        return TransientError(f"Cannot connect to Graph: {type(exc).__name__}")
    cls = TransientError if idempotent else InDoubtError
    return cls(f"Graph connection lost: {type(exc).__name__}")


class GraphClient:
    """Send Graph requests for many mailboxes of one tenant, each paced by its mailbox.

    One instance may be shared by every store of a tenant.
    """

    def __init__(
        self,
        tenant: TenantConfig,
        *,
        tokens: TokenSource | None = None,
        pacer: Pacer | None = None,
        timeout: float = 120.0,
        max_throttle_retries: int = 10,
        max_transient_retries: int = 4,
        max_connections: int = 200,
        app_limiter: AppLimiter | None = None,
    ) -> None:
        self.tenant = tenant
        self.app_limiter = app_limiter or AppLimiter(tenant.client_id)
        self.tokens = tokens or TokenSource(tenant)
        self.pacer = pacer or Pacer()
        self.max_throttle_retries = max_throttle_retries
        self.max_transient_retries = max_transient_retries
        root = tenant.graph_url.rstrip("/")
        for suffix in ("/v1.0", "/beta"):  # accept a versioned URL too
            root = root.removesuffix(suffix)
        self.graph_root = root
        self._ca_file = str(tenant.ca_file) if tenant.ca_file else None
        self._timeout = timeout
        self._max_connections = max_connections
        # One small pool per mailbox: the pool scans all of its connections on every
        # request, so one shared pool of 20 mailboxes x 4 in flight spent most of the
        # client's CPU there (measured with py-spy); a mailbox never has more than its
        # in-flight limit (+ an upload) open anyway.
        self._pools: dict[str, httpx.AsyncClient] = {}
        self.stats = {"requests": 0, "throttled": 0, "retried": 0, "token_refreshes": 0}

    def _pool(self, mailbox: str) -> httpx.AsyncClient:
        key = mailbox.lower()
        pool = self._pools.get(key)
        if pool is None:
            size = min(self._max_connections, self.pacer.limits.max_in_flight + 2)
            pool = self._pools[key] = http_client(
                ca_file=self._ca_file, from_env=True, timeout=self._timeout,
                connect_timeout=20.0, max_connections=size)
        return pool

    async def release(self, mailbox: str) -> None:
        """Close the connections of one mailbox (its store is done); idempotent."""
        pool = self._pools.pop(mailbox.lower(), None)
        if pool is not None:
            await pool.aclose()

    async def close(self) -> None:
        """Close every connection pool and give the app's leases back; idempotent."""
        await self.app_limiter.drain()
        pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            await pool.aclose()

    def url(self, path: str, *, beta: bool = False) -> str:
        """Return the absolute URL of ``path`` under v1.0 (or beta)."""
        return f"{self.graph_root}/{'beta' if beta else 'v1.0'}/{path.lstrip('/')}"

    async def request(
        self,
        mailbox: str,
        method: str,
        path: str,
        *,
        beta: bool = False,
        json_body: Any = None,
        content: bytes | None = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        absolute: bool = False,
        authenticated: bool = True,
        idempotent: bool | None = None,
        counts_as: int = 1,
    ) -> httpx.Response:
        """Send one request for ``mailbox`` and return its 2xx response.

        ``absolute`` sends to ``path`` as given (nextLink, upload URL); ``authenticated``
        False sends no token (pre-authenticated upload URLs); ``counts_as`` is how many
        requests the service counts it as (a ``$batch``). Retries throttling and, when
        ``idempotent`` (default: by method), transient failures; raises the translated
        error when retries are used up (see module doc).
        """
        method = method.upper()
        if idempotent is None:
            idempotent = method in _IDEMPOTENT
        url = path if absolute else self.url(path, beta=beta)
        body = content if content is not None else (
            json.dumps(json_body).encode() if json_body is not None else None)
        base_headers = dict(headers or {})
        if json_body is not None:
            base_headers.setdefault("Content-Type", "application/json")
        upload = len(body) if body and method in _WRITES else 0
        throttled = transient = 0
        refreshed = False
        while True:
            token = await self.tokens.get_token(GRAPH_SCOPE) if authenticated else None
            try:
                async with (self.pacer.slot(mailbox, upload_bytes=upload, requests=counts_as),
                            self.app_limiter.slot()):
                    response = await self._send(mailbox, method, url, body, base_headers,
                                                params, token, idempotent)
                self.app_limiter.succeeded()
                return response
            except _TokenRefused as exc:
                if refreshed or token is None:
                    raise AuthenticationError(
                        "Microsoft Graph refused a freshly issued access token",
                        hint="check the app's permissions and admin consent") from exc
                refreshed = True
                self.stats["token_refreshes"] += 1
                self.tokens.invalidate(GRAPH_SCOPE, token)
                log.info("Graph refused the token for %s (expired?); fetching a new one", mailbox)
            except ThrottledError as exc:
                self.stats["throttled"] += 1
                self.app_limiter.throttled()
                throttled += 1
                if throttled > self.max_throttle_retries:
                    raise
                wait = self.pacer.backoff(mailbox, exc.retry_after)
                log.info("Graph throttled %s; pausing the mailbox %.1f s (retry %d of %d)",
                         mailbox, wait, throttled, self.max_throttle_retries)
            except InDoubtError:
                raise  # the caller looks the item up before sending it again
            except TransientError as exc:
                transient += 1
                if transient > self.max_transient_retries:
                    raise
                self.stats["retried"] += 1
                wait = self.pacer.backoff(mailbox, None)
                log.warning("%s; retrying %s in %.1f s (retry %d of %d)", exc, mailbox, wait,
                            transient, self.max_transient_retries)

    async def _send(self, mailbox: str, method: str, url: str, body: bytes | None,
                    headers: dict[str, str], params: Mapping[str, str] | None,
                    token: str | None, idempotent: bool) -> httpx.Response:
        send_headers = dict(headers)
        if token:
            send_headers["Authorization"] = f"Bearer {token}"
        self.stats["requests"] += 1
        try:
            response = await self._pool(mailbox).request(method, url, content=body,
                                                         headers=send_headers, params=params)
        except httpx.TransportError as exc:
            raise translate_transport(exc, idempotent=idempotent, url=url) from exc
        if response.is_success:
            return response
        err = translate_response(response, idempotent=idempotent)
        raise err

    async def get_json(self, mailbox: str, path: str, *, beta: bool = False,
                       params: Mapping[str, str] | None = None,
                       headers: Mapping[str, str] | None = None) -> dict[str, Any]:
        """GET ``path`` and return its JSON object."""
        response = await self.request(mailbox, "GET", path, beta=beta, params=params,
                                      headers=headers)
        return _json_object(response)

    async def pages(self, mailbox: str, path: str, *, params: Mapping[str, str] | None = None,
                    headers: Mapping[str, str] | None = None,
                    beta: bool = False) -> AsyncIterator[dict[str, Any]]:
        """Yield every item of a collection, following ``@odata.nextLink``."""
        data = await self.get_json(mailbox, path, beta=beta, params=params, headers=headers)
        while True:
            for item in data.get("value", []):
                yield item
            link = data.get("@odata.nextLink")
            if not link:
                return
            response = await self.request(mailbox, "GET", link, absolute=True, headers=headers)
            data = _json_object(response)


def _json_object(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError as exc:
        raise ProtocolError(
            f"Graph answered {response.request.url.path} with something that is not JSON"
        ) from exc
    if not isinstance(data, dict):
        raise ProtocolError(f"Graph answered {response.request.url.path} with {data!r:.80}")
    return data
