"""Which folders and messages a run selects: globs, date range, size, item count."""

from __future__ import annotations

import fnmatch
import re
from datetime import UTC, datetime

from mailtrek.errors import UsageError
from mailtrek.model import FolderInfo, MessageMeta


def folder_selected(folder: FolderInfo, include: list[str], exclude: list[str]) -> bool:
    """True when the folder matches an include glob (or none given) and no exclude glob.

    A glob also matches a folder's subfolders (``Archive`` excludes ``Archive/2019``).
    INBOX matches case-insensitively.
    """
    names = _candidates(folder.path)
    if include and not any(fnmatch.fnmatchcase(n, g) for n in names for g in include):
        return False
    return not any(fnmatch.fnmatchcase(n, g) for n in names for g in exclude)


def _candidates(path: tuple[str, ...]) -> list[str]:
    out = []
    for i in range(1, len(path) + 1):
        p = "/".join(path[:i])
        out.append(p)
        if path[0].upper() == "INBOX":
            out.append("INBOX" + p[5:])
    return out


def message_date_selected(
    meta: MessageMeta, since: datetime | None, before: datetime | None
) -> bool:
    """True when INTERNALDATE is within [since, before). Unknown dates are selected."""
    if meta.internaldate is None:
        return True
    if since is not None and meta.internaldate < since:
        return False
    return not (before is not None and meta.internaldate >= before)


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgKMG]?)(i?[bB])?\s*$")


def parse_size(text: str) -> int:
    """Parse ``35MB``, ``150M``, ``500k``, ``1048576`` into bytes (binary multiples)."""
    m = _SIZE.match(text)
    if not m:
        raise UsageError(f"cannot read size {text!r}", hint="write it like 35MB, 500k or 1048576")
    mult = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[m.group(2).lower()]
    return int(float(m.group(1)) * mult)


def parse_date(text: str) -> datetime:
    """Parse ``2024-01-31`` or an ISO-8601 datetime; naive values are taken as UTC."""
    try:
        dt = datetime.fromisoformat(text.strip())
    except ValueError as e:
        raise UsageError(f"cannot read date {text!r}", hint="use YYYY-MM-DD") from e
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)
