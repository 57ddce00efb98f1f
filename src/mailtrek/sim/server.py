"""``Simulator``: run the Microsoft 365 simulator over HTTPS in a background thread."""

from __future__ import annotations

import asyncio
import logging
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

import uvicorn

from mailtrek.sim.app import build_app
from mailtrek.sim.certs import keep_tls_files, write_tls_files
from mailtrek.sim.config import IMAP_ROLE, Limits, SimConfig
from mailtrek.sim.graph_messages import message_mime
from mailtrek.sim.outlook_front import HostRouter, OutlookFront
from mailtrek.sim.pim_data import Invitation, PimItem
from mailtrek.sim.state import DirectoryUser, SimState
from mailtrek.sim.store import Folder, StoredAttachment, StoredMessage


class _DroppedFilter(logging.Filter):
    # An injected dropped response is not a server bug; keep it out of the error log.
    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return type(exc).__name__ != "ResponseDropped"


class Simulator:
    """A local Entra ID + Microsoft Graph (mail) test double over HTTPS.

    ``start()`` returns once the port listens; ``stop()`` shuts it down. Usable as a context
    manager. Inspection helpers and knobs may be called from any thread while it runs.
    """

    def __init__(self, config: SimConfig | None = None) -> None:
        self.config = config or SimConfig()
        self.state = SimState(self.config)
        self._own_dir = self.config.state_dir is None
        self.workdir = self.config.state_dir or Path(tempfile.mkdtemp(prefix="mtsim-"))
        # A state dir keeps its CA across restarts (clients trust ca.pem once); a temporary
        # one gets fresh keys.
        self.tls = keep_tls_files(self.workdir) if self.config.state_dir else write_tls_files(self.workdir)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # ----- life cycle ----------------------------------------------------------------
    def _listen(self, port: int) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Small requests and answers must not wait for Nagle's algorithm (40 ms delayed
        # ACKs on Linux); accepted sockets inherit the option from the listening one.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((self.config.host, port))
        sock.listen(128)
        return sock

    def _bind(self) -> list[socket.socket]:
        sock = self._listen(self.config.port)
        front = self._listen(0)  # the Outlook host of upload URLs (outlook_front.py)
        self.port = sock.getsockname()[1]
        self.state.base_url = f"https://{self.config.host}:{self.port}"
        self.state.front_port = front.getsockname()[1]
        # Another host name where the certificate allows one (it names localhost and
        # 127.0.0.1): clients decide by host name whether a URL gets their Graph token.
        front_host = {"127.0.0.1": "localhost", "localhost": "127.0.0.1"}.get(
            self.config.host, self.config.host)
        self.state.front_url = f"https://{front_host}:{self.state.front_port}"
        logging.getLogger("uvicorn.error").addFilter(_DroppedFilter())
        app = HostRouter(build_app(self.state), OutlookFront(self.state), self.state)
        self._server = uvicorn.Server(uvicorn.Config(
            app, ssl_certfile=str(self.tls.cert_file),
            ssl_keyfile=str(self.tls.key_file), log_level="warning", lifespan="off",
            access_log=False, timeout_keep_alive=30,
        ))
        return [sock, front]

    def start(self, timeout: float = 20.0) -> Simulator:
        """Bind, serve in a daemon thread, and return when it accepts connections."""
        socks = self._bind()
        server = self._server
        assert server is not None

        def run() -> None:
            asyncio.run(server.serve(sockets=socks))

        self._thread = threading.Thread(target=run, name="mailtrek-sim", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not server.started and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        if not server.started:
            raise RuntimeError("the simulator did not start")
        return self

    def serve_forever(self, on_ready: Callable[[Simulator], None] | None = None) -> None:
        """Serve in the calling (main) thread until SIGINT/SIGTERM (for ``mailtrek sim``).

        ``on_ready`` runs once the port is bound, before requests are served.
        """
        socks = self._bind()
        assert self._server is not None
        if on_ready:
            on_ready(self)

        def graceful(signum: int, frame: object) -> None:
            raise SystemExit(0)

        # uvicorn shuts down on SIGINT/SIGTERM, then re-raises the signal to the handler it
        # found; this one turns that into a clean exit status 0.
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, graceful)
        try:
            self._server.run(sockets=socks)
        finally:
            self.state.store.close()
            if self._own_dir:
                shutil.rmtree(self.workdir, ignore_errors=True)

    def stop(self) -> None:
        """Stop serving and close the store. Idempotent."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=1)
            if self._thread.is_alive() and self._server is not None:
                # Idle keep-alive connections of clients still alive would hold a graceful
                # shutdown for their whole timeout: a test double need not wait for them.
                self._server.force_exit = True
                self._thread.join(timeout=10)
            self._thread = None
        self.state.store.close()
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # ----- addresses -----------------------------------------------------------------
    @property
    def base_url(self) -> str:
        """Return https://HOST:PORT (no trailing slash)."""
        return self.state.base_url

    @property
    def outlook_url(self) -> str:
        """Return https://HOST:PORT of the Outlook host serving upload URLs."""
        return self.state.front_url

    @property
    def ca_file(self) -> Path:
        """Return the PEM file of the CA that signed the server certificate."""
        return self.tls.ca_file

    @property
    def graph_url(self) -> str:
        """Return the Graph v1.0 root, e.g. https://127.0.0.1:PORT/graph/v1.0."""
        return f"{self.base_url}/graph/v1.0"

    @property
    def graph_beta_url(self) -> str:
        """Return the Graph beta root."""
        return f"{self.base_url}/graph/beta"

    def authority(self, tenant: str | None = None) -> str:
        """Return the MSAL authority URL for ``tenant`` (default: the configured tenant id)."""
        return f"{self.base_url}/{tenant or self.config.tenant_id}"

    # ----- what a Dovecot XOAUTH2 config needs ---------------------------------------
    @property
    def imap_oauth_issuer(self) -> str:
        """Return the ``iss`` of tokens issued for the configured tenant."""
        return self.state.tokens.issuer(self.config.tenant_id)

    @property
    def imap_oauth_scope(self) -> str:
        """Return the ``scope`` claim of outlook.office365.com tokens."""
        return IMAP_ROLE

    @property
    def imap_oauth_username_claim(self) -> str:
        """Return the claim holding ``*@<domain>`` in app-only IMAP tokens."""
        return "mailbox_domain"

    @property
    def jwt_public_key_pem(self) -> str:
        """Return the RS256 public key (PEM) that verifies every issued token."""
        return self.state.tokens.public_key_pem

    @property
    def jwt_kid(self) -> str:
        """Return the ``kid`` header of issued tokens."""
        return self.state.tokens.kid

    jwt_algorithm = "RS256"

    @staticmethod
    def token_azp(client_id: str) -> str:
        """Return the ``azp`` claim of tokens issued to ``client_id`` (it is the client id)."""
        return client_id

    # ----- inspection ----------------------------------------------------------------
    def user(self, upn: str) -> DirectoryUser:
        """Return the directory user; KeyError if unknown."""
        found = self.state.find_user(upn)
        if found is None:
            raise KeyError(upn)
        return found

    def folders(self, upn: str) -> list[Folder]:
        """Return every folder of the mailbox, root first, in creation order."""
        return self.state.store.all_folders(self.user(upn).id)

    def folder_path(self, upn: str, folder_id: str) -> str:
        """Return 'Inbox/Sub' style path of a folder (root excluded)."""
        by_id = {f.id: f for f in self.folders(upn)}
        parts: list[str] = []
        current = by_id.get(folder_id)
        while current is not None and current.well_known != "msgfolderroot":
            parts.append(current.display_name)
            current = by_id.get(current.parent_id or "")
        return "/".join(reversed(parts))

    def messages(self, upn: str, folder: str | None = None) -> list[StoredMessage]:
        """Return the mailbox's messages (one folder by id or well-known name), oldest first."""
        user = self.user(upn)
        folder_id = None
        if folder is not None:
            found = self.state.store.folder(user.id, folder)
            if found is None:
                raise KeyError(folder)
            folder_id = found.id
        return self.state.store.messages(user.id, folder_id)

    def message_mime(self, upn: str, message_id: str) -> bytes:
        """Return the MIME $value would serve for a message."""
        message = self.state.store.message(self.user(upn).id, message_id)
        if message is None:
            raise KeyError(message_id)
        return message_mime(self.state, message)

    def events(self, upn: str) -> list[PimItem]:
        """Return copies of the mailbox's events (series masters and single events)."""
        return self.state.pim.events(self.user(upn).id)

    def contacts(self, upn: str) -> list[PimItem]:
        """Return copies of the mailbox's contacts."""
        return self.state.pim.contacts(self.user(upn).id)

    def tasks(self, upn: str) -> list[PimItem]:
        """Return copies of the mailbox's To Do tasks (graph_todo)."""
        return self.state.pim.tasks(self.user(upn).id)

    def outbox(self) -> list[Invitation]:
        """Return every meeting invitation the simulated Exchange has sent (graph_calendar)."""
        with self.state.pim.lock:
            return list(self.state.pim.outbox)

    def attachments(self, message_id: str) -> list[StoredAttachment]:
        """Return a message's attachments."""
        return self.state.store.attachments(message_id)

    @property
    def request_count(self) -> int:
        """Return how many Graph requests arrived (identity calls excluded)."""
        return self.state.graph_requests

    @property
    def token_request_count(self) -> int:
        """Return how many token requests arrived."""
        return self.state.token_requests

    def status_count(self, status: int) -> int:
        """Return how many Graph responses had ``status`` (429 = throttled)."""
        return self.state.statuses[status]

    def throttled_count(self, upn: str | None = None) -> int:
        """Return how many requests were refused with 429 (for one mailbox, or all)."""
        if upn is None:
            return sum(self.state.throttle.throttled.values())
        return self.state.throttle.throttled[self.user(upn).id]

    # ----- knobs ---------------------------------------------------------------------
    def add_user(self, upn: str, *, has_mailbox: bool = True) -> DirectoryUser:
        """Add a directory user (with a mailbox unless ``has_mailbox`` is False)."""
        return self.state.add_user(upn, has_mailbox=has_mailbox)

    def set_mailbox_limits(self, upn: str, limits: Limits | None) -> None:
        """Give one mailbox its own throttling limits (None: back to the defaults)."""
        mailbox_id = self.user(upn).id
        if limits is None:
            self.state.throttle.overrides.pop(mailbox_id, None)
        else:
            self.state.throttle.overrides[mailbox_id] = limits

    def reset_throttling(self) -> None:
        """Empty every throttling window and the 429 counters."""
        self.state.throttle.reset()

    def disable_mailbox(self, upn: str) -> None:
        """Make Graph answer MailboxNotEnabledForRESTAPI for this user from now on."""
        self.user(upn).has_mailbox = False

    def deny_permission(self, role: str = "Mail-Advanced.ReadWrite.All") -> None:
        """Refuse ``role`` (default: the importMime permission) with 403 ErrorAccessDenied."""
        self.state.denied.add(role)

    def allow_permission(self, role: str = "Mail-Advanced.ReadWrite.All") -> None:
        """Undo ``deny_permission``."""
        self.state.denied.discard(role)

    def expire_tokens(self) -> int:
        """Make every token issued so far fail with 401 as expired; return how many."""
        return self.state.tokens.expire_all()

    def fail_requests(self, *numbers: int, status: int = 503) -> None:
        """Answer these 1-based Graph request numbers with ``status`` before doing any work."""
        self.config.faults.fail_requests.update(numbers)
        self.config.faults.fail_status = status

    def fail_next(self, count: int = 1, status: int = 503) -> None:
        """Answer the next ``count`` Graph requests with ``status``."""
        start = self.state.graph_requests + 1
        self.fail_requests(*range(start, start + count), status=status)

    def drop_response_after_commit(self, *numbers: int) -> None:
        """Commit these 1-based Graph request numbers but cut their responses off."""
        self.config.faults.drop_after_commit.update(numbers)

    def drop_next_response_after_commit(self) -> None:
        """Commit the next Graph request but cut its response off."""
        self.drop_response_after_commit(self.state.graph_requests + 1)
