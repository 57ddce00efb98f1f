"""Pick the IMAP store class for a mailbox's settings: the one place it is chosen."""

from __future__ import annotations

from mailtrek.stores.imap.exchange_store import ExchangeImapStore
from mailtrek.stores.imap.store import ImapSettings, ImapStore


def imap_store(settings: ImapSettings, *, label: str = "imap") -> ImapStore:
    """An unconnected store for ``settings``; Exchange Online's IMAP gets its own class."""
    if settings.exchange:
        return ExchangeImapStore(settings, label=label)
    return ImapStore(settings, label=label)
