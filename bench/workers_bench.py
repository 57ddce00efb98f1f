#!/usr/bin/env python3
"""Benchmark: one batch moved by 1, 2 and 4 `mailtrek worker` processes on PostgreSQL.

Everything real and local: a private PostgreSQL (Debian's binaries), a private Dovecot
as the source, the Microsoft 365 simulator as the destination, workers as subprocesses.
Each round moves the same batch shape into fresh destination users, timed from
`batch start` to the batch being Synced. Prints messages/s per round, the scaling ratio
against one worker, and procrastinate's own cost per job (no-op jobs deferred, fetched
and finished through the same database).

    .venv/bin/python bench/workers_bench.py --users 24 --messages 60 --workers 1,2,4

A script, not a test: on a 2-core machine the source server, the simulator, PostgreSQL
and the workers share the same two cores, so scaling flattens early; run it where the
workers have their own machines to see the fan-out.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mailtrek.devtools.dovecot import DovecotInstance
from mailtrek.sim.config import SimConfig
from mailtrek.sim.server import Simulator
from mailtrek.state.pgserver import PgServer, private_postgres

MAILTREK = [sys.executable, "-c", "import sys; from mailtrek.cli.main import main; sys.argv[0] = 'mailtrek'; main()"]
DOMAIN = "contoso.test"


def cli(env: dict[str, str], *args: str) -> str:
    p = subprocess.run([*MAILTREK, *args], env=env, capture_output=True, text=True, timeout=600)
    if p.returncode != 0:
        raise SystemExit(f"mailtrek {' '.join(args)} failed:\n{p.stderr}")
    return p.stdout


def message(user: str, n: int, size: int) -> bytes:
    return (f"From: s{n}@example.test\r\nTo: {user}@{DOMAIN}\r\nSubject: message {n}\r\n"
            f"Message-ID: <{user}.{n}@bench.test>\r\nDate: Mon, 2 Mar 2026 10:00:00 +0000\r\n\r\n"
            + "x" * size + "\r\n").encode()


def fill_source(dov: DovecotInstance, users: int, messages: int, size: int) -> dict[str, str]:
    import imaplib
    import ssl

    out = {}
    for i in range(users):
        name = f"bench{i}"
        out[name] = f"Pw-{name}-{os.urandom(4).hex()}"
        dov.add_user(name, out[name])
        c = imaplib.IMAP4_SSL(dov.host, dov.ssl_port, ssl_context=ssl.create_default_context(cafile=str(dov.ca_file)))
        c.login(name, out[name])
        for n in range(messages):
            c.append("INBOX", "", None, message(name, n, size))
        c.logout()
    return out


def one_round(workers: int, concurrency: int, pg: PgServer, dov: DovecotInstance, sim: Simulator,
              users: dict[str, str], tmp: Path, rnd: int) -> tuple[float, int]:
    """Move the batch with ``workers`` workers; return (seconds, messages on the destination)."""
    pg.reset()
    home = tmp / f"home{rnd}"
    env = dict(os.environ, MAILTREK_HOME=str(home), MAILTREK_DATABASE_URL=pg.url)
    # The destination addresses differ per round (fresh, empty mailboxes); the source is shared.
    csv = tmp / f"users{rnd}.csv"
    csv.write_text("EmailAddress,UserName,Password\n" + "".join(
        f"r{rnd}{n}@{DOMAIN},{n},{p}\n" for n, p in users.items()))
    for n in users:
        sim.add_user(f"r{rnd}{n}@{DOMAIN}")
    cli(env, "endpoint", "add", "src", "--host", dov.host, "--port", str(dov.ssl_port), "--security", "ssl",
        "--ca-file", str(dov.ca_file), "--max-concurrent-migrations", "100")
    secret = tmp / "secret"
    secret.write_text("bench-secret\n")
    cli(env, "tenant", "add", "t", "--tenant-id", sim.config.tenant_id, "--client-id", "bench",
        "--client-secret-file", str(secret), "--m365-authority", sim.authority(),
        "--graph-url", f"{sim.base_url}/graph", "--ca-file", str(sim.ca_file))
    cli(env, "batch", "create", "b", "--endpoint", "src", "--tenant", "t", "--csv", str(csv))
    procs = [subprocess.Popen([*MAILTREK, "worker", "--concurrency", str(concurrency), "--poll", "0.5"],
                              env=env, stdout=subprocess.DEVNULL, stderr=(tmp / f"w{rnd}-{i}.log").open("w"))
             for i in range(workers)]
    time.sleep(2.0)  # let workers start (imports, pool) before the clock runs
    t0 = time.monotonic()
    cli(env, "batch", "start", "b")
    while True:
        doc = json.loads(cli(env, "batch", "show", "b", "--json"))
        if doc["status"] in ("Synced", "SyncedWithErrors"):
            break
        if time.monotonic() - t0 > 900:
            raise SystemExit("round timed out")
        time.sleep(0.25)
    wall = time.monotonic() - t0
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        p.wait(timeout=60)
    copied = sum(len(sim.messages(f"r{rnd}{n}@{DOMAIN}")) for n in users)
    if doc["status"] != "Synced":
        print(f"  warning: batch ended {doc['status']}")
    return wall, copied


async def job_overhead(pg: PgServer, jobs: int) -> float:
    """Return procrastinate's seconds per no-op job: defer, fetch, run, finish."""
    import procrastinate

    from mailtrek.orchestrate.workers import conninfo_of
    from mailtrek.state.db import open_engine

    pg.reset()
    open_engine(pg.url).dispose()  # schema via the migrations
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=conninfo_of(pg.url)))
    done = asyncio.Event()
    count = 0

    @app.task(name="noop", queue="bench")
    async def noop(i: int) -> None:
        nonlocal count
        count += 1
        if count == jobs:
            done.set()

    async with app.open_async():
        for i in range(jobs):
            await noop.configure(lock=f"mailbox:{i}", queueing_lock=f"mailbox:{i}").defer_async(i=i)
        t0 = time.monotonic()
        worker = asyncio.create_task(app.run_worker_async(queues=["bench"], concurrency=4,
                                                          install_signal_handlers=False))
        await done.wait()
        elapsed = time.monotonic() - t0
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)
    return elapsed / jobs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=24)
    ap.add_argument("--messages", type=int, default=60, help="messages per user")
    ap.add_argument("--size", type=int, default=4000, help="body bytes per message")
    ap.add_argument("--workers", default="1,2,4")
    ap.add_argument("--concurrency", type=int, default=4, help="moves at once per worker")
    ap.add_argument("--noop-jobs", type=int, default=300)
    args = ap.parse_args()
    counts = [int(x) for x in args.workers.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="mt-wb-", dir="/tmp"))
    dov = DovecotInstance(tmp / "dov", name="wbsrc", layout="index")
    dov.start()
    sim = Simulator(SimConfig(users=[]))
    sim.start()
    try:
        with private_postgres() as pg:
            print(f"filling the source: {args.users} users x {args.messages} messages of ~{args.size} B ...")
            users = fill_source(dov, args.users, args.messages, args.size)
            total = args.users * args.messages
            results = {}
            for rnd, w in enumerate(counts):
                wall, copied = one_round(w, args.concurrency, pg, dov, sim, users, tmp, rnd)
                results[w] = wall
                ok = "complete" if copied == total else f"INCOMPLETE {copied}/{total}"
                print(f"{w} worker(s) x {args.concurrency}: {wall:6.1f} s  {total / wall:7.1f} msg/s  "
                      f"{args.users / wall:5.2f} mailboxes/s  ({ok})")
            base = results[counts[0]]
            print("scaling vs " + f"{counts[0]} worker: " + ", ".join(
                f"{w} -> {base / results[w]:.2f}x" for w in counts[1:]))
            per_job = asyncio.run(job_overhead(pg, args.noop_jobs))
            print(f"job engine overhead: {per_job * 1000:.1f} ms per job (procrastinate defer+fetch+finish, "
                  f"{args.noop_jobs} no-op jobs)")
    finally:
        sim.stop()
        dov.remove()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
