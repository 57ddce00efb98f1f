"""The ``mailtrek`` command: one typer app; each command group lives in its own module."""

from __future__ import annotations

import sys

import typer

app = typer.Typer(
    name="mailtrek",
    help="Move mailboxes from any IMAP server into Microsoft 365 or another IMAP server.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _register() -> None:
    # Each module defines ``register(app)``; the order is the order of --help.
    from mailtrek.cli import (
        admin_cmds,
        copy_cmd,
        demo_cmd,
        orchestrate_cmds,
        sim_cmd,
        web_cmds,
        worker_cmds,
    )
    from mailtrek.cli.audit_hook import audit_commands

    for mod in (demo_cmd, copy_cmd, sim_cmd, orchestrate_cmds, web_cmds, worker_cmds, admin_cmds):
        mod.register(app)
    audit_commands(app)  # last: wraps every changing command, whichever module added it


_register()


def main() -> None:
    """Console-script entry point.

    An exception no command handled is a bug: one line on stderr that names the log file
    holding its traceback, and exit 8, never a traceback that ends in exit 1.
    """
    from mailtrek.malloc import release_freed_memory
    from mailtrek.state import migrate

    release_freed_memory()  # many mailboxes in one process: RSS follows what is held
    migrate.MIGRATE_APART = True  # Alembic (~11 MB) stays out of this process
    try:
        app()
    except Exception as e:  # SystemExit/KeyboardInterrupt are not Exceptions: they pass
        from mailtrek.cli.common import report_crash

        sys.exit(report_crash(e))


if __name__ == "__main__":
    main()
