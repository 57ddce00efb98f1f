"""A new SQLite state file made without Alembic has exactly the migration chain's schema."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from mailtrek.state import migrate
from mailtrek.state.db import open_engine


def _by_migrations(path: Path) -> sa.Engine:
    """A new file as open_engine made it before: the Alembic chain, then create_all."""
    engine = sa.create_engine(f"sqlite:///{path}")
    assert migrate._upgrade_here(engine)
    migrate.all_metadata().create_all(engine)
    return engine


def _schema(engine: sa.Engine) -> dict[str, Any]:
    """Everything SQLite and SQLAlchemy's inspector say about the schema, and its rows."""
    insp = sa.inspect(engine)
    out: dict[str, Any] = {}
    with engine.connect() as c:
        out["master"] = sorted(tuple(r) for r in c.exec_driver_sql(
            "SELECT type, name, tbl_name, sql FROM sqlite_master"))
        out["user_version"] = c.exec_driver_sql("PRAGMA user_version").scalar()
        for t in insp.get_table_names():
            rows = sorted(tuple(r) for r in c.exec_driver_sql(f'SELECT * FROM "{t}"'))
            out[t] = {
                "rows": rows,
                "xinfo": [tuple(r) for r in c.exec_driver_sql(f'PRAGMA table_xinfo("{t}")')],
                "fks": [tuple(r) for r in c.exec_driver_sql(f'PRAGMA foreign_key_list("{t}")')],
                "indexes": sorted(tuple(r) for r in c.exec_driver_sql(f'PRAGMA index_list("{t}")')),
                "columns": [{k: str(v) for k, v in col.items()} for col in insp.get_columns(t)],
                "pk": insp.get_pk_constraint(t),
                "ix": insp.get_indexes(t),
                "uq": insp.get_unique_constraints(t),
                "fk": insp.get_foreign_keys(t),
                "ck": insp.get_check_constraints(t),
            }
    return out


def test_new_file_schema_equals_the_migration_chains(tmp_path: Path) -> None:
    chain = _schema(_by_migrations(tmp_path / "chain.db"))
    direct = _schema(open_engine(tmp_path / "direct.db"))
    assert chain["alembic_version"]["rows"] == [(migrate.HEAD,)]
    assert len(chain["master"]) > 20  # the comparison saw the tables
    assert direct == chain


def test_new_file_needs_no_alembic_and_no_child(tmp_path: Path) -> None:
    """In-process (no MIGRATE_APART): a new file is made without importing Alembic."""
    db = tmp_path / "new.db"
    code = ("import sys\nfrom mailtrek.state.db import open_engine\n"
            f"open_engine({str(db)!r}).dispose()\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'alembic'))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"


def test_a_database_with_tables_is_left_to_the_migrations(tmp_path: Path) -> None:
    """Not empty (here: tables of a mailtrek before migrations): the chain runs, as before."""
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    md = migrate.all_metadata()
    md.create_all(engine, tables=[md.tables["folders"], md.tables["messages"]])
    assert migrate.upgrade(engine)
    assert _schema(engine) == _schema(_by_migrations(tmp_path / "chain.db"))


def test_processes_opening_one_new_file_at_once_all_succeed(tmp_path: Path) -> None:
    db = tmp_path / "shared.db"
    code = f"from mailtrek.state.db import open_engine\nopen_engine({str(db)!r}).dispose()\n"
    procs = [subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True)
             for _ in range(3)]
    for p in procs:
        assert p.wait(timeout=60) == 0, p.stderr.read() if p.stderr else ""
    assert _schema(sa.create_engine(f"sqlite:///{db}")) == _schema(_by_migrations(tmp_path / "c.db"))


def test_stored_revision_reads_what_alembic_reads(tmp_path: Path) -> None:
    """`state show` reads the revision with plain SQL; Alembic reads the same."""
    from alembic import command

    empty = sa.create_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    old = sa.create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    with old.begin() as c:
        command.upgrade(migrate._config(c), "0003")
    for engine, want in ((empty, None), (old, "0003"), (open_engine(tmp_path / "new.db"), migrate.HEAD)):
        with engine.connect() as c:
            assert migrate.stored_revision(c) == migrate.current(c) == want
