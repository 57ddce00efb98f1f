"""What every command shares: error printing with exit codes, secrets, the home dir, output.

Every command module imports this one (and :mod:`mailtrek.cli.groups`), never each other's
helpers, so the command modules form no import loop.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
import tempfile
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from mailtrek.errors import EXIT_INTERNAL, MailtrekError, UsageError
from mailtrek.orchestrate.home import HOME_ENV

if TYPE_CHECKING:
    from mailtrek.orchestrate.home import Home

F = TypeVar("F", bound=Callable[..., Any])
HomeOpt = Annotated[Path | None, typer.Option("--home", envvar=HOME_ENV,
                                              help="Directory holding mailtrek's state [default: user data dir]")]


def say_error(e: MailtrekError, prefix: str = "mailtrek: ") -> None:
    """Print ``e``'s message and hint on stderr, secrets redacted: the one way errors are shown."""
    from mailtrek.secrets import redact

    typer.echo(f"{prefix}error: {redact(e.message)}", err=True)
    if e.hint:
        typer.echo(f"{prefix}hint: {redact(e.hint)}", err=True)


@contextmanager
def fail_on_error(prefix: str = "mailtrek: ", *, interrupts: bool = True) -> Iterator[None]:
    """Turn a MailtrekError into its lines on stderr (:func:`say_error`) and its exit code.

    ``prefix`` starts each line (the workflow commands print a bare ``error:``); with
    ``interrupts`` a Ctrl-C says how to resume and exits 130.
    """
    try:
        yield
    except MailtrekError as e:
        say_error(e, prefix)
        raise typer.Exit(e.exit_code) from None
    except KeyboardInterrupt:
        if not interrupts:
            raise
        typer.echo("mailtrek: interrupted; run the same command again to resume", err=True)
        raise typer.Exit(130) from None


def handled(fn: F) -> F:
    """Run command ``fn`` inside :func:`fail_on_error` (lines start ``error:``/``hint:``)."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with fail_on_error("", interrupts=False):
            return fn(*args, **kwargs)
    return wrapper  # type: ignore[return-value]


def open_home_at(path: Path | None) -> Home:
    """Open the state home at ``path`` (``--home``), else MAILTREK_HOME or the default."""
    from mailtrek.orchestrate.home import open_home

    return open_home(path)


def env_password(env: str, password_file: Path | None) -> str | None:
    """A password from ``password_file`` (first line), else from ``env``; None when neither."""
    from mailtrek.secrets import read_secret_file, remember

    if password_file is not None:
        return read_secret_file(password_file)
    return remember(os.environ.get(env)) or None


def print_json(data: Any) -> None:
    """Print ``data`` as indented JSON, secrets redacted."""
    from mailtrek.secrets import redact

    typer.echo(redact(json.dumps(data, indent=2, default=str, ensure_ascii=False)))


def print_table(rows: list[dict[str, Any]], cols: list[str]) -> None:
    """Print ``rows`` as aligned columns ``cols`` (``(none)`` when empty), secrets redacted."""
    from mailtrek.secrets import redact

    if not rows:
        typer.echo("(none)")
        return
    widths = {c: max(len(c), *(len(str(r.get(c) if r.get(c) is not None else "")) for r in rows)) for c in cols}
    typer.echo("  ".join(c.ljust(widths[c]) for c in cols).rstrip())
    for r in rows:
        typer.echo(redact("  ".join(str(r.get(c) if r.get(c) is not None else "").ljust(widths[c])
                                    for c in cols).rstrip()))


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
