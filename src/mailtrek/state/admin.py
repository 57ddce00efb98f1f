"""Tables of the admin's tools: the audit log and the measured rate of each route.

They join the shared ``metadata`` of :mod:`mailtrek.state.schema`. The audit log never
holds a secret: callers pass what was done and to what, not the options' values.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, DateTime, Float, Integer, String, Table, Text

from mailtrek.state.schema import metadata

# Who did what to which object, and how it ended.
audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("actor", String(255), nullable=False),  # "cli:USER@HOST" or "web:admin"
    Column("action", String(128), nullable=False),  # "batch create", "endpoint edit", ...
    Column("target", String(512)),  # the object's name (batch, endpoint, user e-mail)
    Column("detail", Text),  # option names that were given, never their values
    Column("outcome", String(32), nullable=False),  # ok | error: EXIT
)

# One row per finished sync run of a route: the rate it reached, for estimates.
route_rates = Table(
    "route_rates",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("route", String(512), nullable=False, index=True),  # "imap.example.com -> m365"
    Column("at", DateTime(timezone=True), nullable=False),
    Column("messages", Integer, nullable=False),
    Column("bytes", BigInteger, nullable=False),
    Column("seconds", Float, nullable=False),
)
