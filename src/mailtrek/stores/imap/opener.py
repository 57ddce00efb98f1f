"""Registry entry of the IMAP store: build an ``ImapStore`` from an ``ImapSpec``.

Exchange Online's IMAP (``ImapSpec.exchange``, the m365+imap route) gets its own class,
``ExchangeImapStore``; :func:`imap_store` is the one place the class is chosen.
"""

from __future__ import annotations

from dataclasses import replace

from mailtrek.stores.imap.connection import ConnectParams, Credentials
from mailtrek.stores.imap.exchange_store import ExchangeImapStore
from mailtrek.stores.imap.store import ImapSettings, ImapStore
from mailtrek.stores.registry import register
from mailtrek.stores.spec import ImapSpec


def settings_of(spec: ImapSpec) -> ImapSettings:
    """Return the IMAP store's settings for ``spec``."""
    params = ConnectParams(spec.host, spec.port, spec.security, ca_file=spec.ca_file)
    if spec.timeout is not None:
        params = replace(params, timeout=spec.timeout)
    creds = Credentials(spec.user, password=spec.password, mechanism=spec.mechanism,
                        authzid=spec.authzid, token=spec.token)
    return ImapSettings(params, creds, connections=spec.connections, readonly=spec.readonly,
                        exchange=spec.exchange, disarm_read_receipts=spec.disarm_read_receipts)


def imap_store(settings: ImapSettings, *, label: str = "imap") -> ImapStore:
    """An unconnected store for ``settings``; Exchange Online's IMAP gets its own class."""
    if settings.exchange:
        return ExchangeImapStore(settings, label=label)
    return ImapStore(settings, label=label)


def open_imap(spec: ImapSpec) -> ImapStore:
    """Return an unconnected IMAP store for ``spec``."""
    return imap_store(settings_of(spec), label=spec.label)


register(ImapSpec.kind, open_imap)
