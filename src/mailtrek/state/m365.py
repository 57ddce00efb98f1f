"""Microsoft 365 facts kept in the state database: app registrations, tenant profiles, app slots.

- ``tenant_apps``: extra app registrations of a stored tenant (secret encrypted by the
  caller, or the path of a certificate PEM); Microsoft's limits are per app ID, so each
  adds its own 4 concurrent requests.
- ``tenant_profiles``: what a tenant was seen to do (``mailtrek tenant probe``, or learned
  during a copy), keyed by the directory (tenant) id as ``TenantConfig`` names it: e.g.
  ``concurrency_scope`` ("app"|"mailbox") and ``import_mime_received`` ("headers"|"now").
- ``m365_app_slots``: leases of an app's concurrent places, shared by every process of a
  home (``mailtrek worker``s); a lease expires on its own when its holder died.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    Float,
    Integer,
    String,
    Table,
    Text,
    delete,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from mailtrek.state.schema import metadata

tenant_apps = Table(
    "tenant_apps",
    metadata,
    Column("tenant", String(64), primary_key=True),  # the stored tenant's name
    Column("name", String(64), primary_key=True),
    Column("client_id", String(255), nullable=False),
    Column("client_secret_enc", Text),
    Column("cert_path", Text),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

tenant_profiles = Table(
    "tenant_profiles",
    metadata,
    Column("tenant_id", String(255), primary_key=True),
    Column("profile", Text, nullable=False),  # JSON object
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

m365_app_slots = Table(
    "m365_app_slots",
    metadata,
    Column("app_id", String(255), primary_key=True),
    Column("slot", Integer, primary_key=True),
    Column("holder", String(64), nullable=False),
    Column("expires_at", Float, nullable=False),  # epoch seconds
)


def load_profile(engine: Engine, tenant_id: str) -> dict[str, Any]:
    """Return the stored profile of ``tenant_id`` ({} when none)."""
    with engine.connect() as c:
        text = c.execute(select(tenant_profiles.c.profile).where(
            tenant_profiles.c.tenant_id == tenant_id)).scalar()
    return dict(json.loads(text)) if text else {}


def save_profile(engine: Engine, tenant_id: str, facts: dict[str, Any], *,
                 replace: bool = False) -> dict[str, Any]:
    """Merge ``facts`` into the tenant's profile (or replace it); return the result."""
    with engine.begin() as c:
        text = c.execute(select(tenant_profiles.c.profile).where(
            tenant_profiles.c.tenant_id == tenant_id)).scalar()
        profile = {} if replace or not text else dict(json.loads(text))
        profile.update(facts)
        c.execute(delete(tenant_profiles).where(tenant_profiles.c.tenant_id == tenant_id))
        c.execute(insert(tenant_profiles).values(tenant_id=tenant_id, profile=json.dumps(profile),
                                                 updated_at=datetime.now(UTC)))
    return profile


class ProfileMemory:
    """Remember what a copy learned about a tenant (the Graph store calls it).

    ``fallback``: another database read first (the home's, where ``tenant probe`` stores
    profiles, when ``copy`` keeps its state elsewhere); facts are written to ``engine``.
    """

    def __init__(self, engine: Engine, fallback: Engine | None = None) -> None:
        self.engine = engine
        self.fallback = fallback

    def load(self, tenant_id: str) -> dict[str, Any]:
        base: dict[str, Any] = {}
        if self.fallback is not None:
            try:
                base = load_profile(self.fallback, tenant_id)
            except SQLAlchemyError:
                base = {}  # no profiles there (another version, or not a home): none
        return base | load_profile(self.engine, tenant_id)

    def remember(self, tenant_id: str, facts: dict[str, Any]) -> None:
        save_profile(self.engine, tenant_id, facts)


class DbSlotLeases:
    """An app's concurrent places as rows (app_id, slot): a row is a place taken.

    The primary key makes taking a place atomic on SQLite and PostgreSQL alike: of two
    processes inserting the same slot, one gets an IntegrityError and tries the next.
    """

    # Short, renewed while a busy process hands a lease on: a killed worker's places come
    # back within ``ttl``; a request outliving it risks one 429, which the limiter absorbs.
    def __init__(self, engine: Engine, *, ttl: float = 30.0) -> None:
        self.engine = engine
        self.ttl = ttl
        self.holder = uuid.uuid4().hex

    def try_acquire(self, app_id: str, ceiling: int) -> int | None:
        now = time.time()
        with self.engine.begin() as c:
            c.execute(delete(m365_app_slots).where(m365_app_slots.c.app_id == app_id,
                                                   m365_app_slots.c.expires_at < now))
            taken = set(c.execute(select(m365_app_slots.c.slot).where(
                m365_app_slots.c.app_id == app_id)).scalars())
        for slot in range(ceiling):
            if slot in taken:
                continue
            try:
                with self.engine.begin() as c:
                    c.execute(insert(m365_app_slots).values(
                        app_id=app_id, slot=slot, holder=self.holder, expires_at=now + self.ttl))
                return slot
            except IntegrityError:
                continue
        return None

    def renew(self, app_id: str, slot: int) -> None:
        with self.engine.begin() as c:
            c.execute(update(m365_app_slots).where(
                m365_app_slots.c.app_id == app_id, m365_app_slots.c.slot == slot,
                m365_app_slots.c.holder == self.holder).values(expires_at=time.time() + self.ttl))

    def release(self, app_id: str, slot: int) -> None:
        with self.engine.begin() as c:
            c.execute(delete(m365_app_slots).where(
                m365_app_slots.c.app_id == app_id, m365_app_slots.c.slot == slot,
                m365_app_slots.c.holder == self.holder))

    def held(self, app_id: str) -> int:
        """Return how many unexpired places of ``app_id`` are taken (all processes)."""
        with self.engine.connect() as c:
            return len(c.execute(select(m365_app_slots.c.slot).where(
                m365_app_slots.c.app_id == app_id,
                m365_app_slots.c.expires_at >= time.time())).all())
