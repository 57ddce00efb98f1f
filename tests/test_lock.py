"""requirements.lock: fresh for pyproject.toml, pins inside its ranges, stale locks refused."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
CHECK = ROOT / "scripts" / "lock_fingerprint.py"


def _pins() -> dict[str, str]:
    text = (ROOT / "requirements.lock").read_text(encoding="utf-8")
    return {
        _canon(m.group(1)): m.group(2)
        for m in re.finditer(r"^([A-Za-z0-9_.\-]+)==([^\s;\\]+)", text, re.M)
    }


def _canon(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_committed_lock_matches_pyproject() -> None:
    run = subprocess.run([sys.executable, str(CHECK), "--check"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


def test_every_requirement_is_pinned_inside_its_range() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    pins = _pins()
    for spec in project["dependencies"] + project["optional-dependencies"]["test"]:
        req = Requirement(spec)
        if req.marker is not None and not req.marker.evaluate():
            continue
        pinned = pins.get(_canon(req.name))
        assert pinned is not None, f"{req.name} is not in requirements.lock"
        assert req.specifier.contains(pinned, prereleases=True), f"{req.name}=={pinned} vs {spec}"


def test_a_changed_requirement_makes_the_lock_stale(tmp_path: Path) -> None:
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    edited = pyproject.replace('"httpx>=0.27,<1"', '"httpx>=0.28,<1"')
    assert edited != pyproject
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "lock_fingerprint.py").write_bytes(CHECK.read_bytes())
    (tmp_path / "requirements.lock").write_bytes((ROOT / "requirements.lock").read_bytes())
    (tmp_path / "pyproject.toml").write_text(pyproject, encoding="utf-8")
    script = tmp_path / "scripts" / "lock_fingerprint.py"
    same = subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True)
    assert same.returncode == 0, same.stderr
    (tmp_path / "pyproject.toml").write_text(edited, encoding="utf-8")
    stale = subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True)
    assert stale.returncode == 1
    assert "stale" in stale.stderr and "scripts/lock" in stale.stderr
