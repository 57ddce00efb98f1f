"""SQL that differs between SQLite and PostgreSQL, behind one name."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Engine, Table


def upsert_insert(bind: Engine | Connection, table: Table) -> Any:
    """Return an INSERT for ``table`` that has ``on_conflict_do_update`` on this dialect."""
    if bind.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table)
