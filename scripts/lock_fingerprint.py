"""Fingerprint of pyproject.toml's requirements, and the check that requirements.lock matches it.

`requirements.lock` (made by `scripts/lock`) starts with a line
`# pyproject-requirements-sha256: <hex>`; the hex is this script's fingerprint of every
requirement in `[project].dependencies` and `[project.optional-dependencies]`. When someone edits
those lists without running `scripts/lock`, the fingerprints differ and `--check` fails, so CI
never installs from a stale lock.

Usage: `python scripts/lock_fingerprint.py` prints the fingerprint;
`python scripts/lock_fingerprint.py --check [LOCK]` exits 1 with advice when the lock is stale.
"""

from __future__ import annotations

import hashlib
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MARKER = "# pyproject-requirements-sha256: "


def fingerprint(pyproject: Path = ROOT / "pyproject.toml") -> str:
    """Return a digest of the requirement lists, insensitive to order and spacing."""
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    lines = [f"python {project.get('requires-python', '')}"]
    lines += [f"dep {_norm(r)}" for r in project.get("dependencies", [])]
    for extra, reqs in sorted(project.get("optional-dependencies", {}).items()):
        lines += [f"{extra} {_norm(r)}" for r in reqs]
    return hashlib.sha256("\n".join(sorted(lines)).encode()).hexdigest()


def recorded(lock: Path) -> str | None:
    """Return the fingerprint a lock file was made for, or None when it has none."""
    for line in lock.read_text(encoding="utf-8").splitlines():
        if line.startswith(MARKER):
            return line[len(MARKER) :].strip()
    return None


def _norm(requirement: str) -> str:
    return "".join(requirement.split()).lower()


def main(argv: list[str]) -> int:
    if argv[:1] != ["--check"]:
        print(fingerprint())
        return 0
    lock = Path(argv[1]) if len(argv) > 1 else ROOT / "requirements.lock"
    if not lock.exists():
        print(f"{lock} is missing: run scripts/lock", file=sys.stderr)
        return 1
    if recorded(lock) != fingerprint():
        print(
            f"{lock.name} is stale: pyproject.toml's requirements changed since it was made; "
            "run scripts/lock and commit both files",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
