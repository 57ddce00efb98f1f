"""A private PostgreSQL server from Debian's binaries, for tests, benchmarks and trials.

Own data directory, loopback only, a free high port, unix socket in the same short temp
directory. PostgreSQL refuses to run as root, so as root the server runs as the
``postgres`` system user the Debian package creates (the directory is chowned to it).
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

BIN_GLOB = "/usr/lib/postgresql/*/bin"
DB_NAME = "mailtrek"


def find_bin() -> Path | None:
    """Return the newest installed PostgreSQL bin directory, or None."""
    dirs = sorted(glob.glob(BIN_GLOB), key=lambda d: int(Path(d).parent.name) if Path(d).parent.name.isdigit() else 0)
    for d in reversed(dirs):
        if (Path(d) / "initdb").exists() and (Path(d) / "pg_ctl").exists():
            return Path(d)
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PgServer:
    """One private server; ``url`` reaches its ``mailtrek`` database as the superuser."""

    root: Path
    bin: Path
    port: int = 0

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{DB_NAME}"

    def _cmd(self, *args: str) -> list[str]:
        as_postgres = os.geteuid() == 0
        return (["runuser", "-u", "postgres", "--"] if as_postgres else []) + list(args)

    def init(self) -> None:
        """Create the data directory (trust auth on loopback: a throwaway server)."""
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o755)
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        subprocess.run(self._cmd(str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres",
                                 "--auth=trust", "-E", "UTF8", "--no-sync"),
                       check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        """Start the server and wait until it accepts connections; create the database."""
        self.port = self.port or free_port()
        opts = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
                "-c max_connections=200 -c synchronous_commit=off")
        subprocess.run(self._cmd(str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", opts, "-l",
                                 str(self.root / "server.log"), "-w", "-t", "60", "start"),
                       check=True, capture_output=True, timeout=90)
        self._create_db()

    def _create_db(self) -> None:
        import psycopg

        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres",
                                     autocommit=True) as c:
                    if not c.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DB_NAME,)).fetchone():
                        c.execute(f'CREATE DATABASE "{DB_NAME}"')
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast`` ends sessions; ``immediate`` is a crash)."""
        subprocess.run(self._cmd(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop"),
                       check=False, capture_output=True, timeout=60)

    def restart(self) -> None:
        self.stop()
        self.start()

    def reset(self) -> None:
        """Drop and re-create the ``mailtrek`` database (a clean slate for the next test)."""
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres",
                             autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
            c.execute(f'CREATE DATABASE "{DB_NAME}"')

    def remove(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def private_postgres():  # type: ignore[no-untyped-def]
    """Yield a started :class:`PgServer`; removed afterwards. Raises LookupError without binaries."""
    bin_dir = find_bin()
    if bin_dir is None:
        raise LookupError("PostgreSQL server binaries not found (apt-get install postgresql)")
    server = PgServer(root=Path(tempfile.mkdtemp(prefix="mt-pg-", dir="/tmp")), bin=bin_dir)
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.remove()
