"""What every command shares: error printing with exit codes, secrets, the home dir."""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import typer

from mailtrek.errors import EXIT_INTERNAL, MailtrekError, UsageError


@contextmanager
def fail_on_error() -> Iterator[None]:
    """Turn a MailtrekError into one clear line on stderr and its exit code."""
    try:
        yield
    except MailtrekError as e:
        typer.echo(f"mailtrek: error: {e.message}", err=True)
        if e.hint:
            typer.echo(f"mailtrek: hint: {e.hint}", err=True)
        raise typer.Exit(e.exit_code) from None
    except KeyboardInterrupt:
        typer.echo("mailtrek: interrupted; run the same command again to resume", err=True)
        raise typer.Exit(130) from None


def report_crash(e: BaseException) -> int:
    """Write ``e``'s traceback (secrets redacted) to a log file, say so in one line.

    The file goes to ``MAILTREK_HOME/logs`` (else the temporary directory). Returns
    EXIT_INTERNAL, the exit code of an unexpected error.
    """
    from mailtrek.secrets import redact

    text = redact("".join(traceback.format_exception(e)))
    name = f"crash-{datetime.now(UTC):%Y%m%d-%H%M%S}-{os.getpid()}.log"
    where: Path | None = None
    for folder in (home_dir() / "logs", Path(tempfile.gettempdir())):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(f"mailtrek {' '.join(sys.argv[1:2])}\n{text}",
                                       encoding="utf-8")
            where = folder / name
            break
        except OSError:
            continue
    summary = redact(f"{e.__class__.__name__}: {e}".splitlines()[0] if str(e)
                     else e.__class__.__name__)[:300]
    detail = f"the traceback is in {where}" if where else "no log file could be written"
    typer.echo(f"mailtrek: internal error: {summary}; {detail}; please report it", err=True)
    return EXIT_INTERNAL


def read_secret(path: Path | None, env: str, *, required: bool = True) -> str | None:
    """Read a secret from a file (first line) or the environment; never from argv."""
    if path is not None:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as e:
            raise UsageError(f"cannot read {path}: {e.strerror}") from e
        return text.splitlines()[0] if text else ""
    value = os.environ.get(env)
    if value is None and required:
        return None
    return value


def home_dir() -> Path:
    """``MAILTREK_HOME``, else the user's data directory + ``mailtrek``."""
    from mailtrek.orchestrate.home import default_home

    return default_home()


def log_service_to_stdout(verbose: bool = False) -> None:
    """Log mailtrek's INFO (DEBUG with ``verbose``) to stdout, secrets redacted.

    For long-running commands (``run``, ``serve``) whose output is their log.
    """
    from mailtrek.secrets import RedactingFilter

    handler = logging.StreamHandler(sys.stdout)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("mailtrek")
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    root.propagate = False


def ca_path(ca_file: Path | None) -> str | None:
    """Return the CA bundle's absolute path (None when not given); UsageError if missing."""
    if ca_file is None:
        return None
    if not ca_file.is_file():
        raise UsageError(f"CA file not found: {ca_file}")
    return str(ca_file.resolve())
