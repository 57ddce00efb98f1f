"""Put a Gmail view in front of a connected IMAP source, when and how the user asked."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

from mailtrek.stores.gmail.labels import MODES, Strategy, check_mode, looks_like_gmail
from mailtrek.stores.gmail.pacing import DownloadBudget
from mailtrek.stores.gmail.store import GmailSource, has_gmail_extensions
from mailtrek.stores.imap.store import ImapStore

log = logging.getLogger("mailtrek.gmail")

__all__ = ["MODES", "check_mode", "gmail_view"]


async def gmail_view(
    source: Any,
    mode: str,
    *,
    done: Any = None,
    atom_keywords: bool = False,
    quota_dir: Path | None = None,
) -> Any:
    """Return ``source`` itself or a GmailSource over it, per ``mode``.

    ``source`` must be connected. ``auto`` wraps when the server advertises X-GM-EXT-1
    or has a ``[Gmail]/All Mail`` (``\\All``) folder, with the default strategy
    (folders+categories). The daily download budget applies where the server is real
    Gmail (X-GM-EXT-1); its ledger lives in ``quota_dir`` (one file per mailbox).
    """
    check_mode(mode)
    if mode == "off" or not isinstance(source, ImapStore):
        return source
    real_gmail = has_gmail_extensions(source)
    if mode == "auto":
        if not (real_gmail or looks_like_gmail(await source.list_folders())):
            return source
        strategy = Strategy.FOLDERS_CATEGORIES
    else:
        strategy = Strategy(mode)
    budget = None
    if real_gmail:
        who = f"{source.settings.params.host}/{source.settings.credentials.user}"
        ledger = None
        if quota_dir is not None:
            ledger = quota_dir / (hashlib.sha256(who.encode()).hexdigest()[:24] + ".json")
        budget = DownloadBudget(ledger=ledger)
    log.info("%s: Gmail labels as %s", source.label, strategy.value)
    return GmailSource(source, strategy, budget=budget, done=done,
                       imap_safe_keywords=atom_keywords)
