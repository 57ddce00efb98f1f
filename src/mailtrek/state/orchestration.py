"""Tables of the Exchange-style workflow: endpoints, tenants, batches, users, MX sightings.

They join the shared ``metadata`` of :mod:`mailtrek.state.schema`, so one ``state.db``
holds both the engine's per-message state and the orchestration. Times are stored as
timezone-aware UTC datetimes (SQLite keeps them as ISO text).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    Integer,
    String,
    Table,
    Text,
)

from mailtrek.state.schema import metadata

endpoints = Table(
    "endpoints",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("host", String(255), nullable=False),
    Column("port", Integer, nullable=False),
    Column("security", String(16), nullable=False),  # ssl | starttls | none
    Column("ca_file", Text),
    Column("preset", String(32)),
    Column("auth", String(16), nullable=False, default="password"),  # password | xoauth2
    Column("admin_format", String(32)),  # dovecot | exchange | mirapoint | None
    Column("admin_user", String(255)),  # for an IMAP destination: who logs in for everyone
    Column("admin_password_enc", Text),
    # Google Workspace: the service account's e-mail (shown) and its whole JSON key (encrypted).
    Column("service_account_email", String(255)),
    Column("service_account_key_enc", Text),
    Column("max_concurrent_migrations", Integer, nullable=False),
    Column("max_concurrent_incremental", Integer, nullable=False),
    Column("connections_per_mailbox", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("dav_url", Text),  # where its users' contacts and calendars are (None: preset/discovery)
)

tenants = Table(
    "tenants",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("tenant_id", String(255), nullable=False),
    Column("client_id", String(255), nullable=False),
    Column("client_secret_enc", Text, nullable=False),
    Column("authority", Text),  # None = Microsoft's public cloud
    Column("graph_url", Text),
    Column("ca_file", Text),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

batches = Table(
    "batches",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("status", String(24), nullable=False),
    Column("source_endpoint", String(64), nullable=False),
    Column("tenant", String(64)),  # Microsoft 365 destination ...
    Column("dest_endpoint", String(64)),  # ... or an IMAP destination
    Column("options_json", Text, nullable=False),  # exclude, since, before, max_size
    Column("notify_json", Text, nullable=False),  # list of addresses
    Column("incremental_hours", Float, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("started_at", DateTime(timezone=True)),
    Column("completed_at", DateTime(timezone=True)),
    Column("notified_status", String(24)),  # last status mailed, so restarts do not re-send
    Column("start_at", DateTime(timezone=True)),  # a Created batch starts by itself then
    Column("complete_at", DateTime(timezone=True)),  # completion (final syncs) asked for then
)

batch_users = Table(
    "batch_users",
    metadata,
    Column("batch", String(64), primary_key=True),
    Column("email", String(320), primary_key=True),
    Column("line", Integer, nullable=False),  # CSV line, for messages to the admin
    Column("username", String(512), nullable=False),
    Column("password_enc", Text),  # NULL once the batch is deleted
    Column("user_root", Text),
    Column("status", String(24), nullable=False),
    Column("ever_synced", Boolean, nullable=False, default=False),
    Column("items_synced", Integer, nullable=False, default=0),
    Column("items_skipped", Integer, nullable=False, default=0),
    Column("bytes", BigInteger, nullable=False, default=0),
    Column("items_total", Integer),  # messages the source holds, as last counted (plan or pre-flight)
    Column("last_sync", DateTime(timezone=True)),
    Column("next_sync", DateTime(timezone=True)),
    Column("error", Text),
    Column("skipped_json", Text),  # the last run's skipped items
    Column("runs", Integer, nullable=False, default=0),
    Column("lease_owner", String(128)),
    Column("lease_expires", DateTime(timezone=True)),
    Column("updated_at", DateTime(timezone=True)),
    Column("items", Text),  # what this user moves ("mail,calendars"); NULL: the batch's choice
    Column("pim_json", Text),  # the last contacts/calendars run's counts per kind
)

# One row per sync run of a user: when, how long, what it moved, how it ended.
user_runs = Table(
    "user_runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("batch", String(64), nullable=False, index=True),
    Column("email", String(320), nullable=False),
    Column("phase", String(16), nullable=False),  # initial | incremental | final
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
    Column("outcome", String(16), nullable=False),  # running | ok | failed | interrupted
    Column("items_copied", Integer, nullable=False, default=0),
    Column("bytes_copied", BigInteger, nullable=False, default=0),
    Column("error", Text),
)

# What `cutover check` has seen of a domain's MX, so it can say since when mail flows.
mx_sightings = Table(
    "mx_sightings",
    metadata,
    Column("domain", String(255), primary_key=True),
    Column("switched_since", DateTime(timezone=True)),  # NULL while MX is not Microsoft 365
    Column("last_checked", DateTime(timezone=True), nullable=False),
    Column("last_mx", Text),
)
