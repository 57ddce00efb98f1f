"""Contacts and calendars (issue 17): the pim_collections and pim_items tables.

Like the baseline, it creates only what is missing (``open_engine`` may have created
them from the metadata already).

Revision ID: 0004_dav
Revises: 0003
"""

from __future__ import annotations

from alembic import op

revision = "0004_dav"
down_revision = "0004_m365app"
branch_labels = None
depends_on = None

TABLES = ("pim_collections", "pim_items")


def upgrade() -> None:
    from mailtrek.state.migrate import all_metadata

    md = all_metadata()
    md.create_all(op.get_bind(), tables=[md.tables[t] for t in TABLES], checkfirst=True)


def downgrade() -> None:
    from mailtrek.state.migrate import all_metadata

    md = all_metadata()
    md.drop_all(op.get_bind(), tables=[md.tables[t] for t in TABLES], checkfirst=True)
