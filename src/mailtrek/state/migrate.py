"""Bring a state database to the newest schema with Alembic, safely from many processes at once.

Called by :func:`mailtrek.state.db.open_engine`, so every command and worker migrates on
start. On PostgreSQL an advisory lock makes concurrent starters wait for the first one;
on SQLite the database file's write lock does the same.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, MetaData, text

MIGRATIONS = Path(__file__).with_name("migrations")
MIGRATION_LOCK = 7_000_777  # pg_advisory_xact_lock key: "mailtrek schema migration"


def all_metadata() -> MetaData:
    """Return the shared metadata with every module's tables added."""
    import mailtrek.state.orchestration
    import mailtrek.state.web  # noqa: F401  (adds the dashboard's tables)
    from mailtrek.state.schema import metadata

    return metadata


def _config(conn: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = conn
    return cfg


@cache
def head() -> str | None:
    """Return the newest revision id."""
    return ScriptDirectory.from_config(_config()).get_current_head()


def current(conn: Connection) -> str | None:
    """Return the revision a database is at (None before the first migration)."""
    return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine) -> bool:
    """Migrate ``engine``'s database to the newest revision; return True when anything ran."""
    with engine.connect() as c:
        if current(c) == head():
            return False  # the common case: one cheap read, no lock
    with engine.begin() as c:
        if c.dialect.name == "postgresql":
            c.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK})
        if current(c) == head():
            return False  # another process migrated while we waited
        command.upgrade(_config(c), "head")
    return True
