"""A ``mailtrek`` run imports only the asked command's module, and nothing changes for the user.

``cli/main.py`` keeps a table: top-level command -> the modules that register it. These
tests hold the table to what the modules really register (each name registered alone, in
a fresh interpreter, gives the same command tree as the full app), and check that help and
"No such command" read as before.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import typer
from typer.main import get_command

from mailtrek.cli import main as cli_main

ENV = dict(os.environ, COLUMNS="100", TERM="dumb", NO_COLOR="1")
RUN_MAIN = "import sys; sys.argv[0] = 'mailtrek'; from mailtrek.cli.main import main; main()"

# Builds a JSON tree of the click commands of NAMES: every parameter, help text and
# whether the audit log wraps it. Run in-process on the full app, or in a fresh
# interpreter after registering only NAMES.
TREE = '''
import json, typer
from typer.main import get_command

def audited(app):
    return sorted((g.name, c.name or c.callback.__name__, bool(getattr(c.callback, "_audited", False)))
                  for g in app.registered_groups if g.typer_instance
                  for c in g.typer_instance.registered_commands)

PLAIN = (str, int, float, bool, type(None), list, tuple)

def describe(cmd, ctx):
    """A command as plain data: its attributes and parameters, its subcommands (groups)."""
    out = {k: repr(v) for k, v in vars(cmd).items()
           if k not in ("params", "commands", "callback") and isinstance(v, PLAIN)}
    out["params"] = [{k: repr(v) for k, v in vars(p).items() if isinstance(v, PLAIN)}
                     | {"annotation": repr(getattr(getattr(p, "type_descriptor", None), "annotation", None))}
                     for p in cmd.params]
    if hasattr(cmd, "commands"):
        out["commands"] = {n: describe(c, ctx) for n, c in cmd.commands.items()}
    return out

def tree(app, names):
    group = get_command(app)
    ctx = typer.Context(group, info_name="mailtrek")
    cmds = {n: group.get_command(ctx, n) for n in names}
    info = {n: (describe(c, ctx) if c is not None else None) for n, c in cmds.items()}
    return json.loads(json.dumps({"commands": info, "audited": [a for a in audited(app) if a[0] in names]}))
'''


def _full_tree(names: list[str]) -> Any:
    scope: dict[str, Any] = {}
    exec(TREE, scope)
    return scope["tree"](cli_main.app, names)


def _alone_tree(names: list[str]) -> Any:
    code = (TREE + "from mailtrek.cli import main\n"
            f"app = main._register({names[:1]!r})\n"
            f"print(json.dumps(tree(app, {names!r})))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env=ENV).stdout
    return json.loads(out)


def test_table_names_every_top_level_command() -> None:
    group = get_command(cli_main.app)
    assert isinstance(group, typer.core.TyperGroup)
    assert set(group.commands) == set(cli_main.COMMAND_MODULES)
    assert {m for ms in cli_main.COMMAND_MODULES.values() for m in ms} == set(cli_main.COMMAND_MODULE_ORDER)


def test_each_command_registered_alone_is_the_full_apps_command() -> None:
    """One fresh interpreter per distinct module set: its commands equal the full app's."""
    by_modules: dict[tuple[str, ...], list[str]] = {}
    for name, modules in cli_main.COMMAND_MODULES.items():
        by_modules.setdefault(modules, []).append(name)
    for names in by_modules.values():
        alone = _alone_tree(names)
        assert all(alone["commands"][n] is not None for n in names), names
        assert alone == _full_tree(names), names


def test_unknown_name_or_option_first_registers_everything() -> None:
    everything = cli_main.COMMAND_MODULE_ORDER
    assert cli_main.modules_for([]) == everything
    assert cli_main.modules_for(None) == everything
    assert cli_main.modules_for(["--help"]) == everything
    assert cli_main.modules_for(["copyy", "a", "b"]) == everything
    assert cli_main.modules_for(["copy", "--help"]) == ("copy_cmd",)
    assert cli_main.modules_for(["tenant", "edit"]) == ("orchestrate_cmds", "admin_cmds")


def _help_alone(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", RUN_MAIN, *args], capture_output=True,
                          text=True, env=ENV)


def test_help_and_errors_read_as_with_every_command_registered() -> None:
    cases = [["--help"], [], ["copy", "--help"], ["demo", "--help"], ["endpoint", "--help"],
             ["tenant", "edit", "--help"], ["copyy"]]
    code = ("import sys\nfrom mailtrek.cli.main import app\nfrom typer.main import get_command\n"
            f"for args in {cases!r}:\n"
            "    try:\n"
            "        get_command(app).main(args, prog_name='mailtrek')\n"
            "    except SystemExit as e:\n"
            "        print('\\nEXIT', e.code, flush=True)\n"
            "        print('\\nEXIT', e.code, file=sys.stderr, flush=True)\n")
    full = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV)
    full_out = full.stdout.split("\nEXIT ")
    full_err = full.stderr.split("\nEXIT ")
    for i, args in enumerate(cases):
        alone = _help_alone(args)
        want_code = int(full_out[i + 1].split("\n", 1)[0])
        want_out = full_out[i].split("\n", 1)[1] if i else full_out[0]
        want_err = full_err[i].split("\n", 1)[1] if i else full_err[0]
        assert alone.returncode == want_code, args
        assert alone.stdout.strip("\n") == want_out.strip("\n"), args
        assert alone.stderr.strip("\n") == want_err.strip("\n"), args



def test_copy_imports_no_other_command_or_store(tmp_path: Any) -> None:
    """A copy (here to a closed port) loads neither the dashboard, the batch commands,
    the Gmail or DAV stores, nor Alembic, even on a new state file."""
    code = (
        "import atexit, sys\n"
        "atexit.register(lambda: print(sorted({m for m in sys.modules if m.startswith(("
        "'mailtrek.web', 'mailtrek.cli.orchestrate_cmds', 'mailtrek.cli.admin_cmds', "
        "'mailtrek.stores.gmail.store', 'mailtrek.stores.dav.store', 'alembic', 'fastapi'))}), "
        "file=sys.stderr))\n" + RUN_MAIN)
    env = dict(ENV, MAILTREK_HOME=str(tmp_path / "home"), MAILTREK_SOURCE_PASSWORD="x",
               MAILTREK_DEST_PASSWORD="y")
    r = subprocess.run([sys.executable, "-c", code, "copy", "imap://a@127.0.0.1:1",
                        "imap://b@127.0.0.1:1", "--state", str(tmp_path / "new.db")],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 4, r.stderr  # connection refused
    assert r.stderr.strip().splitlines()[-1] == "[]"


def test_progress_bars_still_draw_on_a_terminal() -> None:
    """rich is imported only when bars are drawn; drawing them still works."""
    from mailtrek.cli.progress import ProgressView

    with ProgressView(enabled=True) as view:
        view.event("plan", messages=2, bytes=100)
        view.event("folder", name="INBOX")
        view.event("message", size=60)
        view.event("done")
        assert view._progress is not None and view._progress.tasks[0].completed == 60
