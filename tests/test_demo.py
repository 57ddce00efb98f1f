"""The README's main job: ``mailtrek demo`` runs end to end on embedded defaults."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(shutil.which("dovecot") is None, reason="dovecot not installed")


@pytest.mark.parametrize("target", ["m365", "imap"])
def test_demo_migrates_and_verifies(target: str, tmp_path: Path) -> None:
    work = tmp_path / "demo"
    r = subprocess.run([sys.executable, "-m", "mailtrek", "demo", "--fast", "--to", target,
                        "--workdir", str(work)], capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "every message is on the destination, verified." in r.stdout
    assert "copied 60 messages" in r.stdout and "copied 0 messages" in r.stdout  # re-run
    assert "demo-alice-pw" not in r.stdout + r.stderr
    if target == "m365":
        assert "Inbox/Projects/Alpha" in r.stdout and "Sent Items" in r.stdout
