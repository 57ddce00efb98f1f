"""Graph JSON batching: POST /$batch with up to 20 requests.

Follows learn.microsoft.com/graph/json-batching: each request has ``id``, ``method``,
``url`` (relative to the version root), optional ``headers``, ``body`` and ``dependsOn``;
the response holds one entry per request with ``id``, ``status``, ``headers``, ``body``;
more than 20 requests is a 400; a request whose dependency failed answers 424 Failed
Dependency; non-JSON bodies travel base64-encoded. Every inner request goes through the
gate like a direct call, so it is throttled on its own and may come back 429 inside a 200
batch. Per learn.microsoft.com/graph/throttling-limits#outlook-service-limits an unordered
batch is run against Outlook four requests at a time, and a batch with dependsOn runs in
order.
"""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import httpx
from fastapi import APIRouter, Request
from starlette.responses import JSONResponse

from mailtrek.sim.errors import GraphError, graph_error_body
from mailtrek.sim.odata import read_json
from mailtrek.sim.state import SimState

_METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE"}


def _validate(requests: Any, limit: int) -> list[dict[str, Any]]:
    if not isinstance(requests, list) or not requests:
        raise GraphError(400, "BadRequest", "The batch needs a non-empty 'requests' array.")
    if len(requests) > limit:
        raise GraphError(400, "BadRequest", f"Number of batch requests exceeds the maximum of {limit}.")
    seen: set[str] = set()
    for item in requests:
        if not isinstance(item, dict) or not item.get("id") or not item.get("url"):
            raise GraphError(400, "BadRequest", "Each batch request needs 'id', 'method' and 'url'.")
        if str(item.get("method", "")).upper() not in _METHODS:
            raise GraphError(400, "BadRequest", f"Invalid method in batch request '{item['id']}'.")
        if str(item["id"]) in seen:
            raise GraphError(400, "BadRequest", f"Duplicate batch request id '{item['id']}'.")
        for dep in item.get("dependsOn") or []:
            if str(dep) not in seen:
                raise GraphError(400, "BadRequest",
                                 f"Batch request '{item['id']}' depends on an unknown or later request '{dep}'.")
        seen.add(str(item["id"]))
    return requests


def batch_router(state: SimState) -> APIRouter:
    """Return the $batch route."""
    router = APIRouter()

    async def _run_one(client: httpx.AsyncClient, prefix: str, auth: str,
                       item: dict[str, Any]) -> dict[str, Any]:
        try:
            return await _send(client, prefix, auth, item)
        except GraphError as exc:
            return {"id": str(item["id"]), "status": exc.status, "headers": {},
                    "body": graph_error_body(exc.code, exc.message)}
        except Exception:  # an injected dropped response: the inner outcome is unknown
            return {"id": str(item["id"]), "status": 504, "headers": {},
                    "body": graph_error_body("GatewayTimeout", "The inner request timed out.")}

    async def _send(client: httpx.AsyncClient, prefix: str, auth: str,
                    item: dict[str, Any]) -> dict[str, Any]:
        headers = {str(k): str(v) for k, v in (item.get("headers") or {}).items()}
        headers["Authorization"] = auth
        content: bytes | None = None
        body = item.get("body")
        if body is not None:
            ctype = headers.get("Content-Type") or headers.get("content-type")
            if ctype is None:
                raise GraphError(400, "BadRequest", f"Batch request '{item['id']}' has a body but no Content-Type.")
            if ctype.split(";")[0].strip().lower() == "application/json":
                content = json.dumps(body).encode()
            else:
                content = str(body).encode()  # already base64 for non-JSON types
        url = prefix + "/" + str(item["url"]).lstrip("/")
        response = await client.request(str(item["method"]).upper(), url, content=content, headers=headers)
        out: dict[str, Any] = {"id": str(item["id"]), "status": response.status_code,
                               "headers": {k: v for k, v in response.headers.items()
                                           if k.lower() in ("location", "retry-after", "content-type")}}
        if response.content:
            if response.headers.get("content-type", "").startswith("application/json"):
                out["body"] = response.json()
            else:
                out["body"] = base64.b64encode(response.content).decode()
        return out

    @router.post("/$batch")
    async def batch(request: Request) -> JSONResponse:
        items = _validate((await read_json(request)).get("requests"),
                          state.config.limits.max_batch_requests)
        prefix = request.url.path.rsplit("/$batch", 1)[0]
        auth = request.headers.get("authorization", "")
        transport = httpx.ASGITransport(app=state.asgi_app)
        results: dict[str, dict[str, Any]] = {}
        async with httpx.AsyncClient(transport=transport, base_url="https://sim.internal") as client:
            if any(item.get("dependsOn") for item in items):
                for item in items:
                    failed = [d for d in item.get("dependsOn") or []
                              if results[str(d)]["status"] >= 400]
                    if failed:
                        results[str(item["id"])] = {
                            "id": str(item["id"]), "status": 424, "headers": {},
                            "body": graph_error_body("FailedDependency", "Failed Dependency")}
                        continue
                    results[str(item["id"])] = await _run_one(client, prefix, auth, item)
            else:
                slots = asyncio.Semaphore(4)

                async def bounded(item: dict[str, Any]) -> None:
                    async with slots:
                        results[str(item["id"])] = await _run_one(client, prefix, auth, item)

                await asyncio.gather(*(bounded(item) for item in items))
        return JSONResponse({"responses": [results[str(item["id"])] for item in items]})

    return router
