"""OData query options shared by Graph list routes: $select, $top, $skip, $count, next links.

Paging follows learn.microsoft.com/graph/paging: a page carries ``@odata.nextLink`` (a full
URL, used as is by the client) until the last page.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request

from mailtrek.sim.errors import GraphError

# Properties Graph returns even when $select leaves them out.
_ALWAYS = ("id", "@odata.etag", "@odata.type")


def expanded(request: Request) -> set[str]:
    """Return the navigation properties named by ``$expand`` (options in parentheses dropped)."""
    raw = request.query_params.get("$expand", "")
    names, depth, current = set(), 0, ""
    for char in raw + ",":
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "," and depth == 0:
            if current.strip():
                names.add(current.strip())
            current = ""
        elif depth == 0:
            current += char
    return names


def select(resource: dict[str, Any], request: Request) -> dict[str, Any]:
    """Return ``resource`` reduced to the ``$select`` list, if the request has one.

    Properties named by ``$expand`` stay: OData returns expanded navigation properties in
    addition to the selected structural ones (learn.microsoft.com/graph/query-parameters).
    """
    raw = request.query_params.get("$select")
    if not raw:
        return resource
    wanted = {name.strip() for name in raw.split(",") if name.strip()} | expanded(request)
    return {k: v for k, v in resource.items() if k in wanted or k in _ALWAYS}


def _int_option(request: Request, name: str, default: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise GraphError(400, "BadRequest", f"Invalid value '{raw}' for query option {name}.") from exc
    if value < 0:
        raise GraphError(400, "BadRequest", f"Invalid value '{raw}' for query option {name}.")
    return value


def page(items: list[dict[str, Any]], request: Request, base_url: str, default_top: int,
         max_top: int = 1000, context: str | None = None) -> dict[str, Any]:
    """Return one page of ``items`` (already rendered) as a Graph collection response."""
    top = min(_int_option(request, "$top", default_top), max_top) or default_top
    skip = _int_option(request, "$skip", 0)
    body: dict[str, Any] = {}
    if context:
        body["@odata.context"] = context
    if request.query_params.get("$count", "").lower() == "true":
        # "$count=true" adds the total number of items, over all pages
        # (learn.microsoft.com/graph/query-parameters#count-parameter).
        body["@odata.count"] = len(items)
    body["value"] = [select(item, request) for item in items[skip: skip + top]]
    if skip + top < len(items):
        params = dict(request.query_params)
        params["$top"] = str(top)
        params["$skip"] = str(skip + top)
        body["@odata.nextLink"] = f"{base_url}{request.url.path}?{urlencode(params)}"
    return body


async def read_json(request: Request) -> dict[str, Any]:
    """Return the JSON object of the request body, or raise a 400 GraphError."""
    try:
        body = await request.json()
    except ValueError as exc:
        raise GraphError(400, "BadRequest", "Unable to read JSON request payload. "
                         "Please ensure Content-Type header is set and payload is of valid JSON format.") from exc
    if not isinstance(body, dict):
        raise GraphError(400, "BadRequest", "The request body must be a JSON object.")
    return body
