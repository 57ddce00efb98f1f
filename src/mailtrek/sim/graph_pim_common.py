"""What the calendar and contact routes share: extended properties and their ``$filter``.

Extended properties (learn.microsoft.com/graph/api/singlevaluelegacyextendedproperty-post-singlevalueextendedproperties):
a create or update body may carry ``singleValueExtendedProperties: [{id, value}]``; they
come back only through ``$expand=singleValueExtendedProperties($filter=id eq '...')``,
and items are found by them with
``$filter=singleValueExtendedProperties/Any(ep: ep/id eq '...' and ep/value eq '...')``
(learn.microsoft.com/graph/api/singlevaluelegacyextendedproperty-get: "Filtering the
string name (Name) in the id of an extended property is case-sensitive. Filtering the
value property of an extended property is case-insensitive.").
"""

from __future__ import annotations

import re
from typing import Any

from starlette.requests import Request

from mailtrek.sim.errors import GraphError

_QUOTED = r"'((?:[^']|'')*)'"
_ANY = re.compile(r"^\s*singleValueExtendedProperties/any\(\s*(\w+)\s*:\s*(\w+)/id\s+eq\s+"
                  + _QUOTED + r"(?:\s+and\s+(\w+)/value\s+eq\s+" + _QUOTED + r")?\s*\)\s*$",
                  re.IGNORECASE)
_EXPAND = re.compile(r"singleValueExtendedProperties\(\s*\$filter\s*=\s*id\s+eq\s+" + _QUOTED
                     + r"\s*\)", re.IGNORECASE)
# "String {GUID} Name X" or "String 0x3A45" (the id formats of singleValueLegacyExtendedProperty)
_PROP_ID = re.compile(r"^(String|Integer|Boolean|SystemTime|Binary|Long)\s+"
                      r"(\{[0-9a-fA-F-]{36}\}\s+(Name|Id)\s+\S.*|0x[0-9a-fA-F]{4})$")


def _unquote(text: str) -> str:
    return text.replace("''", "'")


def read_extended(body: dict[str, Any]) -> dict[str, str]:
    """The ``singleValueExtendedProperties`` of a request body; 400 for a bad id."""
    out: dict[str, str] = {}
    for p in body.get("singleValueExtendedProperties") or []:
        pid, value = p.get("id"), p.get("value")
        if not isinstance(pid, str) or not _PROP_ID.match(pid.strip()):
            raise GraphError(400, "ErrorInvalidProperty",
                             f"The extended property id '{pid}' is invalid.")
        out[pid.strip()] = "" if value is None else str(value)
    return out


def extended_filter(request: Request) -> tuple[str, str | None] | None:
    """``(property id, value or None)`` of an extended-property ``$filter``; None without one.

    Other filters are refused with 400 (the simulator implements only this one).
    """
    raw = request.query_params.get("$filter")
    if not raw:
        return None
    m = _ANY.match(raw)
    if not m or (m.group(4) and m.group(4) != m.group(1)) or m.group(2) != m.group(1):
        raise GraphError(400, "BadRequest", f"Invalid filter clause: {raw}")
    return _unquote(m.group(3)), (_unquote(m.group(5)) if m.group(5) is not None else None)


def matches(ext: dict[str, str], wanted: tuple[str, str | None] | None) -> bool:
    if wanted is None:
        return True
    pid, value = wanted
    if pid not in ext:
        return False
    return value is None or ext[pid].casefold() == value.casefold()


def expanded_ids(request: Request) -> list[str]:
    """The extended property ids named in ``$expand``."""
    return [_unquote(m.group(1)) for m in _EXPAND.finditer(request.query_params.get("$expand", ""))]


def with_extended(resource: dict[str, Any], ext: dict[str, str],
                  request: Request) -> dict[str, Any]:
    ids = expanded_ids(request)
    if ids:
        resource["singleValueExtendedProperties"] = [{"id": i, "value": ext[i]} for i in ids
                                                     if i in ext]
    return resource
