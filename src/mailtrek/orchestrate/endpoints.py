"""Stored IMAP endpoints and Microsoft 365 tenants: add, get, list, remove."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, insert, select
from sqlalchemy.exc import IntegrityError

from mailtrek.errors import ConfigError, UsageError
from mailtrek.orchestrate.home import Home, utcnow
from mailtrek.orchestrate.presets import get_preset
from mailtrek.state.orchestration import batches, endpoints, tenants

# New-MigrationEndpoint's defaults: MaxConcurrentMigrations 100, MaxConcurrentIncrementalSyncs
# 20 (docs PS/New-MigrationEndpoint; the best-practices page says 20 initial: m365.md C1).
DEFAULT_CONCURRENT_MIGRATIONS = 100
DEFAULT_CONCURRENT_INCREMENTAL = 20
DEFAULT_CONNECTIONS_PER_MAILBOX = 4
SECURITIES = ("ssl", "starttls", "none")
AUTHS = ("password", "xoauth2")
ADMIN_FORMATS = ("dovecot", "exchange", "mirapoint")
MAX_NAME = 64  # Exchange's limit for batch names; we use it for every name


@dataclass(slots=True)
class Endpoint:
    """An IMAP server that mailboxes come from (or go to)."""

    name: str
    host: str
    port: int
    security: str = "ssl"
    ca_file: str | None = None
    preset: str | None = None
    auth: str = "password"
    admin_format: str | None = None
    admin_user: str | None = None
    admin_password_enc: str | None = None
    max_concurrent_migrations: int = DEFAULT_CONCURRENT_MIGRATIONS
    max_concurrent_incremental: int = DEFAULT_CONCURRENT_INCREMENTAL
    connections_per_mailbox: int = DEFAULT_CONNECTIONS_PER_MAILBOX

    def public(self) -> dict[str, object]:
        """Return a dict for display, without the encrypted admin password."""
        return {
            "name": self.name, "host": self.host, "port": self.port, "security": self.security,
            "ca_file": self.ca_file, "preset": self.preset, "auth": self.auth,
            "admin_format": self.admin_format, "admin_user": self.admin_user,
            "admin_password": "stored" if self.admin_password_enc else None,
            "max_concurrent_migrations": self.max_concurrent_migrations,
            "max_concurrent_incremental": self.max_concurrent_incremental,
            "connections_per_mailbox": self.connections_per_mailbox,
        }


@dataclass(slots=True)
class Tenant:
    """A Microsoft 365 tenant reached with an app registration (client credentials)."""

    name: str
    tenant_id: str
    client_id: str
    client_secret_enc: str
    authority: str | None = None
    graph_url: str | None = None
    ca_file: str | None = None

    def public(self) -> dict[str, object]:
        return {
            "name": self.name, "tenant_id": self.tenant_id, "client_id": self.client_id,
            "client_secret": "stored", "authority": self.authority,
            "graph_url": self.graph_url, "ca_file": self.ca_file,
        }


def check_name(name: str, what: str) -> str:
    """Return ``name`` when it is a usable identifier; raise UsageError otherwise."""
    if not name or len(name) > MAX_NAME or any(c.isspace() or c in "/\\" for c in name):
        raise UsageError(f"invalid {what} name {name!r}", hint=f"1-{MAX_NAME} characters, no spaces or slashes")
    return name


def make_endpoint(
    name: str,
    *,
    host: str | None,
    port: int | None = None,
    security: str | None = None,
    ca_file: str | None = None,
    preset: str | None = None,
    auth: str = "password",
    admin_format: str | None = None,
    max_concurrent_migrations: int | None = None,
    max_concurrent_incremental: int | None = None,
    connections_per_mailbox: int | None = None,
) -> Endpoint:
    """Build an endpoint from options and an optional preset; raise UsageError when incomplete."""
    check_name(name, "endpoint")
    p = get_preset(preset) if preset else None
    host = host or (p.host if p else None)
    if not host:
        raise UsageError("an endpoint needs --host", hint="or a --preset that names the provider's host")
    security = (security or (p.security if p else "ssl")).lower()
    if security not in SECURITIES:
        raise UsageError(f"unknown --security {security!r}", hint="use ssl, starttls or none")
    if auth not in AUTHS:
        raise UsageError(f"unknown --auth {auth!r}", hint="use password or xoauth2")
    admin_format = admin_format or (p.admin_format if p else None)
    if admin_format and admin_format not in ADMIN_FORMATS:
        raise UsageError(f"unknown --admin-format {admin_format!r}", hint=f"use one of {', '.join(ADMIN_FORMATS)}")
    per_mailbox = connections_per_mailbox or DEFAULT_CONNECTIONS_PER_MAILBOX
    if p and p.connections_per_account:
        # Several connections per mailbox speed things up, but never beyond the provider's cap.
        per_mailbox = min(per_mailbox, p.connections_per_account)
    for label, value in (("--max-concurrent-migrations", max_concurrent_migrations),
                         ("--max-concurrent-incremental", max_concurrent_incremental),
                         ("--connections-per-mailbox", connections_per_mailbox)):
        if value is not None and value < 1:
            raise UsageError(f"{label} must be at least 1")
    return Endpoint(
        name=name, host=host, port=port or (p.port if p else (993 if security == "ssl" else 143)),
        security=security, ca_file=ca_file, preset=p.name if p else None, auth=auth,
        admin_format=admin_format,
        max_concurrent_migrations=max_concurrent_migrations or DEFAULT_CONCURRENT_MIGRATIONS,
        max_concurrent_incremental=max_concurrent_incremental or DEFAULT_CONCURRENT_INCREMENTAL,
        connections_per_mailbox=per_mailbox,
    )


def add_endpoint(home: Home, ep: Endpoint) -> None:
    """Store ``ep``; raise UsageError when the name is taken."""
    row = {k: getattr(ep, k) for k in Endpoint.__slots__} | {"created_at": utcnow()}
    try:
        with home.engine.begin() as c:
            c.execute(insert(endpoints).values(**row))
    except IntegrityError:
        raise UsageError(f"endpoint {ep.name!r} exists", hint="remove it first or pick another name") from None


def get_endpoint(home: Home, name: str) -> Endpoint:
    with home.engine.connect() as c:
        r = c.execute(select(endpoints).where(endpoints.c.name == name)).mappings().first()
    if r is None:
        raise ConfigError(f"no endpoint named {name!r}", hint="see `mailtrek endpoint list`")
    return Endpoint(**{k: r[k] for k in Endpoint.__slots__})


def list_endpoints(home: Home) -> list[Endpoint]:
    with home.engine.connect() as c:
        rows = c.execute(select(endpoints).order_by(endpoints.c.name)).mappings().all()
    return [Endpoint(**{k: r[k] for k in Endpoint.__slots__}) for r in rows]


def remove_endpoint(home: Home, name: str) -> None:
    """Remove an endpoint no batch uses; raise UsageError when one does."""
    get_endpoint(home, name)
    with home.engine.begin() as c:
        used = c.execute(select(batches.c.name).where(
            (batches.c.source_endpoint == name) | (batches.c.dest_endpoint == name))).scalars().all()
        if used:
            raise UsageError(f"endpoint {name!r} is used by batch(es) {', '.join(used)}",
                             hint="delete those batches first")
        c.execute(delete(endpoints).where(endpoints.c.name == name))


def add_tenant(home: Home, t: Tenant) -> None:
    check_name(t.name, "tenant")
    row = {k: getattr(t, k) for k in Tenant.__slots__} | {"created_at": utcnow()}
    try:
        with home.engine.begin() as c:
            c.execute(insert(tenants).values(**row))
    except IntegrityError:
        raise UsageError(f"tenant {t.name!r} exists", hint="remove it first or pick another name") from None


def get_tenant(home: Home, name: str) -> Tenant:
    with home.engine.connect() as c:
        r = c.execute(select(tenants).where(tenants.c.name == name)).mappings().first()
    if r is None:
        raise ConfigError(f"no tenant named {name!r}", hint="see `mailtrek tenant list`")
    return Tenant(**{k: r[k] for k in Tenant.__slots__})


def list_tenants(home: Home) -> list[Tenant]:
    with home.engine.connect() as c:
        rows = c.execute(select(tenants).order_by(tenants.c.name)).mappings().all()
    return [Tenant(**{k: r[k] for k in Tenant.__slots__}) for r in rows]


def remove_tenant(home: Home, name: str) -> None:
    get_tenant(home, name)
    with home.engine.begin() as c:
        used = c.execute(select(batches.c.name).where(batches.c.tenant == name)).scalars().all()
        if used:
            raise UsageError(f"tenant {name!r} is used by batch(es) {', '.join(used)}",
                             hint="delete those batches first")
        c.execute(delete(tenants).where(tenants.c.name == name))
