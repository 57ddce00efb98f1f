"""The home directory: one place for the state database and the key of stored secrets."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

from mailtrek.secrets import SecretBox, load_key

if TYPE_CHECKING:  # the database is imported on first use: --help and `sim` need none
    from sqlalchemy import Engine

HOME_ENV = "MAILTREK_HOME"
DB_FILE = "state.db"
DATABASE_ENV = "MAILTREK_DATABASE_URL"
DATABASE_URL_FILE = "database-url"  # in the home: the PostgreSQL URL to use instead of state.db


def default_home() -> Path:
    """Return ``MAILTREK_HOME``, else the user's data directory (XDG) + ``mailtrek``."""
    env = os.environ.get(HOME_ENV)
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "mailtrek"


def utcnow() -> datetime:
    return datetime.now(UTC)


@overload
def as_utc(value: datetime) -> datetime: ...
@overload
def as_utc(value: None) -> None: ...
def as_utc(value: datetime | None) -> datetime | None:
    """Return ``value`` as aware UTC (SQLite hands back naive datetimes)."""
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@dataclass
class Home:
    """An opened home directory: database engine and secret box (key loaded lazily)."""

    path: Path
    engine: Engine
    _box: SecretBox | None = field(default=None, repr=False)
    # One Graph client per tenant while a runner runs: shared token cache and pacer.
    graph_clients: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def box(self) -> SecretBox:
        if self._box is None:
            self._box = SecretBox(load_key(self.path))
        return self._box


def state_location(home: Path, state: str | None = None) -> str | Path:
    """Return where the state lives: ``state``, else ``MAILTREK_DATABASE_URL``, else the
    home's ``database-url`` file, else ``HOME/state.db`` (SQLite)."""
    if state:
        return state
    if os.environ.get(DATABASE_ENV):
        return os.environ[DATABASE_ENV]
    configured = home / DATABASE_URL_FILE
    if configured.is_file() and configured.read_text().strip():
        return configured.read_text().strip()
    return home / DB_FILE


def open_home(path: str | os.PathLike[str] | None = None, state: str | None = None) -> Home:
    """Open (creating if needed) the home at ``path`` or the default one.

    ``state`` (a SQLite path or a ``postgresql://`` URL) overrides :func:`state_location`.
    """
    import mailtrek.state.orchestration  # noqa: F401  (adds our tables to the shared metadata)
    from mailtrek.state.db import open_engine

    home = Path(path).expanduser() if path else default_home()
    home.mkdir(parents=True, exist_ok=True)
    os.chmod(home, 0o700)  # the database holds encrypted passwords and mail metadata
    return Home(path=home, engine=open_engine(state_location(home, state)))
