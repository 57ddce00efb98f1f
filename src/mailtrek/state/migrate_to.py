"""Copy a whole state database (normally SQLite) into another one (normally PostgreSQL).

Lossless and checked: every table of the shared metadata is copied row by row in primary
key order, then both sides are read back and compared row by row (times compared as UTC
instants, since SQLite keeps naive UTC text). The target must be empty: merging two
states is not a migration.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, Table, func, inspect, select

from mailtrek.errors import StateError
from mailtrek.state.migrate import all_metadata

CHUNK = 2000


@dataclass
class MigrationResult:
    """Rows copied per table; ``verified`` once both sides compared equal."""

    rows: dict[str, int] = field(default_factory=dict)
    verified: bool = False

    @property
    def total(self) -> int:
        return sum(self.rows.values())


def _norm(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value


def _rows(engine: Engine, table: Table) -> Iterator[dict[str, Any]]:
    order = list(table.primary_key.columns) or list(table.columns)
    with engine.connect() as c:
        result = c.execute(select(table).order_by(*order)).mappings()
        for row in result:
            yield {k: _norm(v) for k, v in row.items()}


def _tables(source: Engine) -> list[Table]:
    present = set(inspect(source).get_table_names())
    return [t for t in all_metadata().sorted_tables if t.name in present]


def migrate_state(source: Engine, target: Engine,
                  progress: Callable[[str, int], None] | None = None) -> MigrationResult:
    """Copy every state table of ``source`` into ``target`` and verify; return the counts.

    Raises StateError when the target already holds state or the read-back differs.
    """
    tables = _tables(source)
    with target.connect() as c:
        busy = [t.name for t in tables if c.execute(select(func.count()).select_from(t)).scalar_one()]
    if busy:
        raise StateError(f"the target database already holds state ({', '.join(busy)})",
                         hint="migrate into an empty database")
    result = MigrationResult()
    with target.begin() as c:  # one transaction: a failed copy leaves the target empty
        for t in tables:
            n, chunk = 0, []
            for row in _rows(source, t):
                chunk.append(row)
                if len(chunk) >= CHUNK:
                    c.execute(t.insert(), chunk)
                    n, chunk = n + len(chunk), []
            if chunk:
                c.execute(t.insert(), chunk)
                n += len(chunk)
            result.rows[t.name] = n
            if progress:
                progress(t.name, n)
    verify_equal(source, target, tables)
    result.verified = True
    return result


def verify_equal(source: Engine, target: Engine, tables: list[Table] | None = None) -> None:
    """Raise StateError unless every table holds the same rows on both sides."""
    for t in tables or _tables(source):
        counts = []
        for engine in (source, target):
            with engine.connect() as c:
                counts.append(c.execute(select(func.count()).select_from(t)).scalar_one())
        if counts[0] != counts[1]:
            raise StateError(f"table {t.name}: {counts[0]} rows in the source, {counts[1]} in the target")
        for i, (ra, rb) in enumerate(zip(_rows(source, t), _rows(target, t), strict=True)):
            if ra != rb:
                cols = sorted(k for k in ra if ra[k] != rb.get(k))
                raise StateError(f"table {t.name}: row {i + 1} differs after the copy (columns {', '.join(cols)})")
