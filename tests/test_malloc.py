"""Freed message buffers go back to the system (glibc's mmap threshold stays fixed)."""

from __future__ import annotations

import subprocess
import sys

import pytest

PROBE = """
import re, sys
def rss():
    return int(re.search(r"VmRSS:\\s+(\\d+)", open("/proc/self/status").read()).group(1)) // 1024
if sys.argv[1] == "tuned":
    from mailtrek.malloc import release_freed_memory
    assert release_freed_memory()
big = b"x" * (20 << 20)  # one big attachment: glibc would raise its threshold to 20 MB
del big
before = rss()
bodies = [b"y" * (300 << 10) for _ in range(100)]  # 30 MB of message bodies, then freed
del bodies
print(rss() - before)
"""


def _held_mb(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True,
                         check=True, timeout=60)
    return int(out.stdout.strip())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_bodies_leave_no_resident_memory_behind() -> None:
    untuned, tuned = _held_mb("plain"), _held_mb("tuned")
    if untuned < 5:
        pytest.skip(f"this allocator gives memory back by itself ({untuned} MB held)")
    assert tuned <= 2, f"{tuned} MB still resident after freeing (untuned: {untuned} MB)"
