"""The dashboard's admin pages: the audit log, and the API description that works offline.

/docs renders the OpenAPI description on the server: no CDN, no script, so it shows on a
machine without internet access (Swagger UI would load from jsdelivr).
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from mailtrek.orchestrate.audit import entries, record
from mailtrek.web.deps import COOKIE, client_of, home_of
from mailtrek.web.pages import Viewer, page

router = APIRouter(include_in_schema=False)
CHANGING = ("POST", "PUT", "PATCH", "DELETE")
METHODS = ("get", "post", "put", "patch", "delete")


@router.get("/audit")
def audit_view(request: Request, s: Viewer, target: str | None = None) -> Response:
    rows = [e.as_dict() for e in entries(home_of(request), limit=500, target=target or None)]
    return page(request, "audit.html", s, title="Audit log", rows=rows, target=target or "")


@router.get("/batches/{name}/preflight")
async def preflight_view(request: Request, name: str, s: Viewer) -> Response:
    """Check the batch's users now (as `mailtrek batch preflight`): blockers first, then counts."""
    from mailtrek.orchestrate.preflight import (
        blocker_rows,
        duration,
        finding_groups,
        preflight_batch,
        summary_rows,
    )

    report = await preflight_batch(home_of(request), name)
    return page(request, "preflight.html", s, title=f"Pre-flight {name}", batch=name, ok=report.ok,
                users=summary_rows(report), blockers=blocker_rows(report), groups=finding_groups(report),
                eta=duration(report.eta_seconds), basis=report.eta_basis)


@router.get("/docs")
def docs_view(request: Request, s: Viewer) -> HTMLResponse:
    spec = request.app.openapi()
    return page(request, "docs.html", s, title="API", info=spec.get("info", {}),
                operations=operations(spec))


def operations(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """Return the operations of an OpenAPI document, flattened for a page."""
    schemas = spec.get("components", {}).get("schemas", {})
    out = []
    for path, item in spec.get("paths", {}).items():
        for method in METHODS:
            op = item.get(method)
            if op is None:
                continue
            body = (op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema") or {})
            out.append({
                "method": method.upper(), "path": path, "summary": op.get("summary", ""),
                "description": op.get("description", ""),
                "parameters": [{"name": p["name"], "in": p["in"], "required": p.get("required", False),
                                "type": _type(p.get("schema", {}), schemas)} for p in op.get("parameters", [])],
                "body": _fields(body, schemas),
                "responses": sorted(op.get("responses", {})),
            })
    return out


def _resolve(schema: dict[str, Any], schemas: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref", "")
    return schemas.get(ref.rsplit("/", 1)[-1], {}) if ref else schema


def _type(schema: dict[str, Any], schemas: dict[str, Any]) -> str:
    if "$ref" in schema:
        return schema["$ref"].rsplit("/", 1)[-1]
    if "anyOf" in schema:
        return " | ".join(_type(s, schemas) for s in schema["anyOf"])
    if schema.get("type") == "array":
        return f"list of {_type(schema.get('items', {}), schemas)}"
    return str(schema.get("type", "any"))


def _fields(schema: dict[str, Any], schemas: dict[str, Any]) -> list[dict[str, Any]]:
    s = _resolve(schema, schemas)
    required = set(s.get("required", []))
    return [{"name": k, "type": _type(v, schemas), "required": k in required,
             "description": v.get("description", "")} for k, v in s.get("properties", {}).items()]


async def audit_web_action(request: Request, response: Response) -> None:
    """Record a changing request of the dashboard or API (actor: the web admin and address)."""
    login = request.url.path.endswith("/login")
    if request.method not in CHANGING or (response.status_code == 401 and not login):
        return  # reads, and requests without a session (nobody to name)
    route = request.scope.get("route")
    if route is None:
        return  # no such page: nothing was done
    params = request.scope.get("path_params") or {}
    target = params.get("name") or params.get("domain")
    if params.get("email"):
        target = f"{target} user {params['email']}" if target else params["email"]
    outcome = "ok" if response.status_code < 400 else f"error: HTTP {response.status_code}"
    if login:  # a form login answers 303 both ways: it worked when it set the session cookie
        opened = [c for c in response.headers.getlist("set-cookie")
                  if c.startswith(f"{COOKIE}=") and "Max-Age=0" not in c]
        outcome = "ok" if opened else "refused"
    action = f"web {request.method} {getattr(route, 'path', request.url.path)}"
    await asyncio.to_thread(record, home_of(request), f"web:admin@{client_of(request)}", action, target,
                            None, outcome)
