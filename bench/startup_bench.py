#!/usr/bin/env python3
"""Benchmark: how fast each ``mailtrek`` command starts, this checkout against a git revision.

``copy``: wall and CPU seconds from spawning the process to its first TCP connection, on a
listener standing in for the IMAP server, with a new ``--state`` file each run (what a
first copy pays before its first IMAP byte). Other commands: the whole process. Medians;
the trees' runs are interleaved, so machine load hits them alike.

    .venv/bin/python bench/startup_bench.py --base f7d44b6 --runs 7
    .venv/bin/python bench/startup_bench.py --base main --bytecode   # compiled, as installed

Without ``--bytecode`` the sources are compiled at every run when PYTHONDONTWRITEBYTECODE
is set (as in CI); a pip-installed mailtrek has its bytecode compiled once.
"""

from __future__ import annotations

import argparse
import os
import resource
import selectors
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MAILTREK = str(Path(sys.executable).with_name("mailtrek"))
COMMANDS = (["--help"], ["copy", "--help"], ["batch", "list"], ["endpoint", "list"], ["state", "show"])
TICK = os.sysconf("SC_CLK_TCK")


def tree(rev: str | None, into: Path, bytecode: bool) -> str:
    """The ``src`` folder of ``rev`` (None: this checkout's committed HEAD plus edits)."""
    if rev is None:
        src = REPO / "src"
    else:
        into.mkdir(parents=True)
        archive = subprocess.run(["git", "-C", str(REPO), "archive", rev, "src"], check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
        src = into / "src"
    if bytecode:
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(src)], check=True)
    return str(src)


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / TICK  # utime stime cutime cstime


def copy_start(src: str, work: Path, n: int) -> tuple[float, float]:
    """Seconds (wall, CPU) from spawning ``mailtrek copy`` to its first connection."""
    listeners = [socket.create_server(("127.0.0.1", 0)) for _ in range(2)]
    sel = selectors.DefaultSelector()
    for s in listeners:
        sel.register(s, selectors.EVENT_READ)
    a, b = (f"imap://u@127.0.0.1:{s.getsockname()[1]}" for s in listeners)
    env = dict(os.environ, PYTHONPATH=src, MAILTREK_HOME=str(work / "home"),
               MAILTREK_SOURCE_PASSWORD="x", MAILTREK_DEST_PASSWORD="y")
    started = time.monotonic()
    p = subprocess.Popen([MAILTREK, "copy", a, b, "--state", str(work / f"state-{n}.db")], env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    connected = sel.select(timeout=60)
    wall = time.monotonic() - started
    cpu = _cpu(p.pid)
    p.kill()
    p.wait()
    for s in listeners:
        s.close()
    if not connected:
        raise SystemExit("mailtrek copy never connected")
    return wall, cpu


def whole(src: str, args: list[str], work: Path) -> tuple[float, float]:
    """Seconds (wall, CPU) of one whole ``mailtrek ARGS`` process."""
    env = dict(os.environ, PYTHONPATH=src, MAILTREK_HOME=str(work / "home"))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    subprocess.run([MAILTREK, *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", help="git revision to compare with (default: none)")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--bytecode", action="store_true", help="compile both trees first")
    opts = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        trees = {"this checkout": tree(None, tmp / "head", opts.bytecode)}
        if opts.base:
            trees[opts.base] = tree(opts.base, tmp / "base", opts.bytecode)
        cases = {"copy: start -> connect": None} | {" ".join(c): c for c in COMMANDS}
        results: dict[tuple[str, str], list[tuple[float, float]]] = {}
        for i in range(opts.runs + 1):  # the first round warms caches and makes the homes
            for name, args in cases.items():
                for label, src in trees.items():
                    work = tmp / label.replace(" ", "-")
                    got = copy_start(src, work, i) if args is None else whole(src, args, work)
                    if i:
                        results.setdefault((name, label), []).append(got)
        print(f"median of {opts.runs} runs, load {os.getloadavg()[0]:.1f}, "
              f"bytecode {'compiled' if opts.bytecode else 'as the environment has it'}")
        print(f"{'':26s}" + "".join(f"{label + ' wall/CPU s':>28s}" for label in trees))
        for name in cases:
            cells = [(statistics.median(w for w, _ in results[(name, t)]),
                      statistics.median(c for _, c in results[(name, t)])) for t in trees]
            print(f"{name:26s}" + "".join(f"{w:20.3f} / {c:.3f}" for w, c in cells))


if __name__ == "__main__":
    main()
