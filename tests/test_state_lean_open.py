"""Opening a state database already at the newest schema does not import Alembic."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from mailtrek.state.db import open_engine
from mailtrek.state.migrate import HEAD, head


def test_head_constant_is_alembics_head() -> None:
    assert head() == HEAD, "a new migration must update mailtrek.state.migrate.HEAD"


def test_open_at_head_skips_alembic(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    open_engine(db).dispose()  # fresh: migrated
    code = (
        "import sys\n"
        "from mailtrek.state.db import open_engine\n"
        f"open_engine({str(db)!r}).dispose()\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'alembic'))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"


def _in_cli_process(code: str) -> str:
    """Run ``code`` in a fresh interpreter set up as the command line sets itself up."""
    pre = "import sys\nfrom mailtrek.state import migrate\nmigrate.MIGRATE_APART = True\n"
    return subprocess.run([sys.executable, "-c", pre + code], capture_output=True, text=True,
                          check=True).stdout.strip()


def test_fresh_file_migrated_in_a_child(tmp_path: Path) -> None:
    db = tmp_path / "fresh.db"
    out = _in_cli_process(
        "import sqlalchemy as sa\n"
        "from mailtrek.state.db import open_engine\n"
        f"e = open_engine({str(db)!r})\n"
        "with e.connect() as c:\n"
        "    v = c.execute(sa.text('SELECT version_num FROM alembic_version')).scalar()\n"
        "    n = c.execute(sa.text('SELECT count(*) FROM messages')).scalar()\n"
        "print(v, n, any(m.split('.')[0] == 'alembic' for m in sys.modules))\n")
    assert out == f"{HEAD} 0 False"


def test_newer_schema_still_refused_when_migrating_apart(tmp_path: Path) -> None:
    db = tmp_path / "newer.db"
    e = open_engine(db)
    with e.begin() as c:
        c.exec_driver_sql("UPDATE alembic_version SET version_num = '9999_future'")
    e.dispose()
    out = _in_cli_process(
        "from mailtrek.errors import StateError\n"
        "from mailtrek.state.db import open_engine\n"
        "try:\n"
        f"    open_engine({str(db)!r})\n"
        "except StateError as e:\n"
        "    print('refused', e)\n")
    assert out.startswith("refused") and "9999_future" in out
