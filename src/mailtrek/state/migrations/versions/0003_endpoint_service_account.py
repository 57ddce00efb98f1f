"""Endpoints hold a Google Workspace service account: its e-mail and its encrypted key.

The baseline creates tables from the current metadata, so a database made after this
change already has the columns; only older ones get them added.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

COLUMNS = (("service_account_email", sa.String(255)), ("service_account_key_enc", sa.Text()))


def upgrade() -> None:
    have = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("endpoints")}
    for name, kind in COLUMNS:
        if name not in have:
            op.add_column("endpoints", sa.Column(name, kind, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("endpoints") as t:  # SQLite drops columns by copying the table
        for name, _ in reversed(COLUMNS):
            t.drop_column(name)
