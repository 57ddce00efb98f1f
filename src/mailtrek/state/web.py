"""Tables of the web dashboard: the admin's password hash and the login sessions.

They join the shared ``metadata`` of :mod:`mailtrek.state.schema`; importing this module
before :func:`mailtrek.orchestrate.home.open_home` creates them in ``state.db``. Session
tokens are stored only as SHA-256 hashes, so a copy of the database opens no session.
"""

from __future__ import annotations

from sqlalchemy import Column, DateTime, Integer, String, Table, Text

from mailtrek.state.schema import metadata

web_admin = Table(
    "web_admin",
    metadata,
    Column("id", Integer, primary_key=True),  # always 1: one admin
    Column("password_hash", Text, nullable=False),  # argon2id, PHC string
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

web_sessions = Table(
    "web_sessions",
    metadata,
    Column("token_hash", String(64), primary_key=True),  # sha256 hex of the cookie value
    Column("csrf", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
)
