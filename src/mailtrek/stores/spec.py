"""What it takes to open one store, as a value: the specs the registry opens.

An address (``imaps://…``, ``m365://…``, ``dav+https://…``; :mod:`mailtrek.stores.url`)
and a stored endpoint or tenant (``orchestrate.specs``) both end as one of these frozen
dataclasses, so the same server reached either way gives an equal spec, and
:func:`mailtrek.stores.registry.open_store` is the one place stores are built.

Secrets (passwords, token callables, the tenant's secret inside ``TenantConfig``) stay out
of ``repr``; token callables and shared clients are also left out of equality, which
compares where and as whom a store logs in.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Generic, TypeVar

# The store classes (DavStore, ImapStore, GraphStore, GraphPimStore, MemoryStore) are named in the specs'
# bases as strings, for type checkers only.
if TYPE_CHECKING:
    from mailtrek.stores.dav.address import DavAddress
    from mailtrek.stores.dav.store import DavStore  # noqa: F401
    from mailtrek.stores.imap.store import ImapStore  # noqa: F401
    from mailtrek.stores.m365.api import GraphClient
    from mailtrek.stores.m365.config import TenantConfig
    from mailtrek.stores.m365.dates import ProfileMemory
    from mailtrek.stores.m365.graph import GraphOptions, GraphStore  # noqa: F401
    from mailtrek.stores.m365.pim_store import GraphPimStore  # noqa: F401
    from mailtrek.stores.memory import MemoryStore  # noqa: F401

TokenFn = Callable[[], Awaitable[str]]
S = TypeVar("S", covariant=True)  # the store class a spec opens as


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreSpec(Generic[S]):
    """Common base: ``kind`` names the registry entry that opens the spec; ``S`` the store."""

    kind: ClassVar[str] = ""
    label: str = field(default="store", compare=False)  # names the store in logs


@dataclass(frozen=True, slots=True, kw_only=True)
class ImapSpec(StoreSpec["ImapStore"]):
    """One mailbox on an IMAP server (Dovecot, Gmail, Exchange Online over IMAP…).

    ``mechanism`` is ``login``, ``plain``, ``xoauth2`` or ``oauthbearer``; ``authzid`` opens
    that mailbox with an admin's credentials (SASL PLAIN); ``token`` gives a fresh access
    token for the OAuth mechanisms. ``exchange`` selects Exchange Online's IMAP handling.
    """

    kind: ClassVar[str] = "imap"
    host: str
    port: int
    security: str = "ssl"  # ssl, starttls or none
    user: str
    password: str | None = field(default=None, repr=False)
    mechanism: str = "login"
    authzid: str | None = None
    token: TokenFn | None = field(default=None, repr=False, compare=False)
    ca_file: str | None = None
    connections: int = 4
    readonly: bool = True  # a source: never write
    exchange: bool = False
    disarm_read_receipts: bool = False  # Exchange only
    timeout: float | None = None  # seconds without an answer (None: the connection's default)


@dataclass(frozen=True, slots=True, kw_only=True)
class GraphSpec(StoreSpec["GraphStore"]):
    """One Microsoft 365 mailbox over Microsoft Graph (app-only).

    ``client`` shares one Graph client (token cache, pacer, app limits) between the
    mailboxes of a tenant; ``on_close`` runs when the store closes (an app pool's release).
    """

    kind: ClassVar[str] = "graph"
    mailbox: str
    tenant: TenantConfig
    options: GraphOptions | None = None
    client: GraphClient | None = field(default=None, repr=False, compare=False)
    on_close: Callable[[], None] | None = field(default=None, repr=False, compare=False)

    def remembering(self, memory: ProfileMemory) -> GraphSpec:
        """Return this spec with learned tenant facts read from and kept in ``memory``."""
        from dataclasses import replace

        from mailtrek.stores.m365.graph import GraphOptions

        return replace(self, options=replace(self.options or GraphOptions(), memory=memory))


@dataclass(frozen=True, slots=True, kw_only=True)
class MemorySpec(StoreSpec["MemoryStore"]):
    """A named in-memory mailbox (``memory://NAME``): one per name and process."""

    kind: ClassVar[str] = "memory"
    name: str
    max_message_size: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PimSpec(StoreSpec[S]):
    """Base of the contacts-and-calendars stores (``PimSource``/``PimDestination``).

    Each backend is one more subclass with its own ``kind`` and registry entry.
    """


@dataclass(frozen=True, slots=True, kw_only=True)
class DavSpec(PimSpec["DavStore"]):
    """One CalDAV/CardDAV account (``dav+https://USER@HOST/PATH``)."""

    kind: ClassVar[str] = "dav"
    address: DavAddress
    password: str = field(repr=False)
    ca_file: str | None = None
    connections: int = 4
    kinds: tuple[str, ...] = ("calendar", "contacts")  # the services to find (SRV, presets)
    nameserver: str | None = None  # DNS server for the SRV look (IP[:PORT]); None: the system's
    token: Callable[[], Awaitable[str]] | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class GraphPimSpec(PimSpec["GraphPimStore"]):
    """One Microsoft 365 mailbox's calendars and contact folders over Graph (``m365://``)."""

    kind: ClassVar[str] = "graph-pim"
    mailbox: str
    tenant: TenantConfig
    client: GraphClient | None = field(default=None, repr=False, compare=False)


MailSpec = ImapSpec | GraphSpec | MemorySpec
