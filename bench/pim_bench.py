#!/usr/bin/env python3
"""Benchmark: contacts and calendars DAV to DAV through a private Radicale.

Generates calendars (weekly series, some with a moved instance, non-ASCII titles) and an
address book, loads them into one Radicale user with plain sequential PUTs (the "raw PUT
ceiling": what any client pays to write them), then copies them with mailtrek into a
second user and prints objects/s, the no-change re-run time, the time to adopt
everything after losing the state, and whether ``verify`` finds both sides equal.

    .venv/bin/python bench/pim_bench.py --events 400 --contacts 200

A script, not a test: the server (Radicale, pure Python) and the client share the
machine's cores, and Radicale serialises writes, so the figures are the server's.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

from mailtrek.devtools.dav_load import Loader
from mailtrek.devtools.radicale import RadicaleInstance
from mailtrek.pim.model import KINDS
from mailtrek.pim.sync import copy_pim
from mailtrek.pim.verify import verify_pim
from mailtrek.state.db import open_engine
from mailtrek.state.pim import PimState
from mailtrek.stores.dav import DavStore, parse_dav_address

PER_CALENDAR = 100


def event(uid: str, n: int) -> bytes:
    moved = (f"BEGIN:VEVENT\r\nUID:{uid}\r\nDTSTAMP:20240101T000000Z\r\n"
             "RECURRENCE-ID:20240115T090000Z\r\nDTSTART:20240116T140000Z\r\n"
             f"DTEND:20240116T150000Z\r\nSUMMARY:Réunion {n} (verschoben)\r\nEND:VEVENT\r\n"
             if n % 5 == 0 else "")
    return ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//mailtrek bench//EN\r\n"
            f"BEGIN:VEVENT\r\nUID:{uid}\r\nDTSTAMP:20240101T000000Z\r\n"
            "DTSTART:20240101T090000Z\r\nDTEND:20240101T100000Z\r\n"
            f"SUMMARY:Réunion {n} – 会议\r\nRRULE:FREQ=WEEKLY;COUNT=20\r\nEND:VEVENT\r\n"
            f"{moved}END:VCALENDAR\r\n").encode()


def card(uid: str, n: int) -> bytes:
    return (f"BEGIN:VCARD\r\nVERSION:3.0\r\nUID:{uid}\r\nFN:Zoë Person {n}\r\n"
            f"N:Person {n};Zoë;;;\r\nEMAIL:p{n}@example.org\r\nTEL;TYPE=CELL:+4917{n:07d}\r\n"
            "END:VCARD\r\n").encode()


def load(inst: RadicaleInstance, user: str, password: str, events: int,
         contacts: int) -> float:
    started = time.monotonic()
    with Loader(inst.base_url, user, password, verify=inst.ssl_context()) as put:
        for k in range(0, events, PER_CALENDAR):
            cal = put.make_collection(f"Kalender {k // PER_CALENDAR + 1}", "calendar")
            for n in range(k, min(events, k + PER_CALENDAR)):
                put.put(cal, f"e{n}.ics", event(f"e{n}@bench", n), "calendar")
        book = put.make_collection("Kontakte", "contacts")
        for n in range(contacts):
            put.put(book, f"c{n}.vcf", card(f"c{n}@bench", n), "contacts")
    return time.monotonic() - started


async def copy(inst: RadicaleInstance, root: Path) -> list[str]:
    def store(user: str) -> DavStore:
        return DavStore(parse_dav_address(inst.dav_url(user)), "pw-" + user,
                        ca_file=str(inst.ca_file))

    lines = []
    src, dst = store("src"), store("dst")
    await asyncio.gather(src.connect(), dst.connect())
    try:
        state = PimState(open_engine(root / "state.db"), "bench")
        first = await copy_pim(src, dst, state, KINDS)
        t = first.totals()
        lines.append(f"copy: {t['copied']} objects in {first.elapsed:.2f} s = "
                     f"{first.items_per_second()} objects/s ({t['failed']} failed)")
        src._collections = None
        again = await copy_pim(src, dst, state, KINDS)
        lines.append(f"no-change re-run: {again.elapsed:.2f} s, "
                     f"{again.totals()['copied']} copied")
        src._collections = None
        lost = await copy_pim(src, dst, PimState(open_engine(root / "lost.db"), "bench"), KINDS)
        lines.append(f"lost state: {lost.totals()['adopted']} adopted in {lost.elapsed:.2f} s, "
                     f"{lost.totals()['copied']} copied")
        v = await verify_pim(src, dst, KINDS)
        lines.append(f"verify: {'equal' if v['ok'] else 'DIFFERENT'} ({v['totals']})")
    finally:
        await asyncio.gather(src.close(), dst.close())
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=400)
    ap.add_argument("--contacts", type=int, default=200)
    a = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="mt-pim-bench-"))
    inst = RadicaleInstance(root / "radicale", tls=True)
    try:
        inst.start()
        for user in ("src", "dst"):
            inst.add_user(user, "pw-" + user)
        took = load(inst, "src", "pw-src", a.events, a.contacts)
        total = a.events + a.contacts
        print(f"raw PUT ceiling (sequential PUTs of the generated objects): {total} in "
              f"{took:.2f} s = {total / took:.1f} objects/s")
        for line in asyncio.run(copy(inst, root)):
            print(line)
    finally:
        inst.remove()
    return 0


if __name__ == "__main__":
    sys.exit(main())
