"""Errors say "not found" and "conflict" in their type: exit code and HTTP status side by side,
the same for the CLI and the API, never guessed from message text."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mailtrek.errors import (
    AuthenticationError,
    ConflictError,
    MailtrekError,
    NotFoundError,
    StateError,
    UsageError,
)
from mailtrek.orchestrate.batches import get_batch
from mailtrek.orchestrate.endpoints import Endpoint, add_endpoint, get_endpoint, get_tenant
from mailtrek.orchestrate.home import open_home
from mailtrek.web.app import error_status


def test_each_kind_has_its_status_beside_its_exit_code() -> None:
    cases = [(NotFoundError("no batch named 'x'"), 2, 404),
             (ConflictError("batch 'x' exists"), 2, 409),
             (UsageError("bad size"), 2, 400),
             (AuthenticationError("refused"), 3, 502),
             (StateError("locked"), 7, 500),
             (MailtrekError("exists but generic"), 10, 500)]  # the text no longer decides
    for err, code, status in cases:
        assert (err.exit_code, error_status(err)) == (code, status), err


def test_orchestrate_raises_the_typed_errors(tmp_path) -> None:
    home = open_home(tmp_path / "home")
    with pytest.raises(NotFoundError):
        get_endpoint(home, "nope")
    with pytest.raises(NotFoundError):
        get_tenant(home, "nope")
    with pytest.raises(NotFoundError):
        get_batch(home, "nope")
    add_endpoint(home, Endpoint(name="src", host="127.0.0.1", port=993))
    with pytest.raises(ConflictError, match="exists"):
        add_endpoint(home, Endpoint(name="src", host="127.0.0.1", port=993))


def test_cli_exit_code_for_an_unknown_name(tmp_path) -> None:
    r = subprocess.run([sys.executable, "-m", "mailtrek", "batch", "show", "nope",
                        "--home", str(tmp_path / "home")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "no batch named 'nope'" in r.stderr and "Traceback" not in r.stderr
