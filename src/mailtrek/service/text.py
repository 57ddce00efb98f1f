"""Reading values people typed: blanks are 'not given', option names per front end."""

from __future__ import annotations

from typing import Any


def blank(value: Any) -> Any:
    """Return None for an empty or all-space string, else ``value`` unchanged."""
    return None if isinstance(value, str) and not value.strip() else value


def label(option: str, *, cli: bool) -> str:
    """Name an option as the person who typed it sees it: ``--start-at`` or ``start at``."""
    return f"--{option}" if cli else option.replace("-", " ")
