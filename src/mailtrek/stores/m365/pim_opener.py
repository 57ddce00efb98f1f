"""Registry entry of the Graph contacts-and-calendars store (``GraphPimSpec``)."""

from __future__ import annotations

from mailtrek.stores.m365.pim_store import GraphPimStore, open_pim_store
from mailtrek.stores.registry import register
from mailtrek.stores.spec import GraphPimSpec


def open_graph_pim(spec: GraphPimSpec) -> GraphPimStore:
    """Return an unconnected Graph contacts-and-calendars store for ``spec``."""
    tenant = spec.client.tenant if spec.client is not None else spec.tenant
    return open_pim_store(spec.mailbox, tenant, client=spec.client)


register(GraphPimSpec.kind, open_graph_pim)
