"""Record the admin's CLI actions in the audit log, wrapped once at command registration.

Every command of the groups in :data:`AUDITED_GROUPS` that changes something (not a
``list``/``show``/``test``...) is wrapped: after it ran, one entry says who ran it, on
which object, with which option *names* (never values: they may be file names of secrets
or addresses), and whether it succeeded.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

AUDITED_GROUPS = ("endpoint", "tenant", "batch", "admin")
READ_ONLY = frozenset({"list", "show", "presets", "report", "preflight", "discover", "test"})
TARGET_PARAMS = ("name", "domain")
USER_PARAMS = ("user", "email")  # a user inside the target batch


def audit_commands(app: typer.Typer) -> None:
    """Wrap every changing command of the audited groups of ``app`` (call after registering)."""
    for group in app.registered_groups:
        if group.name not in AUDITED_GROUPS or group.typer_instance is None:
            continue
        for cmd in group.typer_instance.registered_commands:
            name = cmd.name or (cmd.callback.__name__.replace("_", "-") if cmd.callback else "")
            if cmd.callback is None or name in READ_ONLY or getattr(cmd.callback, "_audited", False):
                continue
            cmd.callback = audited(f"{group.name} {name}", cmd.callback)


def audited(action: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """Return ``fn`` wrapped so that each call leaves one audit entry."""
    sig = inspect.signature(fn)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        outcome = "ok"
        try:
            return fn(*args, **kwargs)
        except typer.Exit as e:
            outcome = "ok" if e.exit_code == 0 else f"error: exit {e.exit_code}"
            raise
        except typer.Abort:
            outcome = "cancelled"
            raise
        except BaseException as e:
            outcome = f"error: {e.__class__.__name__}"
            raise
        finally:
            _record(action, sig, args, kwargs, outcome)

    wrapper._audited = True  # type: ignore[attr-defined]
    return wrapper


def _record(action: str, sig: inspect.Signature, args: tuple[Any, ...], kwargs: dict[str, Any],
            outcome: str) -> None:
    try:
        bound = sig.bind_partial(*args, **kwargs).arguments
    except TypeError:
        bound = dict(kwargs)
    home = bound.get("home")
    from mailtrek.orchestrate.home import default_home

    path = Path(home).expanduser() if home else default_home()
    if not path.is_dir():
        return  # the command failed before any home existed: nothing to audit into
    target = next((str(bound[p]) for p in TARGET_PARAMS if bound.get(p)), None)
    user = next((str(bound[p]) for p in USER_PARAMS if bound.get(p)), None)
    if user:
        target = f"{target} user {user}" if target else user
    given = [f"--{k.replace('_', '-')}" for k, v in bound.items()
             if k not in (*TARGET_PARAMS, *USER_PARAMS, "home") and v not in (None, False, [], ())
             and v != sig.parameters[k].default]
    try:
        from mailtrek.orchestrate.audit import cli_actor, record
        from mailtrek.orchestrate.home import open_home

        record(open_home(path), cli_actor(), action, target, " ".join(given) or None, outcome)
    except Exception:
        return
