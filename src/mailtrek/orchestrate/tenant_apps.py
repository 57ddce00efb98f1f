"""Several app registrations per tenant, and mailboxes spread across them.

Microsoft's Outlook limits are per app ID: 4 concurrent requests per app over all
mailboxes, and 10,000 requests per 10 minutes and 150 MB uploaded per 5 minutes per app
and mailbox (learn.microsoft.com/graph/throttling-limits, "Outlook service limits"). A
second app registration with the same permissions adds 4 more requests in flight. The
tenant's own app (``tenant add``) is always first; ``tenant add-app`` adds more.

``AppPool`` gives each mailbox the client of the app that moves the fewest mailboxes
right now. Every client has its app's limiter; in a home it takes its slots as leases in
the state database, so ``mailtrek worker``s share the app's 4 places.
"""

from __future__ import annotations

import asyncio
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.exc import IntegrityError

from mailtrek.errors import ConfigError, UsageError
from mailtrek.orchestrate.endpoints import Tenant, check_name, get_tenant
from mailtrek.orchestrate.home import Home, utcnow
from mailtrek.state.m365 import tenant_apps


@dataclass(slots=True)
class TenantApp:
    """One extra app registration of a stored tenant (secret encrypted, or a certificate)."""

    tenant: str
    name: str
    client_id: str
    client_secret_enc: str | None = None
    cert_path: str | None = None

    def public(self) -> dict[str, object]:
        return {"tenant": self.tenant, "name": self.name, "client_id": self.client_id,
                "credential": "certificate" if self.cert_path else "client secret (stored)",
                "cert_path": self.cert_path}


def add_app(home: Home, app: TenantApp) -> None:
    """Store ``app``; raise UsageError when the name or client id is already there."""
    check_name(app.name, "app")
    tenant = get_tenant(home, app.tenant)
    if bool(app.client_secret_enc) == bool(app.cert_path):
        raise UsageError("give either a client secret file or a certificate")
    if app.client_id == tenant.client_id or app.client_id in {
            a.client_id for a in list_apps(home, app.tenant)}:
        raise UsageError(f"app {app.client_id} is already used by tenant {app.tenant!r}",
                         hint="each registration adds capacity only once (limits are per app ID)")
    row = {k: getattr(app, k) for k in TenantApp.__slots__} | {"created_at": utcnow()}
    try:
        with home.engine.begin() as c:
            c.execute(insert(tenant_apps).values(**row))
    except IntegrityError:
        raise UsageError(f"tenant {app.tenant!r} already has an app named {app.name!r}") from None


def list_apps(home: Home, tenant: str) -> list[TenantApp]:
    """Return the tenant's extra apps by name (the tenant's own app is not a row)."""
    with home.engine.connect() as c:
        rows = c.execute(select(tenant_apps).where(tenant_apps.c.tenant == tenant)
                         .order_by(tenant_apps.c.name)).mappings().all()
    return [TenantApp(**{k: r[k] for k in TenantApp.__slots__}) for r in rows]


def remove_app(home: Home, tenant: str, name: str) -> None:
    """Forget one extra app (by name or client id); raise ConfigError when unknown."""
    found = [a for a in list_apps(home, tenant) if name in (a.name, a.client_id)]
    if not found:
        raise ConfigError(f"tenant {tenant!r} has no app {name!r}",
                          hint=f"see `mailtrek tenant apps {tenant}`")
    with home.engine.begin() as c:
        c.execute(delete(tenant_apps).where(tenant_apps.c.tenant == tenant,
                                            tenant_apps.c.name == found[0].name))


def app_configs(home: Home, tenant: Tenant) -> list[Any]:
    """Return a TenantConfig per app registration of ``tenant``, its own app first."""
    from dataclasses import replace

    from mailtrek.orchestrate.specs import tenant_config

    base = tenant_config(home, tenant)
    out = [base]
    for app in list_apps(home, tenant.name):
        if app.cert_path:
            out.append(replace(base, client_id=app.client_id, client_secret=None,
                               cert_path=Path(app.cert_path)))
        else:
            out.append(replace(base, client_id=app.client_id,
                               client_secret=home.box.decrypt(app.client_secret_enc or "")))
    return out


class AppPool:
    """One Graph client per app registration; each mailbox goes to the least busy app."""

    def __init__(self, clients: list[Any]) -> None:
        if not clients:
            raise ValueError("an app pool needs at least one client")
        self.clients = clients
        self._mailboxes: dict[str, int] = {}  # mailbox -> index of its client
        self._load = [0] * len(clients)

    def client_for(self, mailbox: str) -> Any:
        """Return the client that moves ``mailbox`` (fewest mailboxes; ties by hash)."""
        key = mailbox.lower()
        index = self._mailboxes.get(key)
        if index is None:
            start = zlib.crc32(key.encode()) % len(self.clients)
            order = [(start + i) % len(self.clients) for i in range(len(self.clients))]
            index = min(order, key=lambda i: self._load[i])
            self._mailboxes[key] = index
        self._load[index] += 1
        return self.clients[index]

    def done(self, mailbox: str) -> None:
        """The mailbox's store is closed: its app may take another."""
        index = self._mailboxes.get(mailbox.lower())
        if index is not None and self._load[index] > 0:
            self._load[index] -= 1
            if self._load[index] == 0 or not any(self._load):
                self._mailboxes.pop(mailbox.lower(), None)

    async def close(self) -> None:
        """Close every client; idempotent."""
        await asyncio.gather(*(c.close() for c in self.clients), return_exceptions=True)


def open_pool(home: Home, tenant: Tenant) -> AppPool:
    """Return the app pool of ``tenant``: clients with shared limits and the stored profile."""
    from mailtrek.state.m365 import DbSlotLeases, load_profile
    from mailtrek.stores.m365 import GraphClient
    from mailtrek.stores.m365.applimit import AppLimiter
    from mailtrek.stores.m365.graph import apply_scope

    leases = DbSlotLeases(home.engine)
    clients = []
    for config in app_configs(home, tenant):
        client = GraphClient(config, app_limiter=AppLimiter(config.client_id, leases=leases))
        apply_scope(client, load_profile(home.engine, config.tenant_id))
        clients.append(client)
    return AppPool(clients)
