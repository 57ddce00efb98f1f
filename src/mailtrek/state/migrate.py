"""Bring a state database to the newest schema with Alembic, safely from many processes at once.

Called by :func:`mailtrek.state.db.open_engine`, so every command and worker migrates on
start. On PostgreSQL an advisory lock makes concurrent starters wait for the first one;
on SQLite the database file's write lock does the same.
"""

from __future__ import annotations

import os
import sys
import threading
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from mailtrek.errors import StateError

if TYPE_CHECKING:  # SQLAlchemy is imported on first use: the CLI sets MIGRATE_APART first
    from alembic.config import Config
    from sqlalchemy import Connection, Engine, MetaData

MIGRATIONS = Path(__file__).with_name("migrations")
MIGRATION_LOCK = 7_000_777  # pg_advisory_xact_lock key: "mailtrek schema migration"
# The newest revision, known without Alembic (whose import costs ~11 MB of every copy's
# memory): a database already there is opened without importing it. A test checks this
# equals Alembic's own head, so a new migration must update it.
HEAD = "0005_pimwave"
# Set by the command line: migrate a SQLite database in a forked child, so Alembic is
# never imported into a long copy's process (tests keep it in-process: one import).
MIGRATE_APART = False


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
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = conn
    return cfg


@cache
def head() -> str | None:
    """Return the newest revision id (Alembic's own reading of the migrations)."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_config()).get_current_head()


def current(conn: Connection) -> str | None:
    """Return the revision a database is at (None before the first migration)."""
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(conn).get_current_revision()


def known(revision: str | None) -> bool:
    """Return True when this mailtrek's migrations contain ``revision``."""
    if revision is None:
        return True
    from alembic.script import ScriptDirectory

    try:
        return ScriptDirectory.from_config(_config()).get_revision(revision) is not None
    except Exception:  # alembic raises its own errors for unknown ids
        return False


def stored_revision(conn: Connection) -> str | None:
    """The revision ``conn``'s database records, read with plain SQL (no Alembic); None
    before the first migration (what :func:`current` says, for `mailtrek state show`)."""
    versions = _versions(conn)
    return ", ".join(versions) if versions else None


def _versions(conn: Connection) -> list[str] | None:
    from sqlalchemy import inspect, text

    if not inspect(conn).has_table("alembic_version"):
        return None
    return list(conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all())


def _at_head(conn: Connection) -> bool:
    """True when ``conn``'s database is at :data:`HEAD`, read with plain SQL."""
    return _versions(conn) == [HEAD]


def upgrade(engine: Engine) -> bool:
    """Migrate ``engine``'s database to the newest revision; return True when anything ran.

    A database written by a newer mailtrek (a revision this one does not know) is refused
    with :class:`StateError` instead of an Alembic traceback.
    """
    with engine.connect() as c:
        if _at_head(c):
            return False  # the common case: one cheap read, no lock, no Alembic
    if engine.dialect.name == "sqlite":
        from mailtrek.state.fresh import create_at_head

        if create_at_head(engine, all_metadata(), HEAD):
            return True  # a new file: made at the head, no Alembic either
        with engine.connect() as c:
            if _at_head(c):
                return False  # another process made it while this one waited for the lock
    if _apart_ok(engine) and _upgrade_in_child(engine):
        return True
    return _upgrade_here(engine)


def _apart_ok(engine: Engine) -> bool:
    """Whether to migrate in a forked child: a SQLite file, a single-threaded process
    that asked for it (:data:`MIGRATE_APART`) and has not imported Alembic anyway."""
    return (MIGRATE_APART and hasattr(os, "fork") and engine.dialect.name == "sqlite"
            and engine.url.database not in (None, "", ":memory:")
            and "alembic" not in sys.modules and threading.active_count() == 1)


def _upgrade_in_child(engine: Engine) -> bool:
    """Run :func:`_upgrade_here` in a forked child; True when the database is now at head.

    False (the caller then migrates in-process, raising what is wrong) when the child
    failed for any reason.
    """
    engine.dispose()  # no connection of this process is carried into the child
    pid = os.fork()
    if pid == 0:  # the child: migrate, then leave without running this process's exit code
        code = 1
        try:
            _upgrade_here(engine)
            engine.dispose()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        return False
    with engine.connect() as c:
        return _at_head(c)


def _upgrade_here(engine: Engine) -> bool:
    with engine.connect() as c:
        at = current(c)
        if at == head():
            return False
        if not known(at):
            raise StateError(
                f"the state database is at schema {at!r}, which this mailtrek does not know: "
                "it was written by a newer version; upgrade mailtrek or use another --state")
    from sqlalchemy import text

    with engine.begin() as c:
        if c.dialect.name == "postgresql":
            c.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK})
        if current(c) == head():
            return False  # another process migrated while we waited
        from alembic import command

        command.upgrade(_config(c), "head")
    return True
