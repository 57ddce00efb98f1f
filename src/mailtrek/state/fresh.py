"""A new SQLite state database made at the newest schema directly, without Alembic.

On an empty database every migration only creates what the metadata holds (the baseline
and each later revision create "what is missing" from the current tables), so the result
of the whole chain is the metadata's ``create_all`` plus Alembic's version table stamped
at the head. Doing exactly that here saves a new ``copy --state`` file the Alembic import
(or the forked child that keeps it out). ``tests/test_state_fresh_schema.py`` holds the
two schemas equal: tables, columns, types, nullability, keys, indexes, the DDL itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy import Engine, MetaData, Table


def version_table() -> Table:
    """Alembic's ``alembic_version`` table, as Alembic itself defines it (``ddl/impl.py``)."""
    from sqlalchemy import Column, MetaData, PrimaryKeyConstraint, String, Table

    return Table("alembic_version", MetaData(),
                 Column("version_num", String(32), nullable=False),
                 PrimaryKeyConstraint("version_num", name="alembic_version_pkc"))


def create_at_head(engine: Engine, metadata: MetaData, head: str) -> bool:
    """Create every table of ``metadata`` and stamp ``head``, in one transaction that holds
    the SQLite file's write lock; return False (changing nothing) unless the database
    was empty, so that a database another process just made is left to the migrations."""
    assert engine.dialect.name == "sqlite"
    with engine.connect() as c:
        c.exec_driver_sql("BEGIN IMMEDIATE")  # DDL too: Python's sqlite3 would not BEGIN for it
        try:
            if c.exec_driver_sql("SELECT count(*) FROM sqlite_master").scalar():
                c.rollback()
                return False
            version = version_table()
            version.create(c)
            metadata.create_all(c)
            c.execute(version.insert().values(version_num=head))
        except BaseException:
            c.rollback()
            raise
        c.commit()
    return True
