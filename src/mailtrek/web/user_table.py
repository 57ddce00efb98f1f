"""The batch page's user table for hundreds of users: filter, sort and page (pure).

Query parameters: ``q`` (part of the address or the error), ``status`` (one status),
``sort`` (a column below; ``-`` in front sorts descending) and ``page`` (from 1).
The same parameters drive the live refresh, so a filtered view stays filtered.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

PAGE_SIZE = 50
SORTS = {"email": "email", "status": "status", "items": "items_synced", "size": "bytes",
         "skipped": "items_skipped", "last_sync": "last_sync", "next_sync": "next_sync"}


@dataclass(slots=True)
class UserTable:
    """One page of a batch's users and how it was chosen."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    matching: int = 0  # users that pass the filter
    total: int = 0  # users in the batch
    page: int = 1
    pages: int = 1
    q: str = ""
    status: str = ""
    sort: str = "email"

    def query(self, **change: Any) -> str:
        """The query string of this view with ``change`` applied (``?`` included, or empty)."""
        now = {"q": self.q, "status": self.status, "sort": self.sort, "page": self.page}
        now.update(change)
        kept = {k: v for k, v in now.items()
                if v and not (k == "sort" and v == "email") and not (k == "page" and v == 1)}
        return "?" + urlencode(kept) if kept else ""


def user_table(users: list[dict[str, Any]], params: Mapping[str, str]) -> UserTable:
    """Filter, sort and cut ``users`` (``batch_document``'s rows) by ``params``."""
    q = params.get("q", "").strip()
    status = params.get("status", "").strip()
    sort = params.get("sort", "email").strip() or "email"
    key = SORTS.get(sort.lstrip("-"))
    if key is None:
        sort, key = "email", "email"
    needle = q.lower()
    rows = [u for u in users
            if (not status or u.get("status") == status)
            and (not needle or needle in str(u.get("email", "")).lower()
                 or needle in str(u.get("error") or "").lower())]
    # None sorts last either way; ties keep address order.
    rows.sort(key=lambda u: str(u.get("email", "")))
    present = [u for u in rows if u.get(key) is not None]
    absent = [u for u in rows if u.get(key) is None]
    present.sort(key=lambda u: _sortable(u[key]), reverse=sort.startswith("-"))
    rows = present + absent
    pages = max(1, -(-len(rows) // PAGE_SIZE))
    try:
        page = min(max(1, int(params.get("page", "1"))), pages)
    except ValueError:
        page = 1
    start = (page - 1) * PAGE_SIZE
    return UserTable(rows=rows[start:start + PAGE_SIZE], matching=len(rows), total=len(users),
                     page=page, pages=pages, q=q, status=status, sort=sort)


def _sortable(v: Any) -> Any:
    return v.lower() if isinstance(v, str) else v
