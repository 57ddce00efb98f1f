#!/usr/bin/env python3
"""Benchmark: peak memory of one `mailtrek run` moving many mailboxes at once into Dovecot.

Loads USERS realistic mailboxes (bench/copy_bench.py's generator) into a private source
Dovecot, creates a batch of all of them into a second Dovecot (the orchestrated path:
`endpoint add`, `batch create --autostart`, `run --until-idle`, as tests/test_orchestrate_e2e.py
does), lets every mailbox run at once, and prints wall time, messages/s, the runner's peak
RSS, its RSS per mailbox, and whether every message arrived.

    .venv/bin/python bench/batch_memory_bench.py --users 20 --messages 500

A script, not a test: figures vary with the machine (2 cores here, shared by the runner
and both servers).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mailtrek.devtools.dovecot import DovecotInstance
from mailtrek.devtools.samples import generate_mailbox, load_mailbox

MAILTREK = [sys.executable, "-c",
            "import sys; from mailtrek.cli.main import main; sys.argv[0] = 'mailtrek'; main()"]
DOMAIN = "bench.test"
LIMIT_MB = 1024


def cli(env: dict[str, str], *args: str) -> str:
    p = subprocess.run([*MAILTREK, *args], env=env, capture_output=True, text=True, timeout=600)
    if p.returncode != 0:
        raise SystemExit(f"mailtrek {' '.join(args)} failed:\n{p.stderr}")
    return p.stdout


def rss_mb(pid: int) -> int | None:
    try:
        m = re.search(r"VmRSS:\s+(\d+)", Path(f"/proc/{pid}/status").read_text())
    except OSError:
        return None
    return int(m.group(1)) // 1024 if m else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--users", type=int, default=20)
    ap.add_argument("--messages", type=int, default=500, help="messages per mailbox")
    ap.add_argument("--megabytes", type=int, default=30, help="size hint per mailbox")
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mt-batchmem-"))
    work.chmod(0o755)
    src = DovecotInstance(work / "src", name="bmsrc")
    dst = DovecotInstance(work / "dst", name="bmdst")
    src.start()
    dst.start()
    try:
        users: dict[str, str] = {}
        total_msgs = total_bytes = 0
        t = time.monotonic()
        for i in range(a.users):
            name, pw = f"mem{i}", f"Pw-mem{i}-{os.urandom(4).hex()}"
            users[name] = pw
            src.add_user(name, pw)
            dst.add_user(f"{name}@{DOMAIN}", pw)
            msgs = generate_mailbox(a.messages, seed=100 + i,
                                    total_bytes_hint=a.megabytes * 1_000_000)
            load_mailbox(src.host, src.port, name, pw, msgs, connections=4)
            total_msgs += len(msgs)
            total_bytes += sum(len(m.raw) for m in msgs)
        print(f"corpus: {a.users} mailboxes, {total_msgs} messages, {total_bytes / 1e6:.1f} MB, "
              f"loaded in {time.monotonic() - t:.1f} s", flush=True)
        home = work / "home"
        env = dict(os.environ, MAILTREK_HOME=str(home))
        csv = work / "users.csv"
        csv.write_text("EmailAddress,UserName,Password\n" + "".join(
            f"{n}@{DOMAIN},{n},{p}\n" for n, p in users.items()))
        cli(env, "endpoint", "add", "src", "--host", src.host, "--port", str(src.ssl_port),
            "--ca-file", str(src.ca_file), "--max-concurrent-migrations", str(a.users))
        cli(env, "endpoint", "add", "dst", "--host", dst.host, "--port", str(dst.ssl_port),
            "--ca-file", str(dst.ca_file), "--max-concurrent-migrations", str(a.users))
        cli(env, "batch", "create", "b", "--endpoint", "src", "--dest-endpoint", "dst",
            "--csv", str(csv), "--autostart")
        idle = subprocess.run(["/usr/bin/time", "-v", *MAILTREK, "batch", "list"], env=env,
                              capture_output=True, text=True, check=False)
        m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", idle.stderr)
        base = int(m.group(1)) / 1024 if m else float("nan")
        os.sync()
        t = time.monotonic()
        p = subprocess.Popen(["/usr/bin/time", "-v", *MAILTREK, "run", "--until-idle"], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        samples: list[int] = []
        child: int | None = None
        while p.poll() is None:
            time.sleep(0.25)
            if child is None:
                kids = Path(f"/proc/{p.pid}/task/{p.pid}/children")
                with_kids = kids.read_text().split() if kids.exists() else []
                child = int(with_kids[0]) if with_kids else None
            if child is not None and (r := rss_mb(child)) is not None:
                samples.append(r)
        _out, err = p.communicate()
        wall = time.monotonic() - t
        m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", err)
        peak = int(m.group(1)) / 1024 if m else float("nan")
        arrived = sum(sum(f.get("messages", 0) for f in dst.mailbox_status(f"{n}@{DOMAIN}").values())
                      for n in users)
        result = "complete" if arrived == total_msgs else f"INCOMPLETE: {arrived}/{total_msgs}"
        steady = sorted(samples)[len(samples) // 2] if samples else float("nan")
        print()
        print("| mailboxes at once | messages | MB | wall s | msgs/s | MB/s | peak RSS MB "
              "| median RSS MB | peak RSS per mailbox MB | above idle per mailbox MB | result |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        print(f"| {a.users} | {total_msgs} | {total_bytes / 1e6:.0f} | {wall:.1f} | "
              f"{total_msgs / wall:.0f} | {total_bytes / 1e6 / wall:.1f} | {peak:.0f} | {steady:.0f} | "
              f"{peak / a.users:.1f} | {(peak - base) / a.users:.1f} | {result} |")
        print(f"(idle CLI: {base:.0f} MB; limit {LIMIT_MB} MB: "
              f"{'kept' if peak < LIMIT_MB else 'EXCEEDED'})")
        if p.returncode != 0:
            print(err[-1500:], file=sys.stderr)
        return 0 if peak < LIMIT_MB and arrived == total_msgs else 1
    finally:
        src.stop()
        dst.stop()
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
