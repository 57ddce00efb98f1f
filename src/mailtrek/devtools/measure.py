"""Run a command and measure it: exit code, output, wall time and its own peak RSS.

The peak comes from ``VmHWM`` in ``/proc/PID/status``, read every few milliseconds while
the command runs: the high-water mark of the command's own memory. The rusage that
``wait4`` returns will not do: Linux folds the memory of the forking process (a test run
of 600 MB, say) into the child's ``ru_maxrss`` when the child execs.
"""

from __future__ import annotations

import resource
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Measured", "run_measured"]


@dataclass(frozen=True, slots=True)
class Measured:
    """What one run did and cost."""

    code: int
    stdout: str
    stderr: str
    seconds: float
    peak_mb: float  # the command's own peak resident set size
    killed: bool  # it ran out of time and was killed


def run_measured(argv: list[str], env: dict[str, str] | None = None, *, timeout: float = 150.0,
                 max_memory_mb: int | None = None, poll: float = 0.005) -> Measured:
    """Run ``argv``; kill it after ``timeout`` s; cap its address space at ``max_memory_mb``."""
    def limit() -> None:
        if max_memory_mb:
            cap = max_memory_mb << 20
            resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.monotonic()
        p = subprocess.Popen(argv, stdout=out, stderr=err, env=env,
                             preexec_fn=limit if max_memory_mb else None)
        status = Path(f"/proc/{p.pid}/status")
        peak_kb, killed = 0, False
        while p.poll() is None:
            peak_kb = max(peak_kb, _hwm_kb(status))
            if time.monotonic() - t0 > timeout:
                p.kill()
                killed = True
                p.wait()
                break
            time.sleep(poll)
        seconds = time.monotonic() - t0
        out.seek(0)
        err.seek(0)
        return Measured(p.returncode, out.read(), err.read(), seconds, peak_kb / 1024, killed)


def _hwm_kb(status: Path) -> int:
    try:
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass  # gone (or a zombie) between two looks
    return 0
