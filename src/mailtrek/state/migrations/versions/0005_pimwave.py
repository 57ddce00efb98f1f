"""Batch users carry contacts and calendars: what each moves (``items``) and the last
contacts/calendars counts (``pim_json``); an endpoint may say where its DAV server is
(``dav_url``).

The baseline creates tables from the current metadata, so a database made after this
change already has the columns; only older ones get them added.

Revision ID: 0005_pimwave
Revises: 0004_dav
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_pimwave"
down_revision = "0004_dav"
branch_labels = None
depends_on = None

COLUMNS = (("batch_users", "items", sa.Text()), ("batch_users", "pim_json", sa.Text()),
           ("endpoints", "dav_url", sa.Text()))


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    for table, name, kind in COLUMNS:
        if name not in {c["name"] for c in inspector.get_columns(table)}:
            op.add_column(table, sa.Column(name, kind, nullable=True))


def downgrade() -> None:
    for table in ("endpoints", "batch_users"):
        with op.batch_alter_table(table) as t:  # SQLite drops columns by copying the table
            for owner, name, _ in reversed(COLUMNS):
                if owner == table:
                    t.drop_column(name)
