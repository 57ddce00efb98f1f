"""Settings of the Microsoft 365 simulator: users, limits, latency and injected faults.

Everything a test may want to turn is a plain dataclass field, so a test builds one
``SimConfig`` and hands it to ``Simulator``; ``mailtrek sim`` builds the same object from
its options.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

MB = 1024 * 1024

GRAPH_RESOURCE = "https://graph.microsoft.com"
OUTLOOK_RESOURCE = "https://outlook.office365.com"

# Application permissions an app registration holds by default in the simulator.
# Names follow the permission reference (learn.microsoft.com/graph/permissions-reference).
DEFAULT_GRAPH_ROLES = (
    "Mail.ReadWrite",
    "Mail-Advanced.ReadWrite.All",
    "User.Read.All",
    "Domain.Read.All",
    "MailboxSettings.Read",
    "Calendars.ReadWrite",
    "Contacts.ReadWrite",
    "Tasks.ReadWrite.All",
)
IMAP_ROLE = "IMAP.AccessAsApp"
CONCURRENCY_SCOPES = ("app", "mailbox")
IMPORT_MIME_RECEIVED = ("headers", "now")


@dataclass
class Limits:
    """Outlook service limits per app and mailbox.

    Defaults are Microsoft's published values: "10,000 API requests in a 10 minute period",
    "4 concurrent requests", "150 megabytes (MB) upload (PATCH, POST, PUT) in a 5 minute
    period" (learn.microsoft.com/graph/throttling-limits#outlook-service-limits); write
    requests are capped at 4 MB (learn.microsoft.com/graph/use-the-api); at most 20
    requests per JSON batch (learn.microsoft.com/graph/json-batching); messages are 35 MB
    by default, 150 MB at most (learn.microsoft.com/graph/outlook-large-attachments).
    """

    concurrent_requests: int = 4
    requests_per_window: int = 10_000
    request_window_s: float = 600.0
    upload_bytes_per_window: int = 150 * MB
    upload_window_s: float = 300.0
    max_request_bytes: int = 4 * MB
    max_attachment_inline_bytes: int = 3 * MB
    max_upload_chunk_bytes: int = 4 * MB
    # "Use this approach to attach a file if the file size is between 3 MB and 150 MB"
    # (learn.microsoft.com/graph/api/attachment-createuploadsession); smaller ones get
    # ErrorAttachmentSizeShouldNotBeLessThanMinimumSize (outlook-large-attachments, "Errors").
    # A field measurement found 2 MB (microsoftgraph/msgraph-sdk-java#52): tests may lower it.
    min_upload_session_bytes: int = 3 * MB
    max_message_bytes: int = 35 * MB
    max_batch_requests: int = 20
    page_size: int = 10


@dataclass
class Latency:
    """Service time of one call: base (uniform in [base_min_ms, base_max_ms]) plus bytes."""

    base_min_ms: float = 60.0
    base_max_ms: float = 150.0
    ms_per_mb: float = 40.0
    seed: int = 1

    @classmethod
    def zero(cls) -> Latency:
        """Return a model that adds no delay (fast tests)."""
        return cls(0.0, 0.0, 0.0)


@dataclass
class Faults:
    """Failures to inject; counters are over Graph requests (identity calls excluded).

    ``fail_requests``: 1-based request numbers answered with ``fail_status`` before any work.
    ``drop_after_commit``: 1-based request numbers whose work is done and stored, but whose
    response is cut off after the status line (the client cannot know the outcome).
    """

    fail_requests: set[int] = field(default_factory=set)
    fail_status: int = 503
    drop_after_commit: set[int] = field(default_factory=set)


@dataclass
class UserSpec:
    """One directory user; ``has_mailbox=False`` models an unlicensed or on-premises user."""

    upn: str
    display_name: str = ""
    has_mailbox: bool = True


@dataclass
class SimConfig:
    """Everything the simulator needs; every field has a test-friendly default."""

    users: list[UserSpec] = field(
        default_factory=lambda: [UserSpec("alice@contoso.test"), UserSpec("bob@contoso.test")]
    )
    host: str = "127.0.0.1"
    port: int = 0
    state_dir: Path | None = None
    tenant_id: str = "7a1c0e52-4f6b-4c39-9d0e-5b7d3c2a9e01"
    # Tokens' ``iss``; shaped like Entra's v1 access-token issuer https://sts.windows.net/{tid}/.
    issuer_base: str = "https://sts.mailtrek.test"
    token_lifetime_s: int = 3600
    # client_id -> secret; a client listed here must present that secret. Unlisted: any.
    client_secrets: dict[str, str] = field(default_factory=dict)
    # client_id -> PEM certificate or public key checked against client assertions.
    client_certificates: dict[str, str] = field(default_factory=dict)
    graph_roles: tuple[str, ...] = DEFAULT_GRAPH_ROLES
    limits: Limits = field(default_factory=Limits)
    latency: Latency = field(default_factory=Latency.zero)
    faults: Faults = field(default_factory=Faults)
    # domain -> MX host answered by serviceConfigurationRecords.
    mx_records: dict[str, str] = field(default_factory=dict)
    clock: Callable[[], float] = time.monotonic
    # Domain written as "*@domain" into app-only IMAP tokens; default: the first user's.
    imap_mailbox_domain: str | None = None
    # Accept MIME on /mailFolders/{id}/messages (G-create lists it; a blog says no).
    mime_create_in_folder: bool = True
    # "app": the 4 concurrent requests are per app ID "regardless of whether the requests all
    # access the same mailbox, or access different mailboxes" (learn.microsoft.com/graph/
    # throttling-limits, "Outlook service limits" -> "Limits per app ID", current page);
    # "mailbox": per app and mailbox, as the older page and the field's "MailboxConcurrency"
    # error text have it (research m365.md A4).
    concurrency_scope: str = "app"
    # Where importMime takes receivedDateTime from: "headers" (topmost Received, else Date)
    # or "now" (time of the import, as MIME create does per learn.microsoft.com/graph/api/
    # user-post-messages example 3). mailfolder-importmime does not say (m365.md A1d).
    import_mime_received: str = "headers"
    # Retry-After with decimals, as learn.microsoft.com/graph/throttling's sample shows
    # ("2.128"); default whole seconds, as RFC 9110 defines delta-seconds.
    fractional_retry_after: bool = False
    # True: the token endpoint refuses client ids not in ``client_secrets`` or
    # ``client_certificates`` (AADSTS700016), as Entra does; ``mailtrek sim --apps``.
    registered_apps_only: bool = False

    def __post_init__(self) -> None:
        if self.concurrency_scope not in CONCURRENCY_SCOPES:
            raise ValueError(f"concurrency_scope must be one of {CONCURRENCY_SCOPES}")
        if self.import_mime_received not in IMPORT_MIME_RECEIVED:
            raise ValueError(f"import_mime_received must be one of {IMPORT_MIME_RECEIVED}")

    @property
    def domains(self) -> list[str]:
        """Return the users' domains, first seen first."""
        seen: list[str] = []
        for user in self.users:
            domain = user.upn.rsplit("@", 1)[-1].lower()
            if domain not in seen:
                seen.append(domain)
        return seen
