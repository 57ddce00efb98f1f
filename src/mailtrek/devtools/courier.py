"""A private Courier-IMAP 5 (Debian's build, unpacked by ``debroot``) on a loopback port.

Courier logs users in through ``courier-authdaemon`` with the ``authuserdb`` module, as a
Debian installation with a userdb does. Its libraries read fixed paths (``/etc/courier``,
``/run/courier``, ``/usr/lib/courier-authlib``), so the instance runs in a private mount
namespace (``unshare -m``, root only) where this instance's directories are bind-mounted
over those paths; nothing outside the namespace sees them. Folders live under ``INBOX.``
with separator ``.`` (Courier's only namespace for personal folders).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import pwd
import shutil
import signal
import subprocess
import time
from pathlib import Path

from mailtrek.devtools import debroot
from mailtrek.devtools.dovecot import _ensure_traversable, free_port
from mailtrek.devtools.greeting import wait_for_greeting

# Mail runs as Debian's "mail" user: libfam and gam_server name their socket after the
# user, so a uid without a passwd entry makes every command wait for a server never found.
MAIL_USER = "mail"
START_TIMEOUT = 20.0
FIXED_PATHS = ("/etc/courier", "/run/courier", "/usr/lib/courier-authlib")

IMAPD_ENV = {
    "IMAP_CAPABILITY": "IMAP4rev1 UIDPLUS CHILDREN NAMESPACE THREAD=ORDEREDSUBJECT "
                       "THREAD=REFERENCES SORT QUOTA IDLE",
    "IMAP_KEYWORDS": "1", "IMAP_ACL": "1", "IMAP_IDLE_TIMEOUT": "60",
    "IMAP_MAILBOX_SANITY_CHECK": "1", "IMAP_DISABLETHREADSORT": "0",
    "IMAP_CHECK_ALL_FOLDERS": "0", "IMAP_OBSOLETE_CLIENT": "0", "IMAP_UMASK": "022",
    "IMAP_ULIMITD": "131072", "IMAP_USELOCKS": "1",
    "IMAP_SHAREDINDEXFILE": "/etc/courier/shared/index", "IMAP_ENHANCEDIDLE": "0",
    "IMAP_TRASHFOLDERNAME": "Trash", "IMAP_EMPTYTRASH": "", "IMAP_MOVE_EXPUNGE_TO_TRASH": "0",
    "MAILDIRPATH": "Maildir",
}


class CourierError(RuntimeError):
    """The Courier instance could not be set up, started or used."""


def unavailable_reason() -> str | None:
    """Why Courier cannot run here (None when it can): it needs root and ``unshare``."""
    if os.geteuid() != 0:
        return "Courier needs root (a private mount namespace over /etc/courier)"
    if shutil.which("unshare") is None:
        return "unshare (util-linux) is not installed"
    return None


def _mail_ids() -> tuple[int, int]:
    entry = pwd.getpwnam(MAIL_USER)
    return entry.pw_uid, entry.pw_gid


def _userdb_password(password: str) -> str:
    return "{SHA256}" + base64.b64encode(hashlib.sha256(password.encode()).digest()).decode()


class CourierInstance:
    """couriertcpd + imaplogin + imapd and authdaemond on 127.0.0.1:``port``."""

    def __init__(self, root: Path, *, name: str = "courier", servers: Path | None = None) -> None:
        self.root = root
        self.name = name
        self.host = "127.0.0.1"
        self.port = free_port()
        self._servers = servers
        self._users: dict[str, str] = {}
        self._proc: subprocess.Popen[bytes] | None = None
        self._written = False

    @property
    def etc(self) -> Path:
        return self.root / "etc"

    def init(self) -> None:
        """Unpack the packages if needed; write configuration, userdb and launcher (once)."""
        if self._written:
            return
        reason = unavailable_reason()
        if reason:
            raise CourierError(reason)
        fs = debroot.ensure("courier", self._servers)
        shutil.copytree(fs / "etc/courier", self.etc, dirs_exist_ok=True)
        (self.etc / "authdaemonrc").write_text(
            'authmodulelist="authuserdb"\nauthmodulelistorig="authuserdb"\ndaemons=3\n'
            'authdaemonvar=/run/courier/authdaemon\nDEBUG_LOGIN=0\nDEFAULTOPTIONS=""\n'
            'LOGGEROPTS=""\n', encoding="utf-8")
        (self.root / "run/authdaemon").mkdir(parents=True, exist_ok=True)
        (self.root / "home").mkdir(exist_ok=True)
        self._write_userdb()
        lines = ["#!/bin/sh", "set -e"]
        for fixed, mine in zip(FIXED_PATHS, (self.etc, self.root / "run",
                                             fs / "usr/lib/courier-authlib"), strict=True):
            lines.append(f"mount --bind '{mine}' '{fixed}'")
        lines += [
            f"export LD_LIBRARY_PATH='{debroot.library_path(self._servers)}'",
            f"'{fs}/usr/lib/courier/courier-authlib/authdaemond' 2>>'{self.root}/authdaemond.log' &",
            *(f"export {k}='{v}'" for k, v in IMAPD_ENV.items()),
            f"export GAMIN_DEBUG_SERVER='{fs}/usr/libexec/gam_server'",
            f"exec '{fs}/usr/sbin/couriertcpd' -address={self.host} -maxprocs=64 -maxperip=64"
            f" -nodnslookup -noidentlookup -stderr='{self.root}/imapd.log' {self.port}"
            f" '{fs}/usr/lib/courier/courier/imaplogin' '{fs}/usr/bin/imapd' Maildir",
        ]
        (self.root / "run.sh").write_text("\n".join(lines) + "\n", encoding="utf-8")
        _ensure_traversable(self.root)
        self._written = True

    def _write_userdb(self) -> None:
        fs = debroot.fs_root(self._servers)
        makedat = fs / "usr/lib/courier/courier-authlib/makedatprog"
        env = dict(os.environ, LD_LIBRARY_PATH=debroot.library_path(self._servers))
        uid, gid = _mail_ids()
        plain = "".join(
            f"{u}\tuid={uid}|gid={gid}|home={self.root}/home/{u}"
            f"|mail={self.root}/home/{u}/Maildir|_=\n" for u in self._users) + ".\n"
        shadow = "".join(f"{u}\tsystempw={_userdb_password(p)}\n"
                         for u, p in self._users.items()) + ".\n"
        for name, text in (("userdb", plain), ("userdbshadow", shadow)):
            proc = subprocess.run([str(makedat), "-", str(self.etc / f"{name}.tmp"),
                                   str(self.etc / f"{name}.dat")], input=text.encode(),
                                  capture_output=True, env=env, check=False)
            if proc.returncode != 0:
                raise CourierError(f"makedatprog {name}: {proc.stderr.decode(errors='replace')}")

    def start(self) -> None:
        """Start authdaemond and couriertcpd; wait for the greeting. Raises CourierError."""
        if self._proc is not None:
            return
        self.init()
        for fixed in FIXED_PATHS:  # bind mounts need their mount points
            Path(fixed).mkdir(parents=True, exist_ok=True)
        log = open(self.root / "launcher.log", "wb")  # noqa: SIM115 - the child owns it
        self._proc = subprocess.Popen(
            ["unshare", "-m", "--propagation", "private", "sh", str(self.root / "run.sh")],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        log.close()
        try:
            self._wait_greeting(time.monotonic() + START_TIMEOUT)
        except CourierError:
            self.stop()
            raise

    def _wait_greeting(self, deadline: float) -> None:
        wait_for_greeting(self.host, self.port, self._proc, self.root / "launcher.log", deadline,
                          CourierError, "courier")

    def stop(self) -> None:
        """End the instance's process group (couriertcpd, authdaemond, sessions)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)

    def remove(self) -> None:
        """Stop and delete the instance directory."""
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def add_user(self, name: str, password: str) -> str:
        """Add a login with an empty Maildir (works while running); return the login."""
        if not name or any(c in name for c in "|\t\r\n/ ") or any(c in password for c in "\r\n"):
            raise ValueError("user names and passwords must fit userdb's format")
        self.init()
        maildir = self.root / "home" / name / "Maildir"
        for sub in ("cur", "new", "tmp"):
            (maildir / sub).mkdir(parents=True, exist_ok=True)
        for path in (maildir.parent, maildir, *maildir.iterdir()):
            os.chown(path, *_mail_ids())
        self._users[name] = password
        self._write_userdb()
        return name
