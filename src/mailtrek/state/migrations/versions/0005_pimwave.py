"""Batch users carry contacts and calendars: what each moves (``items``) and the last
contacts/calendars counts (``pim_json``).

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

COLUMNS = (("items", sa.Text()), ("pim_json", sa.Text()))


def upgrade() -> None:
    have = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("batch_users")}
    for name, kind in COLUMNS:
        if name not in have:
            op.add_column("batch_users", sa.Column(name, kind, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("batch_users") as t:  # SQLite drops columns by copying the table
        for name, _ in reversed(COLUMNS):
            t.drop_column(name)
