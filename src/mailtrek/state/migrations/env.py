"""Alembic environment: run migrations on the connection :func:`mailtrek.state.migrate.upgrade` gives.

There is no alembic.ini: mailtrek applies migrations itself when it opens a database, so
the connection (already inside a transaction holding the migration lock) arrives in
``config.attributes["connection"]``.
"""

from __future__ import annotations

from alembic import context

from mailtrek.state.migrate import all_metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=all_metadata(),
                  render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
