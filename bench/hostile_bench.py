#!/usr/bin/env python3
"""Benchmark: what each hostile source costs `mailtrek copy` (outcome, exit code, RSS, time).

Each attack of ``mailtrek.devtools.hostile_imap`` is the source of one `mailtrek copy`
into a fresh user of a private Dovecot, with mailtrek's default caps (500,000 responses,
96 MB per command, 256 MB literal ceiling), except where the row says otherwise. Prints,
per attack, the exit code, the first error line (or the summary), wall time, the client's
peak RSS, and whether a smuggled command reached the source or the destination.

    .venv/bin/python bench/hostile_bench.py
    .venv/bin/python bench/hostile_bench.py --attacks list-flood,fetch-flood
    .venv/bin/python bench/hostile_bench.py --client /other/checkout/.venv/bin/python \\
        --kill-after 60 --max-memory-mb 2048       # an older mailtrek, fenced in

``--client`` runs another mailtrek (an older checkout's interpreter) for a before/after
comparison; ``--kill-after`` and ``--max-memory-mb`` (RLIMIT_AS) keep a client that never
ends or grows without limit from hurting the machine.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

from mailtrek.devtools.dovecot import DovecotInstance
from mailtrek.devtools.hostile_imap import HostileImap
from mailtrek.devtools.measure import run_measured

# attack -> (extra copy arguments, extra environment, what the row shows)
ATTACKS: dict[str, tuple[list[str], dict[str, str], str]] = {
    "huge-literal": ([], {}, "BODY[] {3000000000} for an 86-byte message"),
    "list-flood": ([], {}, "LIST answered by untagged LIST lines forever"),
    "fetch-flood": ([], {}, "the UID FETCH listing answered by FETCH lines forever"),
    "deep-parens": ([], {}, "a FETCH response nesting 20,000 parentheses"),
    "inject-folder": ([], {}, "folder `Evil\\r\\nX1 DELETE INBOX\\r\\nX2 CREATE pwned` (+ `..`)"),
    "oversize-body": (["--max-size", "35MB"], {}, "listed as 90 bytes, streams 60 MB"),
    "bad-quoted": ([], {}, "a line ending inside a quoted name, on a backslash"),
    "bad-uid": ([], {}, "UID abc"),
    "drip": ([], {"MAILTREK_IMAP_COMMAND_TIMEOUT": "10"},
             "one `* OK` every 0.5 s forever (command timeout set to 10 s)"),
}


@dataclass
class Row:
    attack: str
    what: str
    code: int | str
    outcome: str
    wall: float
    rss_mb: float
    smuggled: bool


def outcome(stdout: str, stderr: str) -> str:
    """The line a user reads first: the error, else the summary."""
    for line in stderr.splitlines():
        if line.startswith(("mailtrek: error:", "mailtrek: internal error:")):
            return line.removeprefix("mailtrek: ")
    lines = [line for line in stderr.splitlines() if line.strip()]
    if lines and ("Error" in lines[-1] or "Traceback" in stderr):
        return "traceback: " + lines[-1]
    summary = [line for line in stdout.splitlines() if line.strip()]
    extra = [line.strip() for line in summary[1:] if "skipped:" in line or "error:" in line]
    return "; ".join([summary[0].split(";")[0], *extra]) if summary else "(no output)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--attacks", default=",".join(ATTACKS))
    ap.add_argument("--client", default=sys.executable, help="Python that runs mailtrek")
    ap.add_argument("--kill-after", type=float, default=150.0)
    ap.add_argument("--max-memory-mb", type=int, default=None)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="mt-hb-", dir="/tmp"))
    dst = DovecotInstance(root / "dst", name="dst", layout="index")
    dst.start()
    rows: list[Row] = []
    try:
        for attack in args.attacks.split(","):
            extra, env_extra, what = ATTACKS[attack]
            login = dst.add_user(f"h{uuid.uuid4().hex[:8]}", "pw-hostile-bench")
            env = dict(os.environ, MAILTREK_SOURCE_PASSWORD="x",
                       MAILTREK_DEST_PASSWORD="pw-hostile-bench",
                       MAILTREK_HOME=str(root / "home"), **env_extra)
            with HostileImap(attack) as srv:
                m = run_measured(
                    [args.client, "-m", "mailtrek", "copy", f"imap://victim@127.0.0.1:{srv.port}",
                     f"imap://{login}@127.0.0.1:{dst.port}",
                     "--state", str(root / f"{attack}.db"), *extra],
                    env, timeout=args.kill_after, max_memory_mb=args.max_memory_mb)
                smuggled = any(srv.saw(w) for w in (b"DELETE", b"RENAME", b"CREATE pwned"))
            if attack == "inject-folder":
                smuggled = smuggled or "pwned" in dst.doveadm("mailbox", "list", "-u", login)
            code: int | str = f"killed at {args.kill_after:.0f} s" if m.killed else m.code
            rows.append(Row(attack, what, code, outcome(m.stdout, m.stderr), m.seconds, m.peak_mb,
                            smuggled))
            r = rows[-1]
            print(f"{attack}: exit {r.code}, {r.wall:.1f} s, {r.rss_mb:.0f} MB, "
                  f"smuggled {'YES' if r.smuggled else 'no'}: {r.outcome}", flush=True)
    finally:
        dst.remove()
    print()
    print("| attack | exit | outcome | wall s | peak RSS MB | smuggled command |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r.attack}: {r.what} | {r.code} | {r.outcome} | {r.wall:.1f} | {r.rss_mb:.0f} "
              f"| {'YES' if r.smuggled else 'no'} |")


if __name__ == "__main__":
    main()
