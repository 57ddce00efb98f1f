"""Stored IMAP endpoints and Microsoft 365 tenants: add, get, list, remove."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from mailtrek.errors import ConfigError, ConflictError, NotFoundError, UsageError
from mailtrek.orchestrate.home import Home, utcnow
from mailtrek.orchestrate.presets import get_preset
from mailtrek.secrets import remember
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
    service_account_email: str | None = None  # Google Workspace domain-wide delegation
    service_account_key_enc: str | None = field(default=None, repr=False)  # the whole JSON key
    max_concurrent_migrations: int = DEFAULT_CONCURRENT_MIGRATIONS
    max_concurrent_incremental: int = DEFAULT_CONCURRENT_INCREMENTAL
    connections_per_mailbox: int = DEFAULT_CONNECTIONS_PER_MAILBOX
    dav_url: str | None = None  # contacts/calendars server (https://HOST[:PORT]/PATH)

    @property
    def uses_service_account(self) -> bool:
        """True when each user's login is a token from the stored service account (no passwords)."""
        return self.service_account_key_enc is not None

    def public(self) -> dict[str, object]:
        """Return a dict for display, without the encrypted admin password or key."""
        auth = f"service account {self.service_account_email}" if self.uses_service_account else self.auth
        return {
            "name": self.name, "host": self.host, "port": self.port, "security": self.security,
            "ca_file": self.ca_file, "preset": self.preset, "auth": auth,
            "admin_format": self.admin_format, "admin_user": self.admin_user,
            "admin_password": "stored" if self.admin_password_enc else None,
            "max_concurrent_migrations": self.max_concurrent_migrations,
            "max_concurrent_incremental": self.max_concurrent_incremental,
            "connections_per_mailbox": self.connections_per_mailbox, "dav_url": self.dav_url,
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
    dav_url: str | None = None,
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
        connections_per_mailbox=per_mailbox, dav_url=check_dav_url(dav_url),
    )


def check_dav_url(text: str | None) -> str | None:
    """Return ``https://HOST[:PORT]/PATH`` (``dav+`` and ``http://`` accepted) or raise
    UsageError; None stays None. No user or password belongs in it."""
    if not text:
        return None
    from urllib.parse import urlsplit

    parts = urlsplit(text.strip().removeprefix("dav+"))
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise UsageError(f"--dav-url {text!r} is not an https:// URL",
                         hint="e.g. https://cloud.example.com/remote.php/dav/")
    if parts.username or parts.password:
        raise UsageError("--dav-url takes no user or password: each user's come from the CSV")
    return f"{parts.scheme}://{parts.netloc}{parts.path or '/'}"


def read_service_account_key(path: Path) -> dict[str, Any]:
    """Return a Google service-account JSON key read from ``path``.

    Raises ConfigError (naming the file, never its content) unless the file is JSON with
    ``type`` service_account, ``client_email``, ``private_key`` and ``token_uri``.
    """
    from mailtrek.stores.gmail.auth import load_key

    info = load_key(path)
    remember(str(info["private_key"]))
    return info


def attach_service_account(home: Home, ep: Endpoint, info: dict[str, Any]) -> None:
    """Make ``ep`` log every user in with tokens of the service account ``info`` (key encrypted)."""
    ep.auth = "xoauth2"
    ep.service_account_email = str(info["client_email"])
    ep.service_account_key_enc = home.box.encrypt(json.dumps(info))


def service_account_key(home: Home, ep: Endpoint) -> dict[str, Any]:
    """Return ``ep``'s decrypted service-account key; its private key is registered for redaction."""
    if ep.service_account_key_enc is None:
        raise ConfigError(f"endpoint {ep.name} has no service account",
                          hint="add it again with --service-account-key KEY.json")
    info: dict[str, Any] = json.loads(home.box.decrypt(ep.service_account_key_enc))
    remember(str(info.get("private_key") or ""))
    return info


def needs_no_passwords(home: Home, name: str | None) -> bool:
    """True when the stored endpoint ``name`` logs users in without CSV passwords (False if absent)."""
    if name is None:
        return False
    with home.engine.connect() as c:
        enc = c.execute(select(endpoints.c.service_account_key_enc)
                        .where(endpoints.c.name == name)).scalar_one_or_none()
    return enc is not None


def add_endpoint(home: Home, ep: Endpoint) -> None:
    """Store ``ep``; raise UsageError when the name is taken."""
    row = {k: getattr(ep, k) for k in Endpoint.__slots__} | {"created_at": utcnow()}
    try:
        with home.engine.begin() as c:
            c.execute(insert(endpoints).values(**row))
    except IntegrityError:
        raise ConflictError(f"endpoint {ep.name!r} exists", hint="remove it first or pick another name") from None


def get_endpoint(home: Home, name: str) -> Endpoint:
    with home.engine.connect() as c:
        r = c.execute(select(endpoints).where(endpoints.c.name == name)).mappings().first()
    if r is None:
        raise NotFoundError(f"no endpoint named {name!r}", hint="see `mailtrek endpoint list`")
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
            raise ConflictError(f"endpoint {name!r} is used by batch(es) {', '.join(used)}",
                             hint="delete those batches first")
        if home.engine.dialect.name == "sqlite":
            # Overwrite freed pages, so a deleted key or password does not linger in the file.
            c.exec_driver_sql("PRAGMA secure_delete=ON")
        # Blank the secrets first, so even a half-failed remove leaves none behind.
        c.execute(update(endpoints).where(endpoints.c.name == name).values(
            admin_password_enc=None, service_account_key_enc=None))
        c.execute(delete(endpoints).where(endpoints.c.name == name))
    if home.engine.dialect.name == "sqlite":
        with home.engine.connect() as c:
            # Older WAL frames still hold the ciphertexts while anyone keeps the file open.
            c.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")


def add_tenant(home: Home, t: Tenant) -> None:
    check_name(t.name, "tenant")
    row = {k: getattr(t, k) for k in Tenant.__slots__} | {"created_at": utcnow()}
    try:
        with home.engine.begin() as c:
            c.execute(insert(tenants).values(**row))
    except IntegrityError:
        raise ConflictError(f"tenant {t.name!r} exists", hint="remove it first or pick another name") from None


def get_tenant(home: Home, name: str) -> Tenant:
    with home.engine.connect() as c:
        r = c.execute(select(tenants).where(tenants.c.name == name)).mappings().first()
    if r is None:
        raise NotFoundError(f"no tenant named {name!r}", hint="see `mailtrek tenant list`")
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
            raise ConflictError(f"tenant {name!r} is used by batch(es) {', '.join(used)}",
                             hint="delete those batches first")
        c.execute(delete(tenants).where(tenants.c.name == name))
        from mailtrek.state.m365 import tenant_apps

        c.execute(delete(tenant_apps).where(tenant_apps.c.tenant == name))
