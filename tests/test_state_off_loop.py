"""State writes never stall the event loop: a slow database holds up no connection.

The database is made slow for real: another connection holds SQLite's write lock, so
every write waits (busy_timeout) until that lock is released.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path

from mailtrek.state.db import MailboxState, MessageState, open_engine
from mailtrek.stores.memory import MemoryStore
from mailtrek.sync.engine import copy_mailbox
from mailtrek.sync.options import CopyOptions

HOLD = 1.5  # seconds the other connection keeps the write lock


def _hold_write_lock(db: Path, seconds: float) -> threading.Event:
    """Take SQLite's write lock from another connection for ``seconds``; return 'taken'."""
    taken = threading.Event()

    def run() -> None:
        con = sqlite3.connect(db, isolation_level=None)
        con.execute("BEGIN IMMEDIATE")
        taken.set()
        time.sleep(seconds)
        con.execute("COMMIT")
        con.close()

    threading.Thread(target=run, daemon=True).start()
    assert taken.wait(5)
    return taken


async def _max_gap_while(work: asyncio.Future[object] | asyncio.Task[object]) -> float:
    """The longest stretch the loop went without running a 10 ms heartbeat during ``work``."""
    gap, last = 0.0, time.monotonic()
    while not work.done():
        await asyncio.sleep(0.01)
        now = time.monotonic()
        gap, last = max(gap, now - last), now
    await work
    return gap


def test_flush_waits_for_the_lock_off_the_loop(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    state = MailboxState(open_engine(db), "a -> b")
    state.record(("INBOX",), 7, [MessageState(u, str(u), "fp", 10, frozenset()) for u in range(50)])

    async def main() -> tuple[float, float]:
        _hold_write_lock(db, HOLD)
        t = time.monotonic()
        gap = await _max_gap_while(asyncio.ensure_future(state.aflush()))
        return gap, time.monotonic() - t

    gap, took = asyncio.run(main())
    assert took >= HOLD * 0.8  # the flush really waited for the lock
    assert gap < 0.3, f"the event loop stood still for {gap:.2f} s"
    assert len(state.messages_of(("INBOX",), 7)) == 50


def test_batch_hand_off_does_not_block_record(tmp_path: Path) -> None:
    """A full buffer goes to the writer thread; ``record`` returns at once."""
    db = tmp_path / "state.db"
    state = MailboxState(open_engine(db), "a -> b")
    _hold_write_lock(db, HOLD)
    t = time.monotonic()
    state.record(("INBOX",), 7, [MessageState(u, str(u), "fp", 10, frozenset())
                                 for u in range(600)])
    assert time.monotonic() - t < 0.5
    state.flush()  # waits for the handed-off batch
    assert time.monotonic() - t >= HOLD * 0.8
    assert state.count() == 600


def test_a_copy_keeps_its_loop_running_while_state_is_locked(tmp_path: Path) -> None:
    """The engine's own state calls (plan, intents, records, folder marks) run off the loop."""
    db = tmp_path / "state.db"
    state = MailboxState(open_engine(db), "mem -> mem")
    src, dst = MemoryStore(), MemoryStore()
    for i in range(20):
        src.add(("INBOX",), b"Subject: m%d\r\nMessage-ID: <m%d@x>\r\n\r\nbody\r\n" % (i, i))

    async def main() -> float:
        await src.connect()
        await dst.connect()
        _hold_write_lock(db, HOLD)
        return await _max_gap_while(asyncio.ensure_future(
            copy_mailbox(src, dst, state, CopyOptions())))

    gap = asyncio.run(main())
    assert gap < 0.3, f"the event loop stood still for {gap:.2f} s"
    assert state.folder_states()[("INBOX",)].complete
    assert state.count() == 20
