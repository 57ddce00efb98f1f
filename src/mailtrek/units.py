"""Numbers for people: byte sizes in binary units, labelled as such (KiB, MiB, GiB).

One function, so the dashboard, the reports and the CLI show the same figure for the
same count.
"""

from __future__ import annotations


def human_bytes(n: int | None) -> str:
    """Return ``n`` bytes as ``512 B``, ``2.3 KiB``, ``41.0 MiB`` or ``1.20 GiB`` (1 KiB = 1024 B)."""
    if not n:
        return "0 B"
    size = float(n)
    for unit in ("B", "KiB", "MiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.2f} GiB"
