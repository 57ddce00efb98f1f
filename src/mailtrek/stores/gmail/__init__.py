"""Gmail and Google Workspace sources: label strategies, download quota, OAuth.

The names below are imported on first use: checking a ``--gmail-labels`` value
(``labels.check_mode``) loads no store.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mailtrek.stores.gmail.labels import Strategy, looks_like_gmail, plan_view
    from mailtrek.stores.gmail.pacing import Deferral, DownloadBudget
    from mailtrek.stores.gmail.store import GmailSource, has_gmail_extensions

_HOMES = {"Strategy": "labels", "looks_like_gmail": "labels", "plan_view": "labels",
          "Deferral": "pacing", "DownloadBudget": "pacing",
          "GmailSource": "store", "has_gmail_extensions": "store"}

__all__ = ["Deferral", "DownloadBudget", "GmailSource", "Strategy", "has_gmail_extensions",
           "looks_like_gmail", "plan_view"]


def __getattr__(name: str) -> object:
    if name in _HOMES:
        return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
