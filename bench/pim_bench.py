#!/usr/bin/env python3
"""Benchmark: contacts and calendars DAV to DAV through a private Radicale.

Generates calendars (weekly series, some with a moved instance, non-ASCII titles) and an
address book, loads them into one Radicale user with plain sequential PUTs (the "raw PUT
ceiling": what any client pays to write them), then copies them with mailtrek into a
second user and prints objects/s, the no-change re-run time, the time to adopt
everything after losing the state, and whether ``verify`` finds both sides equal.

Then the same objects into Microsoft 365: the simulator in its own process (as
``bench/m365_bench.py`` runs it) with Microsoft's per-mailbox limits (4 concurrent
requests, 10,000 requests per 10 minutes, windows shrunk by ``--window-scale`` at the
same rates) and realistic service latency; printed as one table row beside the mail
figures of ``bench/m365_bench.py`` (``--mail-messages``: one mailbox of that many
messages, 0 to leave it out): items/s, Graph requests per item, requests/s against the
16.7/s ceiling, 429s, invitations sent (must be 0).

    .venv/bin/python bench/pim_bench.py --events 400 --contacts 200 --mail-messages 300

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
REQ_RATE = 10_000 / 600  # Microsoft's requests per second per mailbox (and app)


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


def task(uid: str, n: int) -> bytes:
    """A VTODO (to a Microsoft To Do list): due in Berlin, every third done, some monthly."""
    status = "COMPLETED" if n % 3 == 0 else "NEEDS-ACTION"
    rule = "RRULE:FREQ=MONTHLY;COUNT=6\r\n" if n % 4 == 0 else ""
    return ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//mailtrek bench//EN\r\n"
            f"BEGIN:VTODO\r\nUID:{uid}\r\nDTSTAMP:20240101T000000Z\r\n"
            f"SUMMARY:Aufgabe {n} – 任务\r\nDUE;TZID=Europe/Berlin:20240301T170000\r\n"
            f"STATUS:{status}\r\nPRIORITY:{n % 10}\r\n{rule}END:VTODO\r\n"
            "END:VCALENDAR\r\n").encode()


def load(inst: RadicaleInstance, user: str, password: str, events: int,
         contacts: int, tasks: int = 0) -> float:
    started = time.monotonic()
    with Loader(inst.base_url, user, password, verify=inst.ssl_context()) as put:
        for k in range(0, events, PER_CALENDAR):
            cal = put.make_collection(f"Kalender {k // PER_CALENDAR + 1}", "calendar")
            for n in range(k, min(events, k + PER_CALENDAR)):
                put.put(cal, f"e{n}.ics", event_with_people(f"e{n}@bench", n), "calendar")
        if tasks:
            todo = put.make_collection("Aufgaben", "calendar")
            for n in range(tasks):
                put.put(todo, f"t{n}.ics", task(f"t{n}@bench", n), "calendar")
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


def event_with_people(uid: str, n: int) -> bytes:
    """Every tenth event is a meeting: Graph must not invite its attendees."""
    body = event(uid, n)
    if n % 10:
        return body
    return body.replace(b"RRULE:", b"ORGANIZER;CN=Boss:mailto:boss@example.org\r\n"
                        b"ATTENDEE;CN=Ann:mailto:ann@example.org\r\nRRULE:", 1)


async def into_m365(inst: RadicaleInstance, root: Path, scale: float) -> str:
    """Copy the source user into the simulator; one markdown table row."""
    sys.path.insert(0, str(Path(__file__).parent))
    from m365_bench import SimProcess

    from mailtrek.pacer import Pacer, PacerLimits
    from mailtrek.stores.m365 import GraphClient, TenantConfig
    from mailtrek.stores.m365.pim_store import GraphPimStore

    upn = "pim@contoso.test"
    sim = SimProcess([upn], scale, root / "sim")
    try:
        tenant = TenantConfig(tenant_id=sim.tenant_id, client_id="bench", client_secret="x",
                              authority=sim.authority(), graph_url=sim.graph_url,
                              ca_file=Path(sim.ca_file))
        limits = PacerLimits(requests_per_window=int(10_000 * scale),
                             request_window=600 * scale)
        client = GraphClient(tenant, pacer=Pacer(limits))
        src = DavStore(parse_dav_address(inst.dav_url("src")), "pw-src",
                       ca_file=str(inst.ca_file))
        dst = GraphPimStore(upn, tenant, client=client)
        await asyncio.gather(src.connect(), dst.connect())
        before = sim.stats()["graph_requests"]
        try:
            r = await copy_pim(src, dst, PimState(open_engine(root / "m365.db"), "bench"), KINDS)
        finally:
            await asyncio.gather(src.close(), dst.close())
            await client.close()
        st = sim.stats()
    finally:
        sim.close()
    t = r.totals()
    reqs = st["graph_requests"] - before
    held = st["users"][upn]
    return (f"| contacts+calendars (Graph) | {t['copied']} items | {r.elapsed:.1f} | "
            f"{t['copied'] / r.elapsed:.1f} items/s | {reqs / max(1, t['copied']):.2f} | "
            f"{reqs / r.elapsed:.1f} ({reqs / r.elapsed / REQ_RATE:.0%}) | "
            f"{st['statuses'].get('429', 0)} | {t['failed']} failed; "
            f"{held['events']} events + {held['contacts']} contacts + "
            f"{held.get('tasks', 0)} tasks held; "
            f"{st['invitations_sent']} invitations sent |")


def mail_rows(messages: int, scale: float) -> list[str]:
    """``bench/m365_bench.py`` for one mailbox: its table row, in this table's columns."""
    import subprocess

    out = subprocess.run([sys.executable, str(Path(__file__).parent / "m365_bench.py"),
                          "--mailboxes", "1", "--messages", str(messages),
                          "--window-scale", str(scale)], capture_output=True, text=True)
    rows = [line for line in out.stdout.splitlines() if line.startswith("| 1 |")]
    if not rows:
        return [f"| mail (Graph) | m365_bench failed: {out.stderr.strip()[-200:]} |"]
    c = [x.strip() for x in rows[0].strip("|").split("|")]
    wall, per_s, req_s, reqs, throttled = c[1], c[2], c[4], c[10], c[9]
    return [f"| mail (Graph, m365_bench) | {messages} messages | {wall} | {per_s} msgs/s | "
            f"{int(reqs) / messages:.2f} | {req_s} ({float(req_s) / REQ_RATE:.0%}) | "
            f"{throttled} | lost {c[11]}, duplicated {c[12]} |"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=400)
    ap.add_argument("--contacts", type=int, default=200)
    ap.add_argument("--tasks", type=int, default=0,
                    help="VTODOs in a calendar of their own (into Graph: a To Do list)")
    ap.add_argument("--window-scale", type=float, default=0.05,
                    help="shrink Microsoft's windows and budgets alike (same rates)")
    ap.add_argument("--mail-messages", type=int, default=300,
                    help="run bench/m365_bench.py for one mailbox of this many messages "
                         "beside the Graph figures (0: do not)")
    a = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="mt-pim-bench-"))
    inst = RadicaleInstance(root / "radicale", tls=True)
    try:
        inst.start()
        for user in ("src", "dst"):
            inst.add_user(user, "pw-" + user)
        took = load(inst, "src", "pw-src", a.events, a.contacts, a.tasks)
        total = a.events + a.contacts + a.tasks
        print(f"raw PUT ceiling (sequential PUTs of the generated objects): {total} in "
              f"{took:.2f} s = {total / took:.1f} objects/s")
        for line in asyncio.run(copy(inst, root)):
            print(line)
        print("\nInto Microsoft 365 (simulator process, Microsoft's limits, window scale "
              f"{a.window_scale}):")
        print("| route | items | wall s | items/s | Graph requests per item | requests/s "
              "(of the 16.7/s ceiling) | 429s | notes |")
        print("|---|---|---|---|---|---|---|---|")
        print(asyncio.run(into_m365(inst, root, a.window_scale)), flush=True)
        if a.mail_messages:
            for row in mail_rows(a.mail_messages, a.window_scale):
                print(row)
    finally:
        inst.remove()
    return 0


if __name__ == "__main__":
    sys.exit(main())
