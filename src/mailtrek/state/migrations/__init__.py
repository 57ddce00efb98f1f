"""Alembic migrations of the state database (applied on start by :mod:`mailtrek.state.migrate`)."""
