"""Wait until a test server started in the background greets on its IMAP port."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path


def wait_for_greeting(host: str, port: int, proc: subprocess.Popen[bytes] | None, log: Path,
                      deadline: float, error: type[Exception], name: str) -> None:
    """Return once ``host:port`` answers ``* OK``; raise ``error`` when ``proc`` exits
    first (with the end of ``log``) or ``deadline`` (a ``time.monotonic()`` value) passes."""
    last: object = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise error(f"{name} exited ({proc.returncode}): "
                        f"{log.read_text(errors='replace')[-500:]}")
        try:
            with socket.create_connection((host, port), timeout=2) as sock:
                line = sock.makefile("rb").readline()
                if line.startswith(b"* OK"):
                    return
                last = line[:80]
        except OSError as exc:
            last = exc
        time.sleep(0.05)
    raise error(f"{name} did not greet on port {port}: {last}")
