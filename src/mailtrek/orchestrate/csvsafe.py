"""CSV cells that a spreadsheet shows as text, never runs as a formula.

Subjects, folder names and server errors come from anyone who can send mail or run a
server. A cell starting with ``=``, ``+``, ``-``, ``@``, TAB or CR is a formula to Excel,
LibreOffice and Google Sheets (``=HYPERLINK(...)``, ``@SUM(...)``): such a text cell gets
a leading apostrophe, the OWASP remedy, which spreadsheets hide and keep the text as is.
Numbers are left alone.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from typing import Any

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> Any:
    """Return ``value``, with a text that a spreadsheet would run as a formula disarmed."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def render_rows(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """Return a CSV document: ``header``, then ``rows`` (None as empty), every cell safe."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(header)
    for row in rows:
        w.writerow([safe_cell("" if v is None else v) for v in row])
    return out.getvalue()
