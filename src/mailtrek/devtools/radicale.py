"""Private Radicale CalDAV/CardDAV servers for tests, demos and benchmarks.

One ``RadicaleInstance`` is one directory holding its own config, htpasswd users file,
collections, log and (with ``tls=True``) a self-signed certificate; it listens on a free
high port on 127.0.0.1. Radicale runs as ``python -m radicale --config ROOT/config`` in
a child process of ours, so stopping it is ending our own child. Loading ``.ics``/``.vcf``
files into a user's collections lives in ``devtools/dav_load.py``.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import shutil
import ssl
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import httpx

from mailtrek.devtools.dovecot import free_port, write_self_signed_cert

__all__ = ["RadicaleError", "RadicaleInstance"]

START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0


class RadicaleError(RuntimeError):
    """A private Radicale instance failed to start, stop or answer."""


def _check_user_field(kind: str, value: str) -> None:
    if not value or any(c in value for c in ":\n\r\0/"):
        raise ValueError(f"{kind} must be non-empty without ':', '/', NUL or line breaks")


class RadicaleInstance:
    """One private Radicale server under ``root``; usable as a context manager.

    ``__init__`` writes nothing; ``start()`` writes the config (once) and waits until the
    server answers HTTP; ``stop()`` is idempotent. Users live in an htpasswd file that
    Radicale re-reads when it changes, so ``add_user`` works while it runs.
    """

    def __init__(self, root: Path, *, name: str = "dav", tls: bool = False) -> None:
        self.root = Path(root).resolve()
        self.name = name
        self.tls = tls
        self._port = 0
        self._proc: subprocess.Popen[bytes] | None = None

    # -- paths and addresses -------------------------------------------------------------
    @property
    def conf(self) -> Path:
        """Path of this instance's Radicale config file."""
        return self.root / "config"

    @property
    def users_file(self) -> Path:
        """The htpasswd file (plain passwords: a test server, never a real one)."""
        return self.root / "users"

    @property
    def collections(self) -> Path:
        """Radicale's storage folder."""
        return self.root / "collections"

    @property
    def log_file(self) -> Path:
        return self.root / "radicale.log"

    @property
    def ca_file(self) -> Path:
        """The self-signed certificate, to pass as the CA file (only with ``tls=True``)."""
        return self.root / "cert.pem"

    def ssl_context(self) -> ssl.SSLContext | bool:
        """What to pass as httpx's ``verify``: a context trusting our certificate (or False)."""
        return ssl.create_default_context(cafile=str(self.ca_file)) if self.tls else False

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def port(self) -> int:
        if not self._port:
            raise RadicaleError("instance not initialised: call init() or start()")
        return self._port

    @property
    def base_url(self) -> str:
        """``http(s)://127.0.0.1:PORT`` (TLS names ``localhost``, which the cert covers)."""
        host = "localhost" if self.tls else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"

    def dav_url(self, user: str, path: str = "/") -> str:
        """The mailtrek address of ``user``'s account: ``dav+http(s)://USER@HOST:PORT/PATH``."""
        scheme, _, rest = self.base_url.partition("://")
        return f"dav+{scheme}://{user}@{rest}{path}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # -- users ---------------------------------------------------------------------------
    def add_user(self, name: str, password: str) -> str:
        """Add (or replace) a login; return the user name. Works while running."""
        _check_user_field("user", name)
        _check_user_field("password", password)
        self.init()
        lines = [
            line for line in self.users_file.read_text(encoding="utf-8").splitlines()
            if line and line.split(":", 1)[0] != name
        ]
        lines.append(f"{name}:{password}")
        tmp = self.users_file.with_suffix(".tmp")
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
        tmp.replace(self.users_file)  # Radicale reads the file whole: never half-written
        return name

    # -- life cycle ----------------------------------------------------------------------
    def init(self) -> None:
        """Write config, users file and certificate once; pick the port."""
        if (self.root / "instance.json").exists():
            if not self._port:
                self._port = int(json.loads((self.root / "instance.json").read_text())["port"])
            return
        self.root.mkdir(parents=True, exist_ok=True)
        self.collections.mkdir(exist_ok=True)
        self.users_file.touch()
        self._port = free_port()
        if self.tls:
            write_self_signed_cert(self.ca_file, self.root / "key.pem")
        self.conf.write_text(self._render_conf(), encoding="utf-8")
        (self.root / "instance.json").write_text(
            json.dumps({"name": self.name, "port": self._port, "tls": self.tls}) + "\n")

    def _render_conf(self) -> str:
        tls = (f"ssl = True\ncertificate = {self.ca_file}\nkey = {self.root / 'key.pem'}\n"
               if self.tls else "ssl = False\n")
        return (
            "[server]\n"
            f"hosts = {self.host}:{self._port}\n"
            "max_connections = 16\n"
            "delay_on_error = 0\n"
            "timeout = 30\n"
            f"{tls}"
            "[auth]\n"
            "type = htpasswd\n"
            f"htpasswd_filename = {self.users_file}\n"
            "htpasswd_encryption = plain\n"
            "htpasswd_cache = False\n"
            "delay = 0\n"
            "[rights]\n"
            "type = owner_only\n"
            "[storage]\n"
            f"filesystem_folder = {self.collections}\n"
            "[web]\n"
            "type = none\n"
            "[logging]\n"
            "level = warning\n"
            "mask_passwords = True\n"
        )

    def start(self) -> None:
        """Start the server and wait until it answers HTTP; RadicaleError with the log tail."""
        if self.running:
            return
        self.init()
        with open(self.log_file, "ab") as log:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "mailtrek.devtools.radicale", "--serve", str(self.conf)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            )
        deadline = time.monotonic() + START_TIMEOUT
        verify = self.ssl_context()
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RadicaleError(f"radicale {self.name} exited ({self._proc.returncode}):\n"
                                    f"{self._log_tail()}")
            try:
                httpx.get(f"{self.base_url}/.well-known/caldav", verify=verify, timeout=2)
                return
            except httpx.HTTPError as exc:
                last = exc
                time.sleep(0.05)
        self.stop()
        raise RadicaleError(f"radicale {self.name} did not answer: {last}\n{self._log_tail()}")

    def stop(self) -> None:
        """End our Radicale child (TERM, then KILL); safe to call twice."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(STOP_TIMEOUT)

    def remove(self) -> None:
        """Stop the server and delete its directory."""
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> RadicaleInstance:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def _log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_file.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


def serve(conf: Path) -> None:
    """Run Radicale in this process with ``conf``, without fsync (test data is throw-away).

    Radicale offers no config option for that (``_filesystem_fsync`` is private), so the
    hook is its ``pathutils.fsync``; with a Radicale that lacks it, fsync simply stays on.
    """
    import runpy

    with contextlib.suppress(ImportError, AttributeError):
        import radicale.pathutils

        radicale.pathutils.fsync = lambda fd: None  # type: ignore[attr-defined]
    sys.argv = ["radicale", "--config", str(conf)]
    runpy.run_module("radicale", run_name="__main__")


def main(argv: list[str] | None = None) -> int:
    """Run ``python -m mailtrek.devtools.radicale ROOT [--user NAME] [--tls]`` in the foreground.

    Added users get random passwords, kept in ROOT/users and never printed. Ctrl-C stops.
    """
    import argparse

    ap = argparse.ArgumentParser(prog="python -m mailtrek.devtools.radicale")
    ap.add_argument("root", type=Path, nargs="?")
    ap.add_argument("--tls", action="store_true")
    ap.add_argument("--serve", type=Path, metavar="CONF", help=argparse.SUPPRESS)
    ap.add_argument("--user", action="append", default=[], help="add a user (repeatable)")
    a = ap.parse_args(argv)
    if a.serve:  # how RadicaleInstance.start runs the server
        serve(a.serve)
        return 0
    if a.root is None:
        ap.error("ROOT is required")
    inst = RadicaleInstance(a.root, tls=a.tls)
    try:
        for user in a.user:
            inst.add_user(user, secrets.token_urlsafe(12))
        inst.start()
    except RadicaleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"running {inst.base_url} users={inst.users_file}"
          + (f" ca={inst.ca_file}" if a.tls else ""), flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        while inst.running:
            time.sleep(1)
    inst.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
