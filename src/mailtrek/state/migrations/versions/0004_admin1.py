"""Per-user control and live numbers: batch schedules, known totals, run history, route-keyed state.

- ``batches.start_at`` / ``complete_at``: a batch starts / completes by itself at that time.
- ``batch_users.items_total``: the source's message count as last known (plan or pre-flight).
- ``user_runs``: one row per sync run of a user.
- Engine state (``folders``, ``messages``) was keyed ``BATCH/EMAIL``; it is now keyed by the
  route (source mailbox to destination mailbox), so a new batch for a migrated user finds
  what is already copied. Rows whose route already has state are left as they are.

The baseline creates tables from the current metadata, so a database made after this
change already has everything; only older ones get it added.

Revision ID: 0004_admin1
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_admin1"
down_revision = "0003"
branch_labels = None
depends_on = None

BATCH_COLUMNS = (("start_at", sa.DateTime(timezone=True)), ("complete_at", sa.DateTime(timezone=True)))


def upgrade() -> None:
    bind = op.get_bind()
    insp = sa.inspect(bind)
    have = {c["name"] for c in insp.get_columns("batches")}
    for name, kind in BATCH_COLUMNS:
        if name not in have:
            op.add_column("batches", sa.Column(name, kind, nullable=True))
    if "items_total" not in {c["name"] for c in insp.get_columns("batch_users")}:
        op.add_column("batch_users", sa.Column("items_total", sa.Integer(), nullable=True))
    if not insp.has_table("user_runs"):
        from mailtrek.state.migrate import all_metadata

        md = all_metadata()
        md.create_all(bind, tables=[md.tables["user_runs"]], checkfirst=True)
    _rekey(bind)


def _rekey(bind: sa.Connection) -> None:
    """Move engine state from ``BATCH/EMAIL`` keys to route keys."""
    rows = bind.execute(sa.text(
        "SELECT u.batch, u.email, u.username, b.source_endpoint, b.tenant, b.dest_endpoint "
        "FROM batch_users u JOIN batches b ON b.name = u.batch")).all()
    for batch, email, username, src, tenant, dest in rows:
        old = f"{batch}/{email.lower()}"
        new = _route_key(src, username, tenant, dest, email)
        taken = bind.execute(sa.text("SELECT 1 FROM folders WHERE mailbox = :m LIMIT 1"), {"m": new}).first()
        if taken:
            continue
        for table in ("folders", "messages"):
            bind.execute(sa.text(f"UPDATE {table} SET mailbox = :new WHERE mailbox = :old"),
                         {"new": new, "old": old})


def _route_key(src: str, username: str, tenant: str | None, dest: str | None, email: str) -> str:
    """A frozen copy of ``mailtrek.orchestrate.routes.mailbox_route`` as of this revision."""
    to = f"tenant:{tenant}" if tenant else f"imap:{dest}"
    return f"route:{src}/{username.strip().lower()}>{to}/{email.strip().lower()}"


def downgrade() -> None:
    op.drop_table("user_runs")
    with op.batch_alter_table("batch_users") as t:
        t.drop_column("items_total")
    with op.batch_alter_table("batches") as t:
        for name, _ in reversed(BATCH_COLUMNS):
            t.drop_column(name)
