"""PostgreSQL only: procrastinate's job-queue schema, for `mailtrek worker`.

SQLite databases get nothing (workers need PostgreSQL). The schema is procrastinate's own
SQL for the pinned version; a later procrastinate upgrade brings its migrations as a new
revision here.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    if sa.inspect(bind).has_table("procrastinate_jobs"):
        return  # applied by hand (`procrastinate schema --apply`) before mailtrek managed it
    from procrastinate.schema import SchemaManager

    # Straight to the driver, without parameters: the SQL holds '%' signs (RAISE formats).
    cursor = bind.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(SchemaManager.get_schema())
    finally:
        cursor.close()


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    for name in ("procrastinate_events", "procrastinate_periodic_defers", "procrastinate_jobs",
                 "procrastinate_workers"):
        bind.exec_driver_sql(f"DROP TABLE IF EXISTS {name} CASCADE")
