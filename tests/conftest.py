"""Session fixtures: two real Dovecot servers on loopback, the shared corpus, proxies."""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailtrek.devtools.dovecot import DovecotInstance

sys.path.insert(0, str(Path(__file__).parent))  # tests/imap_helpers.py

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "corpus"


def _instance(name: str) -> Iterator[DovecotInstance]:
    if shutil.which("dovecot") is None:
        pytest.skip("dovecot is not installed (scripts/test installs it)")
    root = Path(tempfile.mkdtemp(prefix=f"mt-{name}-"))
    inst = DovecotInstance(root, name=name, layout="index")
    inst.start()
    try:
        yield inst
    finally:
        inst.remove()


@pytest.fixture(scope="session")
def dovecot_src() -> Iterator[DovecotInstance]:
    """A private Dovecot playing the source server."""
    yield from _instance("src")


@pytest.fixture(scope="session")
def dovecot_dst() -> Iterator[DovecotInstance]:
    """A private Dovecot playing the destination server."""
    yield from _instance("dst")


@pytest.fixture(scope="session")
def corpus_dir() -> Path | None:
    """The shared real-world corpus, or None in a plain clone."""
    return CORPUS if (CORPUS / "MANIFEST.tsv").exists() else None
