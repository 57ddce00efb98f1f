"""Error bodies the way Microsoft Graph and Entra ID write them."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from starlette.responses import JSONResponse


class GraphError(Exception):
    """Raised by route code; rendered by ``graph_error_response``."""

    def __init__(self, status: int, code: str, message: str,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def graph_error_body(code: str, message: str, client_request_id: str | None = None,
                     inner: dict[str, str] | None = None) -> dict[str, Any]:
    """Return Graph's JSON error object.

    Shape from learn.microsoft.com/graph/errors ("Error resource type"): ``error`` with
    ``code``, ``message`` and ``innerError`` holding ``date``, ``request-id`` and
    ``client-request-id``; ``inner`` adds fields to ``innerError`` (a 429 carries
    ``code`` and ``status``, see ``throttled_body``).
    """
    request_id = str(uuid.uuid4())
    inner_error = dict(inner or {})
    inner_error.update({
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S"),
        "request-id": request_id,
        "client-request-id": client_request_id or request_id,
    })
    return {"error": {"code": code, "message": message, "innerError": inner_error}}


def throttled_body(message: str, client_request_id: str | None = None) -> dict[str, Any]:
    """Return the body of a 429 as Graph sends it.

    learn.microsoft.com/graph/throttling, "Sample response": code ``TooManyRequests`` with
    ``innerError`` ``{"code": "429", "message": "Please retry after", "status": "429",
    ...}``. The top-level message keeps Outlook's reason ("Application is over its
    MailboxConcurrency limit.", as reported in MS Q&A 734143), which tells which limit hit.
    """
    return graph_error_body("TooManyRequests", message, client_request_id,
                            {"code": "429", "message": "Please retry after", "status": "429"})


def retry_after_value(seconds: float, fractional: bool, fraction: float = 0.0) -> str:
    """Return a Retry-After header value.

    RFC 9110 defines delta-seconds as an integer, which is what the simulator sends by
    default; Graph's throttling page shows ``Retry-After: 2.128`` (learn.microsoft.com/graph/throttling,
    "Sample response"), so ``fractional`` adds ``fraction`` (0 <= fraction < 1) and
    writes three decimals, as that sample does.
    """
    if not fractional:
        return str(max(0, round(seconds)))
    return f"{seconds + fraction:.3f}"


def graph_error_response(error: GraphError, client_request_id: str | None = None) -> JSONResponse:
    """Render a GraphError as its HTTP response."""
    return JSONResponse(
        graph_error_body(error.code, error.message, client_request_id),
        status_code=error.status,
        headers=error.headers,
    )


def aad_error_response(status: int, error: str, aadsts: int, description: str) -> JSONResponse:
    """Return an Entra ID token-endpoint error.

    Shape from learn.microsoft.com/entra/identity-platform/v2-oauth2-client-creds-grant-flow
    ("Error response"): ``error``, ``error_description`` starting with the AADSTS code,
    ``error_codes``, ``timestamp``, ``trace_id``, ``correlation_id``.
    """
    trace_id, correlation_id = str(uuid.uuid4()), str(uuid.uuid4())
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    return JSONResponse(
        {
            "error": error,
            "error_description": f"AADSTS{aadsts}: {description} Trace ID: {trace_id} "
                                 f"Correlation ID: {correlation_id} Timestamp: {now}",
            "error_codes": [aadsts],
            "timestamp": now,
            "trace_id": trace_id,
            "correlation_id": correlation_id,
        },
        status_code=status,
    )
