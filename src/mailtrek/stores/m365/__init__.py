"""Microsoft 365 destination: Graph store, app-only auth, tenant settings."""

from mailtrek.stores.m365.api import (
    GraphAccessDeniedError,
    GraphClient,
    GraphConflictError,
    GraphNotFoundError,
    GraphRejectedError,
    InDoubtError,
    MailboxUnavailableError,
)
from mailtrek.stores.m365.auth import GRAPH_SCOPE, OUTLOOK_SCOPE, TokenSource
from mailtrek.stores.m365.config import TenantConfig
from mailtrek.stores.m365.graph import GraphOptions, GraphStore, open_graph_store

__all__ = [
    "GRAPH_SCOPE",
    "OUTLOOK_SCOPE",
    "GraphAccessDeniedError",
    "GraphClient",
    "GraphConflictError",
    "GraphNotFoundError",
    "GraphOptions",
    "GraphRejectedError",
    "GraphStore",
    "InDoubtError",
    "MailboxUnavailableError",
    "TenantConfig",
    "TokenSource",
    "open_graph_store",
]
