"""Per-user batch commands: retry, sync, stop, resume, remove-user, move-user, export-failed, set.

Thin: parse options, call :mod:`mailtrek.orchestrate.members` / ``schedule``, print.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from mailtrek.cli.common import handled
from mailtrek.cli.common import open_home_at as _home
from mailtrek.errors import UsageError
from mailtrek.secrets import read_secret_file, redact
from mailtrek.units import human_bytes

UserOpt = Annotated[str | None, typer.Option("--user", help="the user's EmailAddress")]


def register(batch_app: typer.Typer) -> None:
    """Add the per-user commands to the ``batch`` group."""
    for name, fn in (("retry", batch_retry), ("sync", batch_sync), ("stop", batch_stop),
                     ("resume", batch_resume), ("remove-user", batch_remove_user),
                     ("move-user", batch_move_user), ("export-failed", batch_export_failed),
                     ("set", batch_set)):
        batch_app.command(name)(handled(fn))


def _say(outcomes: list[Any]) -> None:
    for o in outcomes:
        typer.echo(redact(f"{o.email}: {o.status} - {o.message}"))


def batch_retry(
    name: str,
    user: UserOpt = None,
    password_file: Annotated[Path | None, typer.Option(help="file with the user's new source password")] = None,
    username: Annotated[str | None, typer.Option(help="new source login (UserName) for --user")] = None,
    csv_file: Annotated[Path | None, typer.Option("--csv", help="users CSV with corrected UserName/Password "
                                                                "(e.g. from `batch export-failed`)")] = None,
    home: Annotated[Path | None, typer.Option("--home", envvar="MAILTREK_HOME")] = None,
) -> None:
    """Store new credentials for a user (or every user of a CSV) and run them again.

    Without --password-file the stored password is kept (on a terminal you are asked;
    an empty answer keeps it). Failed and stopped users run again at once.
    """
    from mailtrek.orchestrate import members

    h = _home(home)
    if (user is None) == (csv_file is None):
        raise UsageError("give --user EMAIL or --csv FILE", hint="e.g. `mailtrek batch retry B --user a@x "
                                                              "--password-file pw.txt`")
    if csv_file is not None:
        if password_file or username:
            raise UsageError("--csv takes UserName and Password from the file",
                             hint="leave out --password-file and --username")
        from mailtrek.orchestrate.csvfile import read_users_csv

        _say(members.retry_from_csv(h, name, read_users_csv(csv_file, allow_unknown_columns=True,
                                                            allow_empty_password=True)))
        return
    assert user is not None
    password = read_secret_file(password_file) if password_file else None
    if password is None and sys.stdin.isatty():
        typed = typer.prompt(f"new source password for {user} (empty keeps the stored one)", default="",
                             hide_input=True, show_default=False)
        password = typed or None
    _say([members.retry_user(h, name, user, password=password, username=username)])


def batch_sync(name: str, user: UserOpt = None,
               home: Annotated[Path | None, typer.Option("--home", envvar="MAILTREK_HOME")] = None) -> None:
    """Run an incremental sync now (every synced user, or --user only); the runner picks it up."""
    from mailtrek.orchestrate import members

    _say(members.sync_now(_home(home), name, user))


def batch_stop(name: str, user: UserOpt = None,
               home: Annotated[Path | None, typer.Option("--home", envvar="MAILTREK_HOME")] = None) -> None:
    """Stop a batch, or one user with --user; running syncs are interrupted."""
    from mailtrek.orchestrate import batches, members

    h = _home(home)
    if user:
        _say([members.stop_user(h, name, user)])
    else:
        typer.echo(f"batch {name}: {batches.stop_batch(h, name).status}")


def batch_resume(name: str, user: UserOpt = None,
                 home: Annotated[Path | None, typer.Option("--home", envvar="MAILTREK_HOME")] = None) -> None:
    """Resume a stopped batch or retry its failed users; with --user, only that user."""
    from mailtrek.orchestrate import batches, members

    h = _home(home)
    if user:
        _say([members.resume_user(h, name, user)])
    else:
        typer.echo(f"batch {name}: {batches.resume_batch(h, name).status}")


def batch_remove_user(
    name: str,
    email: Annotated[str | None, typer.Argument(help="the user's EmailAddress")] = None,
    user: UserOpt = None,
    home: Annotated[Path | None, typer.Option("--home", envvar="MAILTREK_HOME")] = None,
) -> None:
    """Take one user out of a batch with its stored password (copied mail and sync state stay)."""
    from mailtrek.orchestrate import members

    who = email or user
    if not who or (email and user and email.lower() != user.lower()):
        raise UsageError("give the user's address once: `batch remove-user NAME EMAIL`")
    _say([members.remove_user(_home(home), name, who)])


def batch_move_user(
    name: str,
    user: Annotated[str, typer.Option("--user", help="the user's EmailAddress")],
    to: Annotated[str, typer.Option("--to", help="the batch to move the user to")],
    home: Annotated[Path | None, typer.Option("--home", envvar="MAILTREK_HOME")] = None,
) -> None:
    """Move a user to another batch of the same endpoint and destination (keeps what is synced)."""
    from mailtrek.orchestrate import members

    _say([members.move_user(_home(home), name, user, to)])


def batch_export_failed(
    name: str,
    output: Annotated[Path, typer.Option(help="CSV file to write")],
    with_errors: Annotated[bool, typer.Option(help="add an Error column (ignored on re-import)")] = False,
    home: Annotated[Path | None, typer.Option("--home", envvar="MAILTREK_HOME")] = None,
) -> None:
    """Write the failed users as a users CSV: fill in Password, then `batch retry NAME --csv FILE`."""
    from mailtrek.orchestrate import members

    h = _home(home)
    text = members.export_failed(h, name, with_errors=with_errors)
    output.write_text(text, encoding="utf-8")
    n = text.count("\n") - 1
    typer.echo(f"{n} failed user(s) written to {output}"
               + (f"; fill in their passwords, then `mailtrek batch retry {name} --csv {output}`" if n else ""))


def batch_set(
    name: str,
    interval: Annotated[float | None, typer.Option(help="hours between incremental syncs")] = None,
    start_at: Annotated[str | None, typer.Option(help="start a Created batch then (ISO time, +2h; none clears)")] = None,
    complete_at: Annotated[str | None, typer.Option(help="complete then (ISO time, +2h; none clears); "
                                                          "prefer `batch complete --at`, which checks the MX")] = None,
    home: Annotated[Path | None, typer.Option("--home", envvar="MAILTREK_HOME")] = None,
) -> None:
    """Change a batch's incremental interval, start time or completion time."""
    from mailtrek.orchestrate.schedule import set_schedule

    b = set_schedule(_home(home), name, interval_hours=interval, start_at=start_at, complete_at=complete_at)
    typer.echo(f"batch {name}: incremental sync every {b.incremental_hours:g} h"
               + (f"; starts at {b.start_at:%Y-%m-%d %H:%M} UTC" if b.start_at else "")
               + (f"; completes at {b.complete_at:%Y-%m-%d %H:%M} UTC" if b.complete_at else ""))


def print_user(h: Any, name: str, email: str, json_out: bool) -> None:
    """`batch show NAME --user EMAIL`: the user's row, folders and run history."""
    import json

    from mailtrek.orchestrate import members
    from mailtrek.orchestrate.reports import batch_document

    d = next((u for u in batch_document(h, name)["users"] if u["email"] == email.strip().lower()), None)
    if d is None:
        members.get_user(h, name, email)  # raises the usual "no user" error
        return
    detail = members.user_detail(h, name, email)
    if json_out:
        typer.echo(redact(json.dumps({**d, **detail}, indent=2, default=str, ensure_ascii=False)))
        return
    total = f" of {d['items_total']}" if d["items_total"] else ""
    typer.echo(redact(f"{d['email']} in batch {name}: {d['status']}, {d['items_synced']}{total} items "
                      f"({d['size']}) on the destination, {d['items_skipped']} skipped, {d['runs']} run(s)"))
    typer.echo(f"  last sync {d['last_sync'] or '-'}; next sync {d['next_sync'] or '-'}")
    if d["error"]:
        typer.echo(redact(f"  error: {d['error']}"))
    typer.echo("folders:")
    for f in detail["folders"]:
        typer.echo(f"  {f['folder']}: {f['synced']} of {f['source_messages'] if f['source_messages'] is not None else '?'}"
                   + (" (complete)" if f["complete"] else ""))
    if not detail["folders"]:
        typer.echo("  (none synced yet)")
    typer.echo("runs (newest first):")
    for r in detail["history"]:
        typer.echo(redact(f"  {r['started_at'][:19]}  {r['phase']:<11} {r['outcome']:<11} {r['seconds']:>7.1f} s  "
                          f"{r['items_copied']} items, {human_bytes(r['bytes_copied'])} copied"
                          + (f"  {r['error']}" if r["error"] else "")))
    if not detail["history"]:
        typer.echo("  (none yet)")
