"""A private Cyrus IMAP 3.6 (Debian's build, unpacked by ``debroot``) on a loopback port.

The configuration is Debian's default where it shapes what clients see (``altnamespace: no``
and ``unixhierarchysep: no``: personal folders live under ``INBOX.``, separator ``.``).
Passwords are checked by SASL's ``sql`` auxprop plugin against a SQLite table the suite
writes; ``add_user`` also creates the user's mailbox as the Cyrus admin.
"""

from __future__ import annotations

import contextlib
import getpass
import grp
import imaplib
import os
import pwd
import shutil
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

from mailtrek.devtools import debroot
from mailtrek.devtools.dovecot import _ensure_traversable, free_port
from mailtrek.devtools.greeting import wait_for_greeting

ADMIN = "cyrusadmin"
START_TIMEOUT = 20.0
CONFIG_DIRS = ("db", "user", "quota", "msg", "log", "sieve", "socket", "proc", "lock")


class CyrusError(RuntimeError):
    """The Cyrus instance could not be set up, started or used."""


class CyrusInstance:
    """One Cyrus master with an IMAP service on 127.0.0.1:``port``; see module docstring."""

    def __init__(self, root: Path, *, name: str = "cyrus", altnamespace: bool = False,
                 servers: Path | None = None) -> None:
        self.root = root
        self.name = name
        self.altnamespace = altnamespace
        self.host = "127.0.0.1"
        self.port = free_port()
        self._servers = servers
        self._admin_password = os.urandom(9).hex()
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def conf(self) -> Path:
        return self.root / "imapd.conf"

    @property
    def users_db(self) -> Path:
        return self.root / "users.db"

    def _owner(self) -> str:
        # As root the services drop to a user with a passwd entry; Debian's base has "mail".
        return "mail" if os.geteuid() == 0 else getpass.getuser()

    def init(self) -> None:
        """Unpack the packages if needed and write configuration and directories."""
        fs = debroot.ensure("cyrus", self._servers)
        bin_dir = fs / "usr/lib/cyrus/bin"
        conf_dir, spool = self.root / "conf", self.root / "spool"
        for sub in CONFIG_DIRS:
            (conf_dir / sub).mkdir(parents=True, exist_ok=True)
        spool.mkdir(exist_ok=True)
        with sqlite3.connect(self.users_db) as db:
            db.execute("CREATE TABLE IF NOT EXISTS users (name TEXT PRIMARY KEY, password TEXT)")
            db.execute("INSERT OR REPLACE INTO users VALUES (?, ?)", (ADMIN, self._admin_password))
        owner = self._owner()
        yes_no = "yes" if self.altnamespace else "no"
        self.conf.write_text("\n".join([
            f"configdirectory: {conf_dir}",
            "defaultpartition: default",
            f"partition-default: {spool}",
            f"proc_path: {conf_dir / 'proc'}",
            f"mboxname_lockpath: {conf_dir / 'lock'}",
            f"sievedir: {conf_dir / 'sieve'}",
            f"lmtpsocket: {conf_dir / 'socket/lmtp'}",
            f"idlesocket: {conf_dir / 'socket/idle'}",
            f"notifysocket: {conf_dir / 'socket/notify'}",
            f"cyrus_user: {owner}",
            f"cyrus_group: {grp.getgrgid(pwd.getpwnam(owner).pw_gid).gr_name}",
            f"admins: {ADMIN}",
            f"altnamespace: {yes_no}",
            "unixhierarchysep: no",
            "virtdomains: off",
            "allowplaintext: yes",
            "sasl_pwcheck_method: auxprop",
            "sasl_auxprop_plugin: sql",
            "sasl_sql_engine: sqlite3",
            f"sasl_sql_database: {self.users_db}",
            "sasl_sql_select: SELECT password FROM users WHERE name = '%u'",
            "sasl_mech_list: PLAIN LOGIN",
            f"syslog_prefix: mailtrek-{self.name}",
            "",
        ]), encoding="utf-8")
        (self.root / "cyrus.conf").write_text(
            "START {\n"
            f'  recover cmd="{bin_dir}/ctl_cyrusdb -C {self.conf} -r"\n'
            "}\nSERVICES {\n"
            f'  imap cmd="{bin_dir}/imapd -C {self.conf}" listen="{self.host}:{self.port}"'
            " prefork=1 maxchild=64\n"
            "}\nEVENTS {\n}\n", encoding="utf-8")
        _ensure_traversable(self.root)
        if os.geteuid() == 0:
            uid, gid = pwd.getpwnam(owner).pw_uid, pwd.getpwnam(owner).pw_gid
            for path in [self.root, *self.root.rglob("*")]:
                os.chown(path, uid, gid)

    def start(self) -> None:
        """Start the master and wait for the greeting. Raises CyrusError (or DebrootError)."""
        if self._proc is not None:
            return
        self.init()
        fs = debroot.fs_root(self._servers)
        sasl = fs / "usr/lib/x86_64-linux-gnu/sasl2"
        env = dict(os.environ, LD_LIBRARY_PATH=debroot.library_path(self._servers),
                   SASL_PATH=f"{sasl}:/usr/lib/x86_64-linux-gnu/sasl2")
        log = open(self.root / "master.log", "wb")  # noqa: SIM115 - the child owns it
        self._proc = subprocess.Popen(
            [str(fs / "usr/lib/cyrus/bin/master"), "-C", str(self.conf),
             "-M", str(self.root / "cyrus.conf"), "-p", str(self.root / "master.pid")],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env, start_new_session=True)
        log.close()
        try:
            self._wait_greeting(time.monotonic() + START_TIMEOUT)
        except CyrusError:
            self.stop()
            raise

    def _wait_greeting(self, deadline: float) -> None:
        wait_for_greeting(self.host, self.port, self._proc, self.root / "master.log", deadline,
                          CyrusError, "cyrus master")

    def stop(self) -> None:
        """Stop the master and its services (SIGTERM, then SIGKILL); safe to call twice."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)  # the master ends its own services
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

    def admin(self) -> imaplib.IMAP4:
        """A logged-in imaplib connection as the Cyrus admin (caller logs out)."""
        conn = imaplib.IMAP4(self.host, self.port, timeout=10)
        conn.login(ADMIN, self._admin_password)
        return conn

    def add_user(self, name: str, password: str) -> str:
        """Add a login and create its mailbox; return the login. Raises CyrusError."""
        if not name or any(c in name for c in "./ \t\r\n'\"%*"):
            raise ValueError("Cyrus user names here are plain words")
        with sqlite3.connect(self.users_db) as db:
            db.execute("INSERT OR REPLACE INTO users VALUES (?, ?)", (name, password))
        conn = self.admin()
        try:
            typ, data = conn.create(f"user.{name}")
            if typ != "OK" and b"exists" not in b" ".join(d or b"" for d in data):
                raise CyrusError(f"CREATE user.{name}: {typ} {data}")
        finally:
            conn.logout()
        return name
