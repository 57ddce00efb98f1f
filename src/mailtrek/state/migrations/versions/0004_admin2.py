"""The admin's audit log and the measured copy rate of each route (for estimates).

The baseline creates tables from the current metadata, so a database made after this
change already has them; only older ones get them created here.

Revision ID: 0004_admin2
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_admin2"
down_revision = "0004_admin1"
branch_labels = None
depends_on = None


def upgrade() -> None:
    from mailtrek.state.admin import audit_log, route_rates

    bind = op.get_bind()
    for table in (audit_log, route_rates):
        if not sa.inspect(bind).has_table(table.name):
            table.create(bind)


def downgrade() -> None:
    op.drop_table("route_rates")
    op.drop_table("audit_log")
