"""State of contact and calendar copies: per collection and per object (issue 17).

One row per source collection (its destination twin and the sync token seen when the
last run left it complete) and one per copied object: source collection + UID →
destination href, with the source href and ETag it was copied at. Like mail, copy first,
record second: an object written whose record was lost is found again by UID.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Column, Engine, Integer, String, Table, Text, delete, select
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import SQLAlchemyError

from mailtrek.errors import StateError
from mailtrek.state.schema import metadata

pim_collections = Table(
    "pim_collections",
    metadata,
    Column("mailbox", String(512), primary_key=True),
    Column("src_collection", Text, primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("dest_collection", Text),
    Column("sync_token", Text),  # the source's token when the last run left it complete
    Column("complete", Integer, default=0),
)

pim_items = Table(
    "pim_items",
    metadata,
    Column("mailbox", String(512), primary_key=True),
    Column("src_collection", Text, primary_key=True),
    Column("uid", Text, primary_key=True),
    Column("src_href", Text, nullable=False),
    Column("src_etag", Text),
    Column("dest_href", Text, nullable=False),
)


@dataclass(slots=True)
class CollectionState:
    """What state remembers of one source collection."""

    src_collection: str
    kind: str
    dest_collection: str | None = None
    sync_token: str | None = None
    complete: bool = False


@dataclass(frozen=True, slots=True)
class ItemState:
    """One copied object: where it came from (and at which ETag) and where it went."""

    uid: str
    src_href: str
    src_etag: str | None
    dest_href: str


class PimState:
    """Contact and calendar state of one account move (``mailbox`` names the pair)."""

    FLUSH_EVERY = 100

    def __init__(self, engine: Engine, mailbox: str) -> None:
        self.engine = engine
        self.mailbox = mailbox
        self._pending: list[dict[str, object]] = []

    def collection(self, src_collection: str) -> CollectionState | None:
        with self.engine.connect() as c:
            r = c.execute(select(pim_collections).where(
                pim_collections.c.mailbox == self.mailbox,
                pim_collections.c.src_collection == src_collection)).mappings().first()
        if r is None:
            return None
        return CollectionState(r["src_collection"], r["kind"], r["dest_collection"],
                               r["sync_token"], bool(r["complete"]))

    def save_collection(self, cs: CollectionState) -> None:
        """Insert or replace a collection's row (pending object rows are written first)."""
        self.flush()
        self._upsert(pim_collections, [{
            "mailbox": self.mailbox, "src_collection": cs.src_collection, "kind": cs.kind,
            "dest_collection": cs.dest_collection, "sync_token": cs.sync_token,
            "complete": 1 if cs.complete else 0}], ["mailbox", "src_collection"])

    def items(self, src_collection: str) -> dict[str, ItemState]:
        """Every recorded object of a source collection, keyed by UID."""
        self.flush()
        with self.engine.connect() as c:
            rows = c.execute(select(pim_items).where(
                pim_items.c.mailbox == self.mailbox,
                pim_items.c.src_collection == src_collection)).mappings()
            return {r["uid"]: ItemState(r["uid"], r["src_href"], r["src_etag"], r["dest_href"])
                    for r in rows}

    def record(self, src_collection: str, items: list[ItemState]) -> None:
        """Buffer object rows (after the destination confirmed them); see ``flush``.

        Buffering is safe: an object written whose row was never flushed is found on
        the destination by its UID next time and adopted.
        """
        self._pending += [{
            "mailbox": self.mailbox, "src_collection": src_collection, "uid": i.uid,
            "src_href": i.src_href, "src_etag": i.src_etag, "dest_href": i.dest_href}
            for i in items]
        if len(self._pending) >= self.FLUSH_EVERY:
            self.flush()

    def flush(self) -> None:
        """Write buffered object rows in one transaction."""
        if self._pending:
            rows, self._pending = self._pending, []
            self._upsert(pim_items, rows, ["mailbox", "src_collection", "uid"])

    def forget(self) -> None:
        """Drop every PIM row of this move (as a lost state would)."""
        self._pending = []
        try:
            with self.engine.begin() as c:
                for t in (pim_items, pim_collections):
                    c.execute(delete(t).where(t.c.mailbox == self.mailbox))
        except SQLAlchemyError as e:
            raise StateError(f"cannot write state: {e.__class__.__name__}") from e

    def _upsert(self, table: Table, rows: list[dict[str, object]], keys: list[str]) -> None:
        try:
            with self.engine.begin() as c:
                if self.engine.dialect.name == "sqlite":
                    stmt = sqlite_insert(table)
                else:
                    from sqlalchemy.dialects.postgresql import insert as pg_insert

                    stmt = pg_insert(table)  # type: ignore[assignment]
                cols = {k: stmt.excluded[k] for k in rows[0] if k not in keys}
                c.execute(stmt.on_conflict_do_update(index_elements=keys, set_=cols), rows)
        except SQLAlchemyError as e:
            raise StateError(f"cannot write state: {e.__class__.__name__}: {e}") from e
