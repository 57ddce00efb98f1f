"""Give freed message buffers back to the system (glibc only; elsewhere nothing happens).

glibc serves allocations above its mmap threshold (128 KiB) with their own mappings, but
raises that threshold to the size of every such block freed, up to 32 MiB. After one
10 MB attachment, every later body below 10 MB comes from the heap, whose holes are
rarely returned: a copy's RSS then grows far past what it holds. A fixed threshold
(``mallopt``, which also stops the adjustment) keeps message-sized buffers in their own
mappings, unmapped the moment they are freed (measured in bench/copy_bench.py).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 128 << 10  # glibc's own starting value, now kept
TRIM_THRESHOLD = 1 << 20  # give heap tops above this back

_done = False


def release_freed_memory() -> bool:
    """Fix glibc's mmap and trim thresholds for this process; True when they were set."""
    global _done
    if _done:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others: no mallopt, nothing to tune
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    _done = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _done
