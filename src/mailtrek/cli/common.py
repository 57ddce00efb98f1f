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


def setup_logging(verbose: bool = False) -> None:
    """Log to stderr; DEBUG with ``verbose``."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
