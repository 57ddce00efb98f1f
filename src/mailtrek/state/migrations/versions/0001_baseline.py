"""Baseline: the engine's, the workflow's and the dashboard's tables as of issue 7.

Databases made before migrations existed already hold these tables (``create_all``), so
the baseline creates only what is missing; on them it amounts to stamping the version.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

BASELINE_TABLES = ("folders", "messages", "endpoints", "tenants", "batches", "batch_users",
                   "mx_sightings", "web_admin", "web_sessions")


def upgrade() -> None:
    from mailtrek.state.migrate import all_metadata

    md = all_metadata()
    md.create_all(op.get_bind(), tables=[md.tables[t] for t in BASELINE_TABLES], checkfirst=True)


def downgrade() -> None:
    from mailtrek.state.migrate import all_metadata

    md = all_metadata()
    md.drop_all(op.get_bind(), tables=[md.tables[t] for t in BASELINE_TABLES], checkfirst=True)
