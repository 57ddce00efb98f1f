"""The ``mailtrek`` command: one typer app; each command group lives in its own module.

A run imports only the module of the command it was asked for (``mailtrek copy`` never
loads the dashboard, the Gmail store or the batch commands); ``--help``, no arguments or
an unknown name register everything, so help and "No such command" read as before.
``from mailtrek.cli.main import app`` returns the app with every command.
"""

from __future__ import annotations

import sys
from types import ModuleType

import typer

_app = typer.Typer(
    name="mailtrek",
    help="Move mailboxes from any IMAP server into Microsoft 365 or another IMAP server.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@_app.callback()
def _group() -> None:
    # Keeps the app a group when one module with one command is registered (typer would
    # otherwise make that command the whole program: `mailtrek demo` would not parse).
    pass


# The command modules in --help order; each defines ``register(app)``.
COMMAND_MODULE_ORDER = ("demo_cmd", "copy_cmd", "sim_cmd", "orchestrate_cmds", "web_cmds",
                        "worker_cmds", "admin_cmds")

# Which modules add each top-level command or group, and its subcommands
# (tests/test_cli_lazy_commands.py holds this table to what the modules really register,
# so it cannot drift).
COMMAND_MODULES: dict[str, tuple[str, ...]] = {
    "demo": ("demo_cmd",),
    "copy": ("copy_cmd",),
    "verify": ("copy_cmd",),
    "sim": ("sim_cmd",),
    "run": ("orchestrate_cmds",),
    "endpoint": ("orchestrate_cmds", "admin_cmds"),  # admin_cmds adds `endpoint edit`
    "tenant": ("orchestrate_cmds", "admin_cmds"),  # ... and `tenant edit`
    "batch": ("orchestrate_cmds",),
    "cutover": ("orchestrate_cmds",),
    "serve": ("web_cmds",),
    "admin": ("web_cmds",),
    "worker": ("worker_cmds",),
    "state": ("worker_cmds",),
    "audit": ("admin_cmds",),
    "notify": ("admin_cmds",),
}

_registered: set[str] = set()


def modules_for(args: list[str] | None) -> tuple[str, ...]:
    """The command modules a run with ``args`` (argv without the program) needs: the
    named command's, or every one (no command, an option first, an unknown name)."""
    if args and args[0] in COMMAND_MODULES:
        wanted = COMMAND_MODULES[args[0]]
        return tuple(m for m in COMMAND_MODULE_ORDER if m in wanted)
    return COMMAND_MODULE_ORDER


def _register(args: list[str] | None = None) -> typer.Typer:
    """Register the command modules ``args`` needs (each once per process) and return the app."""
    from mailtrek.cli.audit_hook import audit_commands

    for name in modules_for(args):
        if name not in _registered:
            _registered.add(name)
            _import(name).register(_app)
    audit_commands(_app)  # last: wraps every changing command, whichever module added it
    return _app


def _import(name: str) -> ModuleType:
    """Import one command module (spelled out, not importlib: the import-graph test sees
    each edge)."""
    if name == "demo_cmd":
        import mailtrek.cli.demo_cmd
    elif name == "copy_cmd":
        import mailtrek.cli.copy_cmd
    elif name == "sim_cmd":
        import mailtrek.cli.sim_cmd
    elif name == "orchestrate_cmds":
        import mailtrek.cli.orchestrate_cmds
    elif name == "web_cmds":
        import mailtrek.cli.web_cmds
    elif name == "worker_cmds":
        import mailtrek.cli.worker_cmds
    elif name == "admin_cmds":
        import mailtrek.cli.admin_cmds  # noqa: F401  (every branch is used: returned below)
    return sys.modules[f"mailtrek.cli.{name}"]


def __getattr__(name: str) -> typer.Typer:
    """``app``: the typer app with every command registered (for tests and embedding)."""
    if name == "app":
        return _register()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main() -> None:
    """Console-script entry point.

    An exception no command handled is a bug: one line on stderr that names the log file
    holding its traceback, and exit 8, never a traceback that ends in exit 1.
    """
    from mailtrek.malloc import release_freed_memory
    from mailtrek.state import migrate

    release_freed_memory()  # many mailboxes in one process: RSS follows what is held
    migrate.MIGRATE_APART = True  # Alembic (~11 MB) stays out of this process
    app = _register(sys.argv[1:])
    try:
        app()
    except Exception as e:  # SystemExit/KeyboardInterrupt are not Exceptions: they pass
        from mailtrek.cli.common import report_crash

        sys.exit(report_crash(e))


if __name__ == "__main__":
    main()
