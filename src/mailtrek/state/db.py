"""Open the state database and read/write one mailbox move's state.

Copy first, record second: the executor records a message only after the destination
confirmed it. Writes are buffered and flushed in batches (``flush``), which is safe
because anything on the destination that state does not know is found again by
fingerprint on the next run.

Database calls never run on the event loop: one writer thread per process takes every
write of every mailbox in order (``record`` hands full batches to it without waiting),
and coroutines reach the database with ``await state.call(method, ...)``, which runs the
method there. A flush waiting for a lock (another process writing SQLite, a busy
PostgreSQL) then holds up no pipelined connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, delete, event, select
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import SQLAlchemyError

from mailtrek.errors import StateError
from mailtrek.state.schema import folders, messages

SEP = "\x1f"
FLUSH_EVERY = 500  # buffered message rows handed to the writer at once
WRITER_NAME = "mailtrek-state"
T = TypeVar("T")

_writer_lock = threading.Lock()
_writer_pool: ThreadPoolExecutor | None = None


def _writer() -> ThreadPoolExecutor:
    """The process's one state-writer thread (started on first use)."""
    global _writer_pool
    with _writer_lock:
        if _writer_pool is None:
            _writer_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=WRITER_NAME)
        return _writer_pool


def _on_writer() -> bool:
    return threading.current_thread().name.startswith(WRITER_NAME)


def path_key(path: tuple[str, ...]) -> str:
    """Serialise a folder path for a key column."""
    return SEP.join(path)


def path_from_key(key: str) -> tuple[str, ...]:
    return tuple(key.split(SEP)) if key else ()


def open_engine(url_or_path: str | os.PathLike[str]) -> Engine:
    """Return an engine for a SQLite path or a database URL, migrated to the newest schema.

    ``postgresql://`` URLs use psycopg 3. Raises StateError when the database cannot be
    opened (the message never shows a password from the URL).
    """
    from mailtrek.state.migrate import all_metadata, upgrade

    text = database_url(url_or_path)
    try:
        engine = create_engine(text, future=True, pool_pre_ping=True)  # pre-ping: survive DB restarts
        if engine.dialect.name == "sqlite":
            event.listen(engine, "connect", _sqlite_pragmas)
        upgrade(engine)
        # Tables a module added to the metadata before its migration was written.
        all_metadata().create_all(engine)
    except SQLAlchemyError as e:
        raise _open_error(text, e) from e
    return engine


def _open_error(url: str, e: Exception) -> StateError:
    """Return what to tell the admin about a database that would not open (never the password)."""
    detail = str(getattr(e, "orig", None) or e)
    if "password authentication failed" in detail or "no password supplied" in detail:
        from sqlalchemy.engine import make_url

        user = make_url(url).username or "?"
        return StateError(f"cannot open state database {safe_url(url)}: authentication failed for user {user}",
                          hint="give the password with PGPASSWORD or a ~/.pgpass line (mode 0600), or in "
                               "HOME/database-url; never on the command line")
    return StateError(f"cannot open state database {safe_url(url)}: {e.__class__.__name__}",
                      hint="check the path or URL, the server and the permissions")


def database_url(url_or_path: str | os.PathLike[str]) -> str:
    """Return a SQLAlchemy URL for a SQLite path or a database URL (creates SQLite's folder)."""
    text = str(url_or_path)
    if "://" not in text:
        path = Path(text).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        _private_file(path)
        return f"sqlite:///{path}"
    for plain in ("postgresql://", "postgres://"):
        if text.startswith(plain):  # SQLAlchemy's default driver would be psycopg2
            return "postgresql+psycopg://" + text[len(plain):]
    return text


def _private_file(path: Path) -> None:
    """Create ``path`` readable by its owner only (0600); tighten a group/world-readable one.

    SQLite gives its -wal and -shm files the database file's mode, so they follow. An
    existing file is never opened here: closing any descriptor of a file drops every POSIX
    lock this process holds on it, which pulls the locks from under SQLite connections that
    are open already (seen as "disk I/O error" on the next write).
    """
    try:
        if not path.exists():
            with contextlib.suppress(FileExistsError):  # another process created it meanwhile
                os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        if path.stat().st_mode & 0o077:
            os.chmod(path, 0o600)
    except OSError:
        pass  # a read-only location: opening the database will say what is wrong


def safe_url(url: str) -> str:
    """Return ``url`` with any password masked, for messages and logs."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(unparsable database URL)"


def _sqlite_pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


@dataclass(slots=True)
class FolderState:
    """What state remembers of one source folder and its destination twin."""

    src_path: tuple[str, ...]
    src_uidvalidity: int | None = None
    src_uidnext: int | None = None
    src_highestmodseq: int | None = None
    src_messages: int | None = None
    dest_path: tuple[str, ...] | None = None
    dest_uidvalidity: int | None = None
    dest_uidnext: int | None = None
    dest_messages: int | None = None
    dest_store_id: str | None = None
    complete: bool = False


@dataclass(slots=True)
class MessageState:
    """One copied (or in-doubt) message."""

    src_uid: int
    dest_id: str | None
    fingerprint: str | None
    size: int
    flags: frozenset[str]
    status: str = "done"


class MailboxState:
    """State of one mailbox move (one source mailbox to one destination mailbox)."""

    def __init__(self, engine: Engine, mailbox: str) -> None:
        self.engine = engine
        self.mailbox = mailbox
        self._pending: list[dict[str, object]] = []
        self._queued: Future[None] | None = None  # the newest write handed to the writer
        self._error: StateError | None = None  # a handed-off write that failed

    # -- off the event loop ----------------------------------------------------
    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` (a method of this state) on the writer thread and await it.

        What coroutines use instead of calling the database themselves: the event loop
        (and every connection it drives) keeps running while the database is slow.
        """
        if self._pending:
            self._hand_off()  # rows buffered so far are written first
        return await asyncio.wrap_future(_writer().submit(fn, *args))

    async def aflush(self) -> None:
        """``flush`` without blocking the event loop."""
        await self.call(self.flush)

    # -- folders -------------------------------------------------------------
    def folder_states(self) -> dict[tuple[str, ...], FolderState]:
        """Return every folder's state, keyed by source path."""
        with self.engine.connect() as c:
            rows = c.execute(select(folders).where(folders.c.mailbox == self.mailbox)).mappings()
            out = {}
            for r in rows:
                p = path_from_key(r["src_path"])
                out[p] = FolderState(
                    src_path=p,
                    src_uidvalidity=r["src_uidvalidity"],
                    src_uidnext=r["src_uidnext"],
                    src_highestmodseq=r["src_highestmodseq"],
                    src_messages=r["src_messages"],
                    dest_path=path_from_key(r["dest_path"]) if r["dest_path"] is not None else None,
                    dest_uidvalidity=r["dest_uidvalidity"],
                    dest_uidnext=r["dest_uidnext"],
                    dest_messages=r["dest_messages"],
                    dest_store_id=r["dest_store_id"],
                    complete=bool(r["complete"]),
                )
            return out

    def save_folder(self, fs: FolderState) -> None:
        """Insert or replace one folder's state (flushes pending messages first)."""
        self.flush()
        row: dict[str, object] = {
            "mailbox": self.mailbox,
            "src_path": path_key(fs.src_path),
            "src_uidvalidity": fs.src_uidvalidity,
            "src_uidnext": fs.src_uidnext,
            "src_highestmodseq": fs.src_highestmodseq,
            "src_messages": fs.src_messages,
            "dest_path": path_key(fs.dest_path) if fs.dest_path is not None else None,
            "dest_uidvalidity": fs.dest_uidvalidity,
            "dest_uidnext": fs.dest_uidnext,
            "dest_messages": fs.dest_messages,
            "dest_store_id": fs.dest_store_id,
            "complete": 1 if fs.complete else 0,
        }
        self._upsert(folders, [row], ["mailbox", "src_path"])

    def forget_folder(self, src_path: tuple[str, ...], uidvalidity: int | None = None) -> None:
        """Drop message rows of a folder (all, or those of an old UIDVALIDITY)."""
        self.flush()
        with self._begin() as c:
            q = delete(messages).where(
                messages.c.mailbox == self.mailbox, messages.c.src_path == path_key(src_path)
            )
            if uidvalidity is not None:
                q = q.where(messages.c.src_uidvalidity == uidvalidity)
            c.execute(q)

    def forget_messages(self, src_path: tuple[str, ...], uidvalidity: int | None,
                        uids: Iterable[int]) -> None:
        """Drop the rows of these source UIDs (e.g. intents of refused appends)."""
        self.flush()
        wanted = list(uids)
        if not wanted:
            return
        with self._begin() as c:
            c.execute(delete(messages).where(
                messages.c.mailbox == self.mailbox, messages.c.src_path == path_key(src_path),
                messages.c.src_uidvalidity == (uidvalidity or 0),
                messages.c.src_uid.in_(wanted)))

    # -- messages ------------------------------------------------------------
    def messages_of(self, src_path: tuple[str, ...], uidvalidity: int | None) -> dict[int, MessageState]:
        """Return the recorded messages of a folder, keyed by source UID."""
        self.flush()
        with self.engine.connect() as c:
            rows = c.execute(
                select(messages).where(
                    messages.c.mailbox == self.mailbox,
                    messages.c.src_path == path_key(src_path),
                    messages.c.src_uidvalidity == (uidvalidity or 0),
                )
            ).mappings()
            return {
                r["src_uid"]: MessageState(
                    src_uid=r["src_uid"],
                    dest_id=r["dest_id"],
                    fingerprint=r["fingerprint"],
                    size=r["size"] or 0,
                    flags=frozenset((r["flags"] or "").split()),
                    status=r["status"],
                )
                for r in rows
            }

    def record(
        self,
        src_path: tuple[str, ...],
        uidvalidity: int | None,
        items: Iterable[MessageState],
    ) -> None:
        """Buffer message rows; written by ``flush`` (or when enough are pending)."""
        key = path_key(src_path)
        for m in items:
            self._pending.append(
                {
                    "mailbox": self.mailbox,
                    "src_path": key,
                    "src_uidvalidity": uidvalidity or 0,
                    "src_uid": m.src_uid,
                    "dest_id": m.dest_id,
                    "fingerprint": m.fingerprint,
                    "size": m.size,
                    "flags": " ".join(sorted(m.flags)),
                    "status": m.status,
                }
            )
        if len(self._pending) >= FLUSH_EVERY:
            self._hand_off()

    def update_flags(
        self, src_path: tuple[str, ...], uidvalidity: int | None, items: Iterable[tuple[int, frozenset[str]]]
    ) -> None:
        """Remember the flags now on the destination for already recorded messages."""
        self.flush()
        rows = [{"u": uid, "f": " ".join(sorted(flags))} for uid, flags in items]
        if not rows:
            return
        from sqlalchemy import bindparam, update

        stmt = (
            update(messages)
            .where(messages.c.mailbox == self.mailbox, messages.c.src_path == path_key(src_path),
                   messages.c.src_uidvalidity == (uidvalidity or 0),
                   messages.c.src_uid == bindparam("u"))
            .values(flags=bindparam("f"))
        )
        try:
            with self.engine.begin() as c:
                c.execute(stmt, rows)
        except SQLAlchemyError as e:
            raise StateError(f"cannot write state: {e.__class__.__name__}: {e}") from e

    def flush(self) -> None:
        """Write buffered message rows in one transaction (and wait for handed-off ones).

        Raises StateError for a write that failed, here or on the writer thread. On the
        writer thread itself (inside ``call``) every earlier write is done already; the
        buffer belongs to the caller's thread and is handed over before ``call`` runs.
        """
        if not _on_writer():
            if self._pending:
                self._hand_off()
            queued = self._queued
            if queued is not None:
                queued.result()
        if self._error is not None:
            err, self._error = self._error, None
            raise err

    def _hand_off(self) -> None:
        """Give the buffered rows to the writer thread; do not wait for them."""
        rows, self._pending = self._pending, []
        if _on_writer():
            self._write(rows)
        else:
            self._queued = _writer().submit(self._write, rows)

    def _write(self, rows: list[dict[str, object]]) -> None:
        """Upsert message rows; a failure is kept for the next ``flush`` to raise."""
        if not rows:
            return
        try:
            self._upsert(messages, rows, ["mailbox", "src_path", "src_uidvalidity", "src_uid"])
        except StateError as e:
            self._error = self._error or e

    def count(self) -> int:
        """Number of recorded messages of this mailbox."""
        from sqlalchemy import func

        self.flush()
        with self.engine.connect() as c:
            return int(
                c.execute(
                    select(func.count()).select_from(messages).where(messages.c.mailbox == self.mailbox)
                ).scalar_one()
            )

    def totals(self) -> tuple[int, int]:
        """Return (messages, bytes) recorded for this mailbox."""
        from sqlalchemy import func

        self.flush()
        with self.engine.connect() as c:
            n, size = c.execute(
                select(func.count(), func.coalesce(func.sum(messages.c.size), 0))
                .select_from(messages).where(messages.c.mailbox == self.mailbox)).one()
        return int(n), int(size)

    def folder_counts(self) -> dict[tuple[str, ...], int]:
        """Return the recorded messages per source folder."""
        from sqlalchemy import func

        self.flush()
        with self.engine.connect() as c:
            rows = c.execute(select(messages.c.src_path, func.count()).where(messages.c.mailbox == self.mailbox)
                             .group_by(messages.c.src_path)).all()
        return {path_from_key(p): int(n) for p, n in rows}

    # -- helpers -------------------------------------------------------------
    def _begin(self):  # type: ignore[no-untyped-def]
        try:
            return self.engine.begin()
        except SQLAlchemyError as e:  # pragma: no cover - depends on the DB going away
            raise StateError(f"state database unavailable: {e.__class__.__name__}") from e

    def _upsert(self, table, rows: list[dict[str, object]], keys: list[str]) -> None:  # type: ignore[no-untyped-def]
        try:
            with self.engine.begin() as c:
                stmt: Any
                if self.engine.dialect.name == "sqlite":
                    stmt = sqlite_insert(table)
                else:
                    from sqlalchemy.dialects.postgresql import insert as pg_insert

                    stmt = pg_insert(table)
                cols = {k: stmt.excluded[k] for k in rows[0] if k not in keys}
                c.execute(stmt.on_conflict_do_update(index_elements=keys, set_=cols), rows)
        except SQLAlchemyError as e:
            raise StateError(f"cannot write state: {e.__class__.__name__}: {e}") from e
