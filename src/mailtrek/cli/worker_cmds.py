"""Commands for running at scale: `mailtrek worker` and `mailtrek state migrate-to/use/show`."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from mailtrek.cli.common import HomeOpt, handled
from mailtrek.errors import UsageError
from mailtrek.orchestrate.home import (
    DATABASE_ENV,
    DATABASE_URL_FILE,
    DB_FILE,
    default_home,
    open_home,
    state_location,
)
from mailtrek.secrets import RedactingFilter

StateOpt = Annotated[str | None, typer.Option(
    "--state", envvar=DATABASE_ENV,
    help="state database: postgresql://USER@HOST/DB or a SQLite path [HOME's database-url, else HOME/state.db]")]

state_app = typer.Typer(help="Where mailtrek's state lives; move it to PostgreSQL.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command("worker")(worker_cmd)
    app.add_typer(state_app, name="state")


def _log_setup(verbose: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for noisy in ("procrastinate", "httpx", "alembic"):
        logging.getLogger(noisy).setLevel(logging.INFO if verbose else logging.WARNING)


@handled
def worker_cmd(
    home: HomeOpt = None,
    state: StateOpt = None,
    concurrency: Annotated[int, typer.Option(help="mailbox moves this worker runs at once")] = 8,
    poll: Annotated[float, typer.Option(help="seconds between looks for due work")] = 5.0,
    stalled_after: Annotated[float, typer.Option(
        help="seconds without a heartbeat before a worker counts as dead and its mailboxes move on")] = 30.0,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run a worker: take mailbox moves and incremental syncs from the PostgreSQL job queue.

    Start one on every machine that can reach the database (same key: copy HOME's key
    file or set MAILTREK_SECRET_KEY). Stops on SIGTERM/SIGINT, releasing its mailboxes.
    """
    from mailtrek.orchestrate.workers import run_worker

    if concurrency < 1 or poll <= 0 or stalled_after <= 0:
        raise UsageError("--concurrency, --poll and --stalled-after must be positive")
    _log_setup(verbose)
    h = open_home(home, state)
    ctx = asyncio.run(run_worker(h, concurrency=concurrency, poll_seconds=poll, stalled_seconds=stalled_after))
    typer.echo(f"worker stopped: {ctx.moves} moves run")


@state_app.command("show")
@handled
def state_show(home: HomeOpt = None, state: StateOpt = None) -> None:
    """Print where the state lives (password hidden) and its schema revision."""
    from mailtrek.state.db import safe_url
    from mailtrek.state.migrate import stored_revision

    h = open_home(home, state)
    with h.engine.connect() as c:
        rev = stored_revision(c)
    typer.echo(f"state: {safe_url(h.engine.url.render_as_string(hide_password=False))} "
               f"({h.engine.dialect.name}, schema revision {rev})")


@state_app.command("migrate-to")
@handled
def state_migrate_to(
    url: Annotated[str, typer.Argument(help="target database, e.g. postgresql://mailtrek@db/mailtrek")],
    home: HomeOpt = None,
    source: Annotated[Path | None, typer.Option("--from", help="SQLite state to copy [HOME/state.db]")] = None,
    use: Annotated[bool, typer.Option("--use/--no-use",
                                      help="afterwards, point HOME at the new database")] = True,
) -> None:
    """Copy the whole SQLite state into an empty PostgreSQL database, verify, switch over.

    Stop runners and workers first: the copy is a snapshot.
    """
    from mailtrek.state.db import open_engine, safe_url
    from mailtrek.state.migrate_to import migrate_state

    hp = Path(home).expanduser() if home else default_home()
    src_path = source or hp / DB_FILE
    if not Path(src_path).is_file():
        raise UsageError(f"no SQLite state at {src_path}", hint="pass --from PATH")
    if "://" not in url:
        raise UsageError("the target must be a database URL (postgresql://...)")
    src, dst = open_engine(src_path), open_engine(url)
    result = migrate_state(src, dst, progress=lambda t, n: typer.echo(f"  {t}: {n} rows"))
    typer.echo(f"copied {result.total} rows from {src_path} to {safe_url(str(dst.url.render_as_string(hide_password=False)))}; "
               "read back and compared: equal")
    if use:
        hp.mkdir(parents=True, exist_ok=True)
        target = hp / DATABASE_URL_FILE
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # may hold a password
        with os.fdopen(fd, "w") as f:
            f.write(url + "\n")
        typer.echo(f"{hp} now uses the new database ({target.name}); {src_path} is kept as it was")


@state_app.command("use")
@handled
def state_use(
    url: Annotated[str, typer.Argument(help="postgresql://... or 'sqlite' for HOME/state.db")],
    home: HomeOpt = None,
) -> None:
    """Point HOME at a state database (checked and migrated first)."""
    from mailtrek.state.db import open_engine, safe_url

    hp = Path(home).expanduser() if home else default_home()
    target = hp / DATABASE_URL_FILE
    if url == "sqlite":
        target.unlink(missing_ok=True)
        typer.echo(f"{hp} uses {state_location(hp)}")
        return
    engine = open_engine(url)
    hp.mkdir(parents=True, exist_ok=True)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(url + "\n")
    typer.echo(f"{hp} uses {safe_url(engine.url.render_as_string(hide_password=False))}")
