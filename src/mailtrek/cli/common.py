"""What every command shares: error printing with exit codes, secrets, the home dir."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer

from mailtrek.errors import MailtrekError, UsageError


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
