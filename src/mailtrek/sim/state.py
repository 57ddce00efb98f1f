"""The simulator's shared state: config, directory, store, tokens, limits, counters."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from mailtrek.sim.config import SimConfig
from mailtrek.sim.latency import LatencyModel
from mailtrek.sim.pim_data import PimData
from mailtrek.sim.store import MailStore
from mailtrek.sim.throttle import MailboxThrottle
from mailtrek.sim.tokens import TokenIssuer


@dataclass
class DirectoryUser:
    """A user object as /users returns it; ``id`` is stable across restarts (uuid5 of the UPN)."""

    id: str
    upn: str
    display_name: str
    has_mailbox: bool

    def resource(self) -> dict[str, Any]:
        """Return the Graph user resource (learn.microsoft.com/graph/api/resources/user)."""
        plans = []
        if self.has_mailbox:
            # assignedPlan: service "exchange", capabilityStatus Enabled
            # (learn.microsoft.com/graph/api/resources/assignedplan).
            plans.append({
                "assignedDateTime": "2024-01-01T00:00:00Z",
                "capabilityStatus": "Enabled",
                "service": "exchange",
                "servicePlanId": "efb87545-963c-4e0d-99df-69c6916d9eb0",
            })
        return {
            "id": self.id,
            "userPrincipalName": self.upn,
            "mail": self.upn if self.has_mailbox else None,
            "displayName": self.display_name,
            "proxyAddresses": [f"SMTP:{self.upn}"] if self.has_mailbox else [],
            "assignedPlans": plans,
            "provisionedPlans": [
                {"capabilityStatus": "Enabled", "provisioningStatus": "Success",
                 "service": "exchange"}
            ] if self.has_mailbox else [],
            "accountEnabled": True,
        }


@dataclass
class UploadSession:
    """An attachment upload in progress (learn.microsoft.com/graph/outlook-large-attachments)."""

    id: str
    app_id: str
    mailbox: str
    message_id: str
    name: str
    content_type: str
    size: int
    is_inline: bool
    content_id: str | None
    received: bytearray = field(default_factory=bytearray)
    authtoken: str = ""  # the secret in the pre-authenticated upload URL
    item_kind: str = "Messages"  # or "Events": what ``message_id`` names (Outlook's URL)


class SimState:
    """Everything the routes share; safe to inspect from another thread."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.base_url = ""
        # The Outlook host of upload URLs (outlook_front.py): another port of the server.
        self.front_url = ""
        self.front_port: int | None = None
        path = config.state_dir / "sim.sqlite3" if config.state_dir else None
        if config.state_dir:
            config.state_dir.mkdir(parents=True, exist_ok=True)
        self.store = MailStore(path)
        self.tokens = TokenIssuer(config)
        self.throttle = MailboxThrottle(config.limits, config.clock, config.concurrency_scope)
        self.latency = LatencyModel(config.latency)
        self.lock = threading.Lock()
        self.graph_requests = 0
        self.statuses: Counter[int] = Counter()
        self.token_requests = 0
        self.uploads: dict[str, UploadSession] = {}
        # Permissions refused even when a token carries them (knob: deny importMime).
        self.denied: set[str] = set()
        self.users: dict[str, DirectoryUser] = {}
        # Calendars and contacts (in memory), the invitation outbox, contact photos.
        self.pim = PimData()
        self.pim_photos: dict[str, tuple[bytes, str]] = {}
        self.asgi_app: Any = None  # the gated app, for $batch to dispatch inner requests
        for spec in config.users:
            self.add_user(spec.upn, spec.display_name, spec.has_mailbox)

    def add_user(self, upn: str, display_name: str = "", has_mailbox: bool = True) -> DirectoryUser:
        """Add (or replace) a directory user; create its mailbox folders if it has one."""
        upn = upn.strip()
        user = DirectoryUser(
            id=str(uuid.uuid5(uuid.NAMESPACE_URL, "mailtrek-sim-user:" + upn.lower())),
            upn=upn,
            display_name=display_name or upn.split("@")[0].capitalize(),
            has_mailbox=has_mailbox,
        )
        with self.lock:
            self.users[user.id] = user
        if has_mailbox:
            self.store.ensure_mailbox(user.id)
        return user

    def find_user(self, key: str) -> DirectoryUser | None:
        """Return the user with this id or userPrincipalName (case-insensitive), or None."""
        with self.lock:
            if key in self.users:
                return self.users[key]
            wanted = key.lower()
            for user in self.users.values():
                if user.upn.lower() == wanted or user.id == wanted:
                    return user
        return None

    def next_graph_request(self) -> int:
        """Count one Graph request and return its 1-based number."""
        with self.lock:
            self.graph_requests += 1
            return self.graph_requests
