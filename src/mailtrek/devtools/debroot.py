"""Debian server packages unpacked into a private root, for tests against real servers.

Cyrus IMAP and Courier-IMAP conflict with Dovecot's packages, so they are never installed:
``apt-get download`` fetches the ``.deb`` files and ``dpkg -x`` unpacks them under one
directory (``$MAILTREK_SERVERS_ROOT``, else ``/var/cache/mailtrek/servers``). The binaries
run from there with ``LD_LIBRARY_PATH`` pointing at the unpacked libraries.

``ensure(kind)`` is idempotent: a second call with everything in place does no I/O beyond a
few ``stat`` calls. Command line (used by ``scripts/setup``)::

    python -m mailtrek.devtools.debroot [cyrus] [courier]
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

DEFAULT_ROOT = Path("/var/cache/mailtrek/servers")

# The server packages and the libraries they link that a Dovecot machine does not have.
PACKAGES: dict[str, tuple[str, ...]] = {
    "cyrus": (
        "cyrus-imapd", "cyrus-common", "libxapian30", "libpcre3", "libical3",
        # passwords live in a SQLite table the suite writes (SASL auxprop "sql")
        "libsasl2-modules-sql", "libmariadb3",
    ),
    "courier": (
        "courier-imap", "courier-base", "courier-authdaemon", "courier-authlib",
        "courier-authlib-userdb", "libcourier-unicode4", "libidn12", "libltdl7", "libgamin0",
        # without gam_server every command after SELECT waits 1.2 s for libfam to give up
        "gamin",
    ),
}

# One binary per kind whose presence (and loadable libraries) says the unpack is complete.
PROBES: dict[str, tuple[str, ...]] = {
    "cyrus": ("usr/lib/cyrus/bin/master", "usr/lib/cyrus/bin/imapd",
              "usr/lib/cyrus/bin/ctl_cyrusdb"),
    "courier": ("usr/sbin/couriertcpd", "usr/bin/imapd", "usr/lib/courier/courier/imaplogin",
                "usr/lib/courier/courier-authlib/authdaemond",
                "usr/lib/courier/courier-authlib/makedatprog", "usr/libexec/gam_server"),
}

LIBRARY_DIRS = ("lib/x86_64-linux-gnu", "usr/lib", "usr/lib/x86_64-linux-gnu")


class DebrootError(RuntimeError):
    """The packages cannot be had or do not run here (the message says why)."""


def servers_root() -> Path:
    """The directory holding the unpacked packages (``MAILTREK_SERVERS_ROOT`` wins)."""
    env = os.environ.get("MAILTREK_SERVERS_ROOT")
    return Path(env) if env else DEFAULT_ROOT


def fs_root(base: Path | None = None) -> Path:
    """The unpacked file system (``usr/``, ``etc/`` ...) under ``base``."""
    return (base or servers_root()) / "root"


def library_path(base: Path | None = None) -> str:
    """``LD_LIBRARY_PATH`` value for binaries of the private root."""
    root = fs_root(base)
    return ":".join(str(root / d) for d in LIBRARY_DIRS)


def _marker(base: Path, kind: str) -> Path:
    return base / f".{kind}-unpacked"


def ensure(kind: str, base: Path | None = None) -> Path:
    """Download and unpack ``kind``'s packages once; return the unpacked root.

    Raises DebrootError with apt's or the loader's own words when the packages cannot be
    fetched or their binaries cannot load.
    """
    if kind not in PACKAGES:
        raise ValueError(f"unknown server kind {kind!r}; known: {', '.join(PACKAGES)}")
    base = base or servers_root()
    root = fs_root(base)
    if _marker(base, kind).exists() and all((root / p).exists() for p in PROBES[kind]):
        return root
    for tool in ("apt-get", "dpkg"):
        if shutil.which(tool) is None:
            raise DebrootError(f"{tool} is not available: {kind} needs Debian's packages")
    try:
        base.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DebrootError(f"cannot create {base}: {exc} (set MAILTREK_SERVERS_ROOT)") from exc
    debs = base / "debs" / kind
    debs.mkdir(parents=True, exist_ok=True)
    for old in debs.glob("*.deb"):
        old.unlink()
    _download(kind, debs)
    root.mkdir(exist_ok=True)
    for deb in sorted(debs.glob("*.deb")):
        proc = subprocess.run(["dpkg", "-x", str(deb), str(root)], capture_output=True,
                              text=True, check=False)
        if proc.returncode != 0:
            raise DebrootError(f"dpkg -x {deb.name} failed: {proc.stderr.strip()[:500]}")
    missing = [p for p in PROBES[kind] if not (root / p).exists()]
    if missing:
        raise DebrootError(f"{kind}: unpacked packages lack {', '.join(missing)}")
    unresolved = missing_libraries(kind, base)
    if unresolved:
        raise DebrootError(f"{kind}: libraries not found: {', '.join(unresolved)}")
    versions = "\n".join(sorted(d.name for d in debs.glob("*.deb")))
    _marker(base, kind).write_text(versions + "\n", encoding="utf-8")
    return root


def _download(kind: str, dest: Path) -> None:
    cmd = ["apt-get", "download", *PACKAGES[kind]]
    proc = subprocess.run(cmd, cwd=dest, capture_output=True, text=True, check=False)
    if proc.returncode != 0 and os.geteuid() == 0:
        # Package lists may be missing on a fresh machine: refresh once, try again.
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True, check=False)
        proc = subprocess.run(cmd, cwd=dest, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("E:")]
        raise DebrootError(f"apt-get download for {kind} failed: "
                           f"{'; '.join(errors) or proc.stderr.strip()[:500]}")


def missing_libraries(kind: str, base: Path | None = None) -> list[str]:
    """Shared libraries the probe binaries of ``kind`` cannot find (``ldd``)."""
    root = fs_root(base)
    env = dict(os.environ, LD_LIBRARY_PATH=library_path(base))
    out: set[str] = set()
    for probe in PROBES[kind]:
        path = root / probe
        with open(path, "rb") as fh:
            if fh.read(4) != b"\x7fELF":
                continue
        proc = subprocess.run(["ldd", str(path)], capture_output=True, text=True, env=env,
                              check=False)
        out.update(ln.split()[0] for ln in proc.stdout.splitlines() if "not found" in ln)
    return sorted(out)


def main(argv: list[str] | None = None) -> int:
    kinds = (argv if argv is not None else sys.argv[1:]) or list(PACKAGES)
    status = 0
    for kind in kinds:
        try:
            root = ensure(kind)
            print(f"debroot: {kind} ready in {root}")
        except (DebrootError, ValueError) as exc:
            print(f"debroot: {kind}: {exc}", file=sys.stderr)
            status = 1
    return status


def short_tempdir(prefix: str) -> Path:
    """A fresh directory under /tmp with a short path (unix sockets need < 108 bytes)."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


if __name__ == "__main__":
    raise SystemExit(main())
