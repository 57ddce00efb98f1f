"""Stored endpoints and tenants as store specs: what ``stores.registry`` opens.

The same server reached through an endpoint or written as an address
(``stores.url.address_spec``) gives an equal spec.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from mailtrek.orchestrate.endpoints import Endpoint, Tenant
from mailtrek.orchestrate.home import Home
from mailtrek.secrets import remember
from mailtrek.stores.spec import ImapSpec, TokenFn

if TYPE_CHECKING:
    from mailtrek.stores.m365.api import GraphClient
    from mailtrek.stores.m365.config import TenantConfig


def endpoint_spec(ep: Endpoint, user: str, *, password: str | None = None,
                  mechanism: str = "login", authzid: str | None = None,
                  token: TokenFn | None = None, readonly: bool = True,
                  label: str = "store") -> ImapSpec:
    """Return the spec of ``user``'s mailbox on the stored IMAP endpoint ``ep``."""
    return ImapSpec(host=ep.host, port=ep.port, security=ep.security, user=user,
                    password=password, mechanism=mechanism, authzid=authzid, token=token,
                    ca_file=ep.ca_file, connections=ep.connections_per_mailbox,
                    readonly=readonly, label=label)


def admin_spec(home: Home, ep: Endpoint, mailbox: str, *, label: str = "store") -> ImapSpec | None:
    """Return the spec that opens ``mailbox`` on ``ep`` as its stored admin (SASL PLAIN with
    ``mailbox`` as authzid), or None when ``ep`` stores no admin.

    Migrations into ``ep`` log in this way, and so does `endpoint test` (no password given).
    """
    if not (ep.admin_user and ep.admin_password_enc):
        return None
    return endpoint_spec(ep, ep.admin_user, password=remember(home.box.decrypt(ep.admin_password_enc)),
                         mechanism="plain", authzid=mailbox, readonly=False, label=label)


def tenant_config(home: Home, t: Tenant) -> TenantConfig:
    """Return the m365 store's TenantConfig for a stored tenant (secret decrypted)."""
    from mailtrek.stores.m365.config import DEFAULT_GRAPH_URL, TenantConfig

    return TenantConfig(
        tenant_id=t.tenant_id, client_id=t.client_id,
        client_secret=home.box.decrypt(t.client_secret_enc), authority=t.authority,
        graph_url=t.graph_url or DEFAULT_GRAPH_URL, ca_file=Path(t.ca_file) if t.ca_file else None,
    )


def tenant_client(home: Home, t: Tenant) -> GraphClient:
    """Return a Graph client of the stored tenant's own app, for tenant-wide calls.

    The caller closes it. Mailbox moves use the tenant's app pool instead
    (``tenant_apps.open_pool``), which spreads mailboxes over every app.
    """
    from mailtrek.stores.m365 import GraphClient

    return GraphClient(tenant_config(home, t))
