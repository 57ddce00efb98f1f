"""Registry entry of the Graph store: build a ``GraphStore`` from a ``GraphSpec``."""

from __future__ import annotations

from mailtrek.stores.m365.graph import GraphStore, open_graph_store
from mailtrek.stores.registry import register
from mailtrek.stores.spec import GraphSpec


def open_graph(spec: GraphSpec) -> GraphStore:
    """Return an unconnected Graph store for ``spec`` (on its shared client when it has one)."""
    tenant = spec.client.tenant if spec.client is not None else spec.tenant
    store = open_graph_store(spec.mailbox, tenant, client=spec.client, options=spec.options)
    if spec.on_close is not None:
        store.on_close = spec.on_close
    return store


register(GraphSpec.kind, open_graph)
