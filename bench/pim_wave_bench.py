#!/usr/bin/env python3
"""Benchmark: contacts and calendars of a whole batch, through the scheduler (Radicale).

Loads ``--users`` accounts with ``--events`` weekly series and ``--contacts`` cards each
into a private Radicale, creates a batch with ``--items calendars,contacts`` (no mail)
from an endpoint whose ``dav_url`` is that Radicale into a destination endpoint on the
same server, runs it with the real runner, and prints the batch's objects/s, then the
time of a no-change incremental round.

    .venv/bin/python bench/pim_wave_bench.py --users 10 --events 40 --contacts 20

A script, not a test: Radicale (pure Python, writes serialised) shares the cores with
mailtrek, so the figures are the server's; see pim_bench.py for one account alone.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from pim_bench import card, event
from sqlalchemy import update

from mailtrek.devtools.dav_load import Loader
from mailtrek.devtools.radicale import RadicaleInstance
from mailtrek.orchestrate.batches import BatchOptions, create_batch, start_batch, user_rows
from mailtrek.orchestrate.csvfile import UserRow
from mailtrek.orchestrate.endpoints import add_endpoint, make_endpoint
from mailtrek.orchestrate.home import open_home, utcnow
from mailtrek.orchestrate.notify import Notifier
from mailtrek.orchestrate.runner import Runner
from mailtrek.state.orchestration import batch_users

DOMAIN = "contoso.test"


def load(inst: RadicaleInstance, user: str, events: int, contacts: int) -> None:
    with Loader(inst.base_url, user, "pw-" + user, verify=inst.ssl_context()) as put:
        cal = put.make_collection("Kalender", "calendar")
        for n in range(events):
            put.put(cal, f"e{n}.ics", event(f"e{n}@{user}", n), "calendar")
        book = put.make_collection("Kontakte", "contacts")
        for n in range(contacts):
            put.put(book, f"c{n}.vcf", card(f"c{n}@{user}", n), "contacts")


async def run(home) -> float:
    started = time.monotonic()
    await Runner(home, notifier=Notifier(None), poll_seconds=0.05).run(until_idle=True)
    return time.monotonic() - started


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=10)
    ap.add_argument("--events", type=int, default=40)
    ap.add_argument("--contacts", type=int, default=20)
    a = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="mt-pim-wave-bench-"))
    inst = RadicaleInstance(root / "radicale", tls=True)
    try:
        inst.start()
        users = [f"w{i:03d}" for i in range(a.users)]
        for u in users:
            inst.add_user(u, "pw-" + u)
            inst.add_user(f"{u}@{DOMAIN}", "pw-" + u)
            load(inst, u, a.events, a.contacts)
        home = open_home(root / "home")
        for name in ("src", "dst"):
            add_endpoint(home, make_endpoint(name, host="127.0.0.1", port=1, ca_file=str(inst.ca_file),
                                             dav_url=inst.base_url))
        create_batch(home, "bench", endpoint="src", dest_endpoint="dst",
                     users=[UserRow(i + 2, f"{u}@{DOMAIN}", u, "pw-" + u) for i, u in enumerate(users)],
                     options=BatchOptions(items=["calendars", "contacts"]))
        start_batch(home, "bench")
        took = asyncio.run(run(home))
        rows = user_rows(home, "bench")
        copied = sum(r["pim"]["copied"] for r in rows if r["pim"])
        failed = sum(r["pim"]["failed"] for r in rows if r["pim"])
        print(f"batch: {a.users} users, {copied} objects copied ({failed} failed) in {took:.2f} s "
              f"= {copied / took:.1f} objects/s")
        with home.engine.begin() as c:
            c.execute(update(batch_users).values(next_sync=utcnow() - timedelta(seconds=1)))
        again = asyncio.run(run(home))
        rows = user_rows(home, "bench")
        print(f"no-change incremental round: {again:.2f} s, "
              f"{sum(r['pim']['copied'] for r in rows if r['pim'])} copied")
    finally:
        inst.remove()
    return 0


if __name__ == "__main__":
    sys.exit(main())
