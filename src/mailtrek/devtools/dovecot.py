"""Private Dovecot IMAP servers for tests, demos and benchmarks.

One ``DovecotInstance`` is one directory holding its own ``dovecot.conf``, users file,
mail, log and self-signed certificate; it listens on free high ports on 127.0.0.1 and
never touches the system Dovecot (every command gets ``-c ROOT/dovecot.conf``).
The configuration follows shared/testing.md and research/testinfra.md §2.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import grp
import hashlib
import ipaddress
import json
import os
import pwd
import secrets
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

__all__ = [
    "DovecotError",
    "DovecotInstance",
    "OAuthConfig",
    "free_port",
    "hmac_key_text",
    "write_self_signed_cert",
]

Layout = Literal["fs", "index"]

MAIL_UID = 10000  # mail processes must not run as uid 0; no passwd entry is needed
MASTER_USER = "admin"
MASTER_SEPARATOR = "*"
SPECIAL_USE = ("Drafts", "Sent", "Trash", "Junk", "Archive")
# Unix socket paths must stay under 108 bytes; the longest name below base_dir is ~24.
MAX_BASE_DIR = 70
START_TIMEOUT = 15.0
STOP_TIMEOUT = 15.0


class DovecotError(RuntimeError):
    """A private Dovecot instance failed to start, stop or answer."""


@dataclass(frozen=True)
class OAuthConfig:
    """Local JWT validation settings for the oauth2 passdbs (testinfra.md §2.2, §3.3).

    ``keys`` maps ``(azp or None, ALG, kid or None)`` to the key file's text: a base64
    secret for HS* (see ``hmac_key_text``), a PEM public key for RS*/ES*.
    App-only tokens (one token per domain) are accepted when ``apponly_issuer`` is set;
    they must carry ``mailbox_domain: "*@domain"`` and ``scope`` = ``apponly_scope``.
    """

    issuer: str
    scope: str
    keys: Mapping[tuple[str | None, str, str | None], str] = field(default_factory=dict)
    username_attribute: str = "email"
    apponly_issuer: str | None = None
    apponly_scope: str = "IMAP.AccessAsApp"
    apponly_claim: str = "mailbox_domain"


def hmac_key_text(secret: bytes) -> str:
    """Return the key-file text Dovecot expects for an HMAC (HS*) secret."""
    return base64.b64encode(secret).decode("ascii")


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago (bind port 0, read it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _key_segment(value: str | None) -> str:
    # Dovecot escapes '%' and '/' in azp and kid before the dict lookup.
    if not value:
        return "default"
    return value.replace("%", "%25").replace("/", "%2f")


def _check_passwd_field(kind: str, value: str) -> None:
    if not value or any(c in value for c in ":\n\r\0") or (kind == "user" and "*" in value):
        raise ValueError(f"{kind} must be non-empty without ':', '*', NUL or line breaks")


def _ensure_traversable(path: Path) -> None:
    """Give o+x to our own temp dirs above ``path``; raise DovecotError for others' dirs."""
    tmp = Path(tempfile.gettempdir()).resolve()
    for parent in (path, *path.parents):
        mode = parent.stat().st_mode
        if mode & 0o001:
            continue
        if parent.is_relative_to(tmp) and parent.stat().st_uid == os.geteuid():
            parent.chmod(mode | 0o005)  # mkdtemp makes 0700 dirs
        else:
            raise DovecotError(f"{parent} must be searchable by other users (chmod o+x)")


def write_self_signed_cert(cert_path: Path, key_path: Path) -> None:
    """Write an EC P-256 certificate for localhost and 127.0.0.1, valid ten years."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        # Self-signed: the certificate is its own trust anchor, so it is marked as a CA.
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


class DovecotInstance:
    """One private Dovecot server under ``root``; usable as a context manager.

    ``__init__`` writes nothing; ``start()`` writes the config (once) and waits for the
    greeting on both ports; ``stop()`` is idempotent. Passwords are random per instance
    and never printed.
    """

    def __init__(
        self,
        root: Path,
        *,
        name: str,
        layout: Layout = "index",
        oauth: OAuthConfig | None = None,
        separator: str = "/",
        prefix: str = "",
        extra_conf: str = "",
    ) -> None:
        """``separator``/``prefix`` shape the inbox namespace (``"."`` and ``"INBOX."``
        give a Courier/cPanel-style server); ``extra_conf`` is appended to the config
        (e.g. ``imap_capability`` or a quota plugin) for tests of odd servers."""
        self.root = Path(root).resolve()
        self.name = name
        self.layout: Layout = layout
        self.oauth = oauth
        self.separator = separator
        self.prefix = prefix
        self.extra_conf = extra_conf
        self.master_password = secrets.token_urlsafe(16)
        self._port = 0
        self._ssl_port = 0
        self._written = False
        self._running = False
        self._is_root = os.geteuid() == 0

    # -- paths and addresses -------------------------------------------------------------
    @property
    def conf(self) -> Path:
        """Path of this instance's dovecot.conf."""
        return self.root / "dovecot.conf"

    @property
    def ca_file(self) -> Path:
        """Path of the self-signed certificate; pass it as the CA file to verify TLS."""
        return self.root / "ssl" / "cert.pem"

    @property
    def users_file(self) -> Path:
        return self.root / "users"

    @property
    def log_file(self) -> Path:
        return self.root / "log" / "dovecot.log"

    @property
    def base_dir(self) -> Path:
        """Directory of sockets and master.pid, kept short for the unix socket limit."""
        run = self.root / "run"
        if len(str(run)) <= MAX_BASE_DIR:
            return run
        digest = hashlib.sha256(str(self.root).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"dovecot-run-{digest}"

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def port(self) -> int:
        """Plain IMAP port (STARTTLS available)."""
        self._require_written()
        return self._port

    @property
    def ssl_port(self) -> int:
        """Implicit-TLS IMAP port."""
        self._require_written()
        return self._ssl_port

    @property
    def running(self) -> bool:
        return self._running

    def _require_written(self) -> None:
        if not self._written:
            raise DovecotError(f"dovecot instance {self.name!r} has not been initialised")

    # -- users ---------------------------------------------------------------------------
    def add_user(self, name: str, password: str) -> str:
        """Add a mailbox user (works while running); return the login name.

        Raises ValueError for names or passwords the passwd-file format cannot hold.
        """
        _check_passwd_field("user", name)
        _check_passwd_field("password", password)
        self.init()
        with self.users_file.open("a", encoding="utf-8") as fh:
            fh.write(f"{name}:{{PLAIN}}{password}::::::\n")
        if self._running:
            self._wait_login(name, password)
        return name

    def _wait_login(self, name: str, password: str, timeout: float = 5.0) -> None:
        """Dovecot re-reads its passwd-file at most once a second: wait until it has."""
        import imaplib

        deadline = time.monotonic() + timeout
        while True:
            conn = imaplib.IMAP4(self.host, self.port, timeout=5)
            try:
                conn.login(name, password)
                conn.logout()
                return
            except imaplib.IMAP4.error:
                if time.monotonic() > deadline:
                    raise DovecotError(f"user {name} cannot log in to {self.name}") from None
                time.sleep(0.1)
            finally:
                with contextlib.suppress(OSError):
                    conn.shutdown()

    def master_login(self, user: str) -> str:
        """Return the login that opens ``user``'s mailbox with the master password."""
        return f"{user}{MASTER_SEPARATOR}{MASTER_USER}"

    # -- lifecycle -----------------------------------------------------------------------
    def init(self) -> None:
        """Write config, certificate and directories once; later calls do nothing."""
        if self._written:
            return
        for sub in ("log", "state", "ssl", "mail"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        # Mail and auth processes run as other users and must traverse root and its parents.
        self.root.chmod(0o755)
        _ensure_traversable(self.root.parent)
        if not self.ca_file.exists():
            write_self_signed_cert(self.ca_file, self.root / "ssl" / "key.pem")
        self.users_file.touch()
        (self.root / "masters").write_text(
            f"{MASTER_USER}:{{PLAIN}}{self.master_password}\n", encoding="utf-8"
        )
        self._port, self._ssl_port = free_port(), free_port()
        while self._ssl_port == self._port:
            self._ssl_port = free_port()
        if self.oauth is not None:
            self._write_oauth(self.oauth)
        self.conf.write_text(self._render_conf(), encoding="utf-8")
        if self._is_root:
            os.chown(self.root / "mail", MAIL_UID, MAIL_UID)
        state = self.root / "instance.json"  # lets another process reopen this instance
        state.write_text(
            json.dumps(
                {"name": self.name, "layout": self.layout, "port": self._port,
                 "ssl_port": self._ssl_port, "master_password": self.master_password}
            ),
            encoding="utf-8",
        )
        state.chmod(0o600)
        self._written = True

    @classmethod
    def open(cls, root: Path) -> DovecotInstance:
        """Reopen an instance initialised earlier (by any process) without rewriting it.

        Raises DovecotError when ``root`` holds no initialised instance. OAuth settings
        are not reloaded; the files written for them stay in effect.
        """
        try:
            state = json.loads((Path(root) / "instance.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DovecotError(f"no dovecot instance in {root}: {exc}") from None
        inst = cls(Path(root), name=state["name"], layout=state["layout"])
        inst.master_password = state["master_password"]
        inst._port, inst._ssl_port = int(state["port"]), int(state["ssl_port"])
        inst._written = True
        inst._running = (inst.base_dir / "master.pid").exists()
        return inst

    def start(self) -> None:
        """Start the server and wait for the ``* OK`` greeting on both ports.

        Raises DovecotError (with the log tail) when it does not greet in time.
        """
        if self._running:
            return
        self.init()
        # The daemon inherits our descriptors: pipes would never see EOF, so use a file.
        errfile = self.root / "log" / "start.err"
        with open(errfile, "wb") as err:
            proc = subprocess.run(
                ["dovecot", "-c", str(self.conf)], stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=err, check=False,
            )
        if proc.returncode != 0:
            raise DovecotError(
                f"dovecot {self.name} failed to start: "
                f"{errfile.read_text(errors='replace').strip()}\n{self._log_tail()}"
            )
        self._running = True
        deadline = time.monotonic() + START_TIMEOUT
        try:
            self._wait_greeting(self._port, None, deadline)
            ctx = ssl.create_default_context(cafile=str(self.ca_file))
            self._wait_greeting(self._ssl_port, ctx, deadline)
        except DovecotError:
            self.stop()
            raise

    def _wait_greeting(self, port: int, ctx: ssl.SSLContext | None, deadline: float) -> None:
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((self.host, port), timeout=2) as raw:
                    sock: socket.socket = (
                        ctx.wrap_socket(raw, server_hostname="localhost") if ctx else raw
                    )
                    line = sock.makefile("rb").readline()
                    if line.startswith(b"* OK"):
                        return
                    last = DovecotError(f"unexpected greeting {line[:80]!r}")
            except OSError as exc:  # not listening yet, or closed before auth was ready
                last = exc
            time.sleep(0.03)
        raise DovecotError(
            f"dovecot {self.name} did not greet on port {port}: {last}\n{self._log_tail()}"
        )

    def stop(self) -> None:
        """Stop the server and wait until master.pid is gone; safe to call twice."""
        if not self._written:
            return
        pid_file = self.base_dir / "master.pid"
        subprocess.run(
            ["doveadm", "-c", str(self.conf), "stop"], capture_output=True, check=False
        )
        deadline = time.monotonic() + STOP_TIMEOUT
        while pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        if pid_file.exists():  # doveadm could not reach the master: end it by its own pid
            with contextlib.suppress(ValueError, OSError):
                os.kill(int(pid_file.read_text().strip()), 9)
            with contextlib.suppress(OSError):
                pid_file.unlink()
        self._running = False

    def remove(self) -> None:
        """Stop the server and delete its directory and out-of-tree base_dir."""
        self.stop()
        if self.base_dir.parent != self.root:
            shutil.rmtree(self.base_dir, ignore_errors=True)
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> DovecotInstance:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- server-side inspection ----------------------------------------------------------
    def doveadm(self, *args: str) -> str:
        """Run ``doveadm -c CONF ARGS``; return stdout. Raises DovecotError on failure."""
        proc = subprocess.run(
            ["doveadm", "-c", str(self.conf), *args], capture_output=True, text=True, check=False
        )
        if proc.returncode != 0:
            raise DovecotError(
                f"doveadm {args[0] if args else ''} failed ({proc.returncode}): "
                f"{proc.stderr.strip()[:500]}"
            )
        return proc.stdout

    def mailbox_status(self, user: str) -> dict[str, dict[str, int]]:
        """Return ``{folder: {"messages": n, "uidnext": n, "uidvalidity": n}}`` for ``user``."""
        out = self.doveadm(
            "-f", "tab", "mailbox", "status", "-u", user, "messages uidnext uidvalidity", "*"
        )
        lines = out.splitlines()
        if not lines:
            return {}
        header = lines[0].split("\t")
        result: dict[str, dict[str, int]] = {}
        for line in lines[1:]:
            row = dict(zip(header, line.split("\t"), strict=False))
            folder = row.pop("mailbox")
            result[folder] = {k: int(v) for k, v in row.items()}
        return result

    def _log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_file.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    # -- config rendering ----------------------------------------------------------------
    def _write_oauth(self, oauth: OAuthConfig) -> None:
        keys_dir = self.root / "oauth2-keys"
        keys_dir.mkdir(exist_ok=True)
        for (azp, alg, kid), text in oauth.keys.items():
            path = keys_dir / _key_segment(azp) / alg.upper() / _key_segment(kid)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="ascii")
        common = (
            "introspection_mode = local\n"
            f"local_validation_key_dict = fs:posix:prefix={keys_dir}/\n"
        )
        (self.root / "oauth2.conf.ext").write_text(
            common
            + f"username_attribute = {oauth.username_attribute}\n"
            + f"issuers = {oauth.issuer}\n"
            + f"scope = {oauth.scope}\n",
            encoding="utf-8",
        )
        if oauth.apponly_issuer:
            (self.root / "oauth2-apponly.conf.ext").write_text(
                common
                + f"username_attribute = {oauth.apponly_claim}\n"
                + "username_format = %d\n"
                + f"issuers = {oauth.apponly_issuer}\n"
                + f"scope = {oauth.apponly_scope}\n",
                encoding="utf-8",
            )

    def _render_conf(self) -> str:
        root = self.root
        if self._is_root:
            internal_user, internal_group, login_user = "dovecot", "dovecot", "dovenull"
            mail_uid = mail_gid = MAIL_UID
            chroots = ""
        else:
            internal_user = pwd.getpwuid(os.getuid()).pw_name
            internal_group = grp.getgrgid(os.getgid()).gr_name
            login_user = internal_user
            mail_uid, mail_gid = os.getuid(), os.getgid()
            chroots = "".join(
                f"service {svc} {{\n  chroot =\n}}\n"
                for svc in ("anvil", "imap-login", "imap-urlauth-login", "ipc", "old-stats")
            )
        mailboxes = "".join(
            f"  mailbox {box} {{\n    special_use = \\{box}\n  }}\n" for box in SPECIAL_USE
        )
        oauth_passdbs = ""
        mechanisms = "plain login"
        if self.oauth is not None:
            mechanisms = "plain login xoauth2 oauthbearer"
            oauth_passdbs = (
                "passdb {\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n"
                f"  args = {root}/oauth2.conf.ext\n}}\n"
            )
            if self.oauth.apponly_issuer:
                oauth_passdbs += (
                    "passdb {\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n"
                    f"  args = {root}/oauth2-apponly.conf.ext\n}}\n"
                )
        return f"""# written by mailtrek.devtools.dovecot; instance {self.name}
instance_name = mailtrek-{self.name}-{hashlib.sha256(str(root).encode()).hexdigest()[:8]}
base_dir = {self.base_dir}
state_dir = {root}/state
protocols = imap
listen = 127.0.0.1
log_path = {root}/log/dovecot.log
info_log_path = {root}/log/dovecot.log
debug_log_path = {root}/log/dovecot.log
auth_verbose = yes
default_internal_user = {internal_user}
default_internal_group = {internal_group}
default_login_user = {login_user}
first_valid_uid = 1

ssl = yes
ssl_cert = <{root}/ssl/cert.pem
ssl_key = <{root}/ssl/key.pem
disable_plaintext_auth = no
auth_mechanisms = {mechanisms}
auth_master_user_separator = {MASTER_SEPARATOR}

mail_location = maildir:~/Maildir:LAYOUT={self.layout}
namespace inbox {{
  inbox = yes
  separator = {self.separator}
  prefix = {self.prefix}
{mailboxes}}}

passdb {{
  driver = passwd-file
  master = yes
  args = scheme=PLAIN {root}/masters
  pass = yes
}}
{oauth_passdbs}passdb {{
  driver = passwd-file
  mechanisms = plain login
  args = scheme=PLAIN username_format=%u {root}/users
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {root}/users
  default_fields = uid={mail_uid} gid={mail_gid} home={root}/mail/%u
}}

protocol imap {{
  mail_max_userip_connections = 100
}}

# Failed logins must be fast in tests: no delay, and no anvil penalty socket.
auth_failure_delay = 0
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
{chroots}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {self._port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {self._ssl_port}
    ssl = yes
  }}
}}
{self.extra_conf}
"""


def main(argv: list[str] | None = None) -> int:
    """Run ``python -m mailtrek.devtools.dovecot init|start|stop|status ROOT``.

    ``init`` writes the instance (``--user NAME`` adds a user with a random password,
    kept in ROOT/users, never printed); ``start`` also initialises when needed.
    """
    import argparse

    ap = argparse.ArgumentParser(prog="python -m mailtrek.devtools.dovecot")
    ap.add_argument("action", choices=("init", "start", "stop", "status"))
    ap.add_argument("root", type=Path)
    ap.add_argument("--name", default="dev")
    ap.add_argument("--layout", choices=("fs", "index"), default="index")
    ap.add_argument("--user", action="append", default=[], help="add a user (repeatable)")
    a = ap.parse_args(argv)
    root: Path = a.root.resolve()
    try:
        if (root / "instance.json").exists():
            inst = DovecotInstance.open(root)
        else:
            if a.action in ("stop", "status"):
                raise DovecotError(f"no dovecot instance in {root}")
            inst = DovecotInstance(root, name=a.name, layout=a.layout)
            inst.init()
        for user in a.user:
            inst.add_user(user, secrets.token_urlsafe(12))
        if a.action == "start":
            inst.start()
        elif a.action == "stop":
            inst.stop()
    except DovecotError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    state = "running" if (inst.base_dir / "master.pid").exists() else "stopped"
    print(
        f"{state} imap=127.0.0.1:{inst.port} imaps=127.0.0.1:{inst.ssl_port} "
        f"ca={inst.ca_file} conf={inst.conf} users={inst.users_file}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
