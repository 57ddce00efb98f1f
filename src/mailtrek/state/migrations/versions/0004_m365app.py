"""Microsoft 365 per app: tenant_apps, tenant_profiles, m365_app_slots (state/m365.py).

Revision ID: 0004_m365app
Revises: 0003
"""

from __future__ import annotations

from alembic import op

revision = "0004_m365app"
down_revision = "0004_admin2"
branch_labels = None
depends_on = None

TABLES = ("tenant_apps", "tenant_profiles", "m365_app_slots")


def upgrade() -> None:
    from mailtrek.state.migrate import all_metadata

    md = all_metadata()
    md.create_all(op.get_bind(), tables=[md.tables[t] for t in TABLES], checkfirst=True)


def downgrade() -> None:
    from mailtrek.state.migrate import all_metadata

    md = all_metadata()
    md.drop_all(op.get_bind(), tables=[md.tables[t] for t in TABLES], checkfirst=True)
