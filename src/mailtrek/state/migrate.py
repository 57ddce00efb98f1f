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

from mailtrek.errors import StateError

MIGRATIONS = Path(__file__).with_name("migrations")
MIGRATION_LOCK = 7_000_777  # pg_advisory_xact_lock key: "mailtrek schema migration"


def all_metadata() -> MetaData:
    """Return the shared metadata with every module's tables added."""
    import mailtrek.state.admin
    import mailtrek.state.m365
    import mailtrek.state.orchestration
    import mailtrek.state.pim
    import mailtrek.state.web  # noqa: F401  (adds the dashboard's and the PIM tables)
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


def known(revision: str | None) -> bool:
    """Return True when this mailtrek's migrations contain ``revision``."""
    if revision is None:
        return True
    try:
        return ScriptDirectory.from_config(_config()).get_revision(revision) is not None
    except Exception:  # alembic raises its own errors for unknown ids
        return False


def upgrade(engine: Engine) -> bool:
    """Migrate ``engine``'s database to the newest revision; return True when anything ran.

    A database written by a newer mailtrek (a revision this one does not know) is refused
    with :class:`StateError` instead of an Alembic traceback.
    """
    with engine.connect() as c:
        at = current(c)
        if at == head():
            return False  # the common case: one cheap read, no lock
        if not known(at):
            raise StateError(
                f"the state database is at schema {at!r}, which this mailtrek does not know: "
                "it was written by a newer version; upgrade mailtrek or use another --state")
    with engine.begin() as c:
        if c.dialect.name == "postgresql":
            c.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK})
        if current(c) == head():
            return False  # another process migrated while we waited
        command.upgrade(_config(c), "head")
    return True
