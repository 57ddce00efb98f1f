#!/usr/bin/env python3
"""Benchmark: mailtrek against mbsync and Dovecot's imapc migration, side by side.

Generates a realistic mailbox, loads it into a private source Dovecot, then copies it
into fresh destination users with each tool, on loopback and through a proxy adding
round-trip time to both links (dsync: the source link only, as it writes the
destination's store directly). Prints messages/s, MB/s, peak RSS, the no-change re-run
time, whether the result is complete and byte-exact (SHA-256, flags with keywords,
INTERNALDATE instants) and mailtrek's ratio to each tool.

    .venv/bin/python bench/copy_bench.py --count 5000 --rtt-ms 0,40
    .venv/bin/python bench/copy_bench.py --big-mb 100      # peak memory for one huge message
    .venv/bin/python bench/copy_bench.py --rerun-count 50000 --only mailtrek

A script, not a test: figures vary with the machine (2 cores here, shared by client and
both servers); compare tools within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from mailtrek.devtools.dovecot import DovecotInstance
from mailtrek.devtools.proxy import Proxy
from mailtrek.devtools.samples import SampleMessage, generate_mailbox, load_mailbox
from mailtrek.stores.imap.connection import ConnectParams, Credentials
from mailtrek.stores.imap.store import ImapSettings, ImapStore

TOOLS = ("mailtrek", "mbsync", "dsync", "raw-append")


@dataclass
class Run:
    tool: str
    rtt_ms: int
    wall: float
    rss_mb: float
    rerun: float | None
    complete: str


def timed(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, float, str]:
    """Run ``cmd`` under /usr/bin/time -v; return (wall s, peak RSS MB, output)."""
    t = time.monotonic()
    p = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True,
                       env=env, check=False)
    wall = time.monotonic() - t
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr)
    rss = int(m.group(1)) / 1024 if m else float("nan")
    cpu = sum(float(x) for x in re.findall(r"(?:User|System) time \(seconds\): ([\d.]+)", p.stderr))
    print(f"    ({cmd[0]} client CPU {cpu:.2f} s)", file=sys.stderr)
    if p.returncode not in (0, 1):
        print(f"  ! {cmd[0]} exited {p.returncode}: {p.stderr[-800:]}", file=sys.stderr)
    return wall, rss, p.stdout + p.stderr


async def snapshot(inst: DovecotInstance, user: str, pw: str) -> dict:  # type: ignore[type-arg]
    """Per folder: sorted (sha256, flags, date) of every message as the server serves it."""
    st = ImapStore(ImapSettings(ConnectParams(inst.host, inst.port, "none"),
                                Credentials(user, pw), connections=4))
    await st.connect()
    out = {}
    try:
        for f in await st.list_folders():
            if not f.selectable:
                continue
            metas = await st.list_messages(f)
            rows = []
            async for m in st.fetch(f, [x.uid for x in metas]):
                rows.append((hashlib.sha256(m.raw).hexdigest(),
                             tuple(sorted(x for x in m.flags if x != "\\Recent")),
                             m.internaldate.timestamp() if m.internaldate else None))
            if rows:
                out[f.path] = sorted(rows)
    finally:
        await st.close()
    return out


def compare(src: dict, dst: dict) -> str:  # type: ignore[type-arg]
    """'complete' or what differs, counted over all folders by content."""
    s = sorted(r for rows in src.values() for r in rows)
    d = sorted(r for rows in dst.values() for r in rows)
    if s == d and set(src) <= set(dst):
        return "complete, byte-exact"
    sh = {r[0] for r in s}
    dh = {r[0] for r in d}
    altered = len(sh - dh)
    flagdiff = len({(r[0], r[1]) for r in s} - {(r[0], r[1]) for r in d}) - altered
    return f"INCOMPLETE: {len(d)}/{len(s)} present, {altered} altered, {max(flagdiff, 0)} flag diffs"


def mbsync_conf(work: Path, sport: int, suser: str, spw: str, dport: int, duser: str,
                dpw: str) -> Path:
    conf = work / "mbsyncrc"
    (work / "mbsync-state").mkdir(exist_ok=True)
    conf.write_text(f"""IMAPStore src
Host 127.0.0.1
Port {sport}
User {suser}
Pass {spw}
SSLType None
AuthMechs LOGIN

IMAPStore dst
Host 127.0.0.1
Port {dport}
User {duser}
Pass {dpw}
SSLType None
AuthMechs LOGIN

Channel c
Far :src:
Near :dst:
Patterns *
Create Near
Sync Pull
Expunge None
CopyArrivalDate yes
SyncState {work}/mbsync-state/
""")
    conf.chmod(0o600)
    return conf


async def raw_append(dst: DovecotInstance, port: int, user: str, pw: str,
                     msgs: list[SampleMessage], conns: int = 4) -> float:
    """The research baseline's APPEND ceiling: the saved messages sent as single APPENDs
    pipelined with LITERAL+ on ``conns`` connections, one folder per connection, with no
    source to read. (mailtrek itself sends MULTIAPPEND; here that is switched off.)"""
    from mailtrek.model import Message

    st = ImapStore(ImapSettings(ConnectParams(dst.host, port, "none"), Credentials(user, pw),
                                connections=conns, readonly=False))
    await st.connect()
    for c in st._conns:  # single APPENDs: what "any IMAP client" does
        c.capabilities.discard("MULTIAPPEND")
    try:
        folders = {}
        for m in msgs:
            if m.folder not in folders:
                folders[m.folder] = await st.ensure_folder(m.folder)
        t = time.monotonic()
        gate = asyncio.Semaphore(256)

        async def one(m: SampleMessage) -> None:
            async with gate:
                await st.append(folders[m.folder], Message(0, m.raw, m.flags, m.internaldate))

        await asyncio.gather(*(one(m) for m in sorted(msgs, key=lambda m: m.folder)))
        return time.monotonic() - t
    finally:
        await st.close()


def run_tool(tool: str, src: DovecotInstance, dst: DovecotInstance, suser: str, spw: str,
             rtt: float, work: Path, n: int, msgs: list[SampleMessage] | None = None) -> Run:
    duser, dpw = f"b{tool}{int(rtt * 1000)}x{n}", "benchpw"
    dst.add_user(duser, dpw)
    os.sync()  # let the disk settle: dirty pages of the last run must not tax this one
    time.sleep(1)
    proxies = []
    sport, dport = src.port, dst.port
    if rtt:
        ps = Proxy("127.0.0.1", src.port, rtt=rtt).start()
        pd = Proxy("127.0.0.1", dst.port, rtt=rtt).start()
        proxies = [ps, pd]
        sport, dport = ps.port, pd.port
    if tool == "raw-append":
        wall = asyncio.run(raw_append(dst, dport, duser, dpw, msgs or []))
        for p in proxies:
            p.stop()
        return Run(tool, int(rtt * 1000), wall, float("nan"), None, "(APPEND only, no source)")
    if tool == "mailtrek":
        env = dict(os.environ, MAILTREK_SOURCE_PASSWORD=spw, MAILTREK_DEST_PASSWORD=dpw)
        cmd = [sys.executable, "-m", "mailtrek", "copy", f"imap://{suser}@127.0.0.1:{sport}",
               f"imap://{duser}@127.0.0.1:{dport}", "--state", str(work / f"{duser}.db"),
               "--max-size", "200MB"]
    elif tool == "mbsync":
        env = None
        (work / duser).mkdir()
        conf = mbsync_conf(work / duser, sport, suser, spw, dport, duser, dpw)
        cmd = ["mbsync", "-q", "-c", str(conf), "-a"]
    else:
        env = None
        cmd = ["doveadm", "-c", str(dst.conf), "-o", "imapc_host=127.0.0.1", "-o",
               f"imapc_port={sport}", "-o", f"imapc_user={suser}", "-o",
               f"imapc_password={spw}", "-o", "imapc_ssl=no", "-o",
               "imapc_features=rfc822.size fetch-headers", "-o", "mail_prefetch_count=20",
               "backup", "-R", "-u", duser, "imapc:"]
    wall, rss, _out = timed(cmd, env)
    rerun, _, _ = timed(cmd, env)
    for p in proxies:
        p.stop()
    result = compare(asyncio.run(snapshot(src, suser, spw)), asyncio.run(snapshot(dst, duser, dpw)))
    return Run(tool, int(rtt * 1000), wall, rss, rerun, result)


def big_message(mb: int) -> list[SampleMessage]:
    from datetime import UTC, datetime

    body = (b"A" * 76 + b"\r\n") * (mb * 1024 * 1024 // 78)
    raw = (b"From: big@example.com\r\nSubject: one huge message\r\nMessage-ID: <big@bench>\r\n"
           b"Content-Type: text/plain\r\n\r\n" + body)
    return [SampleMessage(("INBOX",), raw, frozenset({"\\Seen"}), datetime(2024, 1, 1, tzinfo=UTC))]


def small_messages(n: int) -> list[SampleMessage]:
    from datetime import UTC, datetime, timedelta

    base = datetime(2020, 1, 1, tzinfo=UTC)
    return [SampleMessage((("INBOX",), ("Archive",), ("Work", "Projekte"))[i % 3],
                          b"Subject: m%d\r\nMessage-ID: <m%d@bench>\r\n\r\nhello %d\r\n" % (i, i, i),
                          frozenset({"\\Seen"}), base + timedelta(seconds=i)) for i in range(n)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--count", type=int, default=5000)
    ap.add_argument("--megabytes", type=int, default=300, help="total size hint of the mailbox")
    ap.add_argument("--rtt-ms", default="0,40", help="comma-separated round-trip times")
    ap.add_argument("--only", default=",".join(TOOLS))
    ap.add_argument("--big-mb", type=int, help="instead: one message this big (memory check)")
    ap.add_argument("--rerun-count", type=int, help="instead: N tiny messages, time the re-run")
    ap.add_argument("--reps", type=int, default=1,
                    help="runs per tool, alternating; the table shows the best and the median")
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()
    tools = [t for t in a.only.split(",") if t]
    if "mbsync" in tools and not shutil.which("mbsync"):
        print("mbsync not installed (apt-get install isync); leaving it out", file=sys.stderr)
        tools.remove("mbsync")
    work = Path(tempfile.mkdtemp(prefix="mt-bench-"))
    work.chmod(0o755)
    src = DovecotInstance(work / "src", name="bsrc")
    dst = DovecotInstance(work / "dst", name="bdst")
    src.start()
    dst.start()
    try:
        suser, spw = "perfsrc", "perfsrcpw"
        src.add_user(suser, spw)
        if a.big_mb:
            msgs = big_message(a.big_mb)
        elif a.rerun_count:
            msgs = small_messages(a.rerun_count)
        else:
            msgs = generate_mailbox(a.count, seed=1, total_bytes_hint=a.megabytes * 1_000_000)
        total = sum(len(m.raw) for m in msgs)
        t = time.monotonic()
        load_mailbox(src.host, src.port, suser, spw, msgs, connections=4)
        print(f"corpus: {len(msgs)} messages, {total / 1e6:.1f} MB, loaded in "
              f"{time.monotonic() - t:.1f} s")
        runs: list[Run] = []
        rtts = [int(x) / 1000 for x in a.rtt_ms.split(",")] if not (a.big_mb or a.rerun_count) else [0.0]
        for rtt in rtts:
            for tool in [t for _ in range(a.reps) for t in tools]:
                r = run_tool(tool, src, dst, suser, spw, rtt, work, len(runs), msgs)
                runs.append(r)
                print(f"  {tool:9} {r.rtt_ms:3d} ms: {r.wall:7.2f} s  "
                      f"{len(msgs) / r.wall:7.1f} msg/s  {total / 1e6 / r.wall:6.1f} MB/s  "
                      f"RSS {r.rss_mb:6.1f} MB  re-run {r.rerun or 0:5.2f} s  {r.complete}",
                      flush=True)
        best: dict[tuple[str, int], Run] = {}
        walls: dict[tuple[str, int], list[float]] = {}
        for r in runs:
            k = (r.tool, r.rtt_ms)
            walls.setdefault(k, []).append(r.wall)
            if k not in best or r.wall < best[k].wall:
                best[k] = r
        median = {k: statistics.median(v) for k, v in walls.items()}
        runs = list(best.values())
        print()
        print("| tool | RTT ms | wall s | median s | msgs/s | MB/s | peak RSS MB | re-run s | result "
              "| mailtrek ratio (median) |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for r in runs:
            k = (r.tool, r.rtt_ms)
            mt = next((x for x in runs if x.tool == "mailtrek" and x.rtt_ms == r.rtt_ms), None)
            ratio = "-"
            if mt and r.tool != "mailtrek":
                ratio = (f"{r.wall / mt.wall:.2f}x "
                         f"({median[k] / median[('mailtrek', r.rtt_ms)]:.2f}x)")
            rerun = f"{r.rerun:.2f}" if r.rerun is not None else "-"
            print(f"| {r.tool} | {r.rtt_ms} | {r.wall:.2f} | {median[k]:.2f} | "
                  f"{len(msgs) / r.wall:.0f} | {total / 1e6 / r.wall:.1f} | {r.rss_mb:.0f} | "
                  f"{rerun} | {r.complete} | {ratio} |")
    finally:
        src.stop()
        dst.stop()
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
