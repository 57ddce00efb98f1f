"""Session fixtures: two real Dovecot servers on loopback, the shared corpus, proxies."""

from __future__ import annotations

import csv
import fcntl
import hashlib
import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mailtrek.devtools import debroot
from mailtrek.devtools.courier import CourierError, CourierInstance, unavailable_reason
from mailtrek.devtools.cyrus import CyrusError, CyrusInstance
from mailtrek.devtools.dovecot import DovecotInstance
from mailtrek.devtools.proxy import Proxy

sys.path.insert(0, str(Path(__file__).parent))  # tests/imap_helpers.py

REPO = Path(__file__).resolve().parents[1]
# MAILTREK_CORPUS names the corpus where the checkout has no shared/ beside it (worktrees).
CORPUS = Path(os.environ.get("MAILTREK_CORPUS") or REPO.parent / "shared" / "corpus")


# Files that take a minute or more, slowest first. They run first, so that under pytest-xdist
# (scripts/test runs two workers, a whole file each) no worker starts one of them last.
SLOW_FILES = ("test_orchestrate_e2e.py", "test_workers_e2e.py", "test_pim_corpus.py",
              "test_batch_members.py", "test_postgres_state.py", "test_m365_corpus.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Move the slow files to the front; the order within each file is kept."""
    rank = {name: i for i, name in enumerate(SLOW_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(SLOW_FILES)))


def _instance(name: str) -> Iterator[DovecotInstance]:
    if shutil.which("dovecot") is None:
        pytest.skip("dovecot is not installed (scripts/test installs it)")
    # A short root under /tmp: Dovecot's unix sockets need short paths (tmp_path is too long).
    root = Path(tempfile.mkdtemp(prefix=f"mt-{name}-", dir="/tmp"))
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


def _debian_server(kind: str) -> None:
    """Skip (with the reason) only when Debian's packages truly cannot be had here."""
    # pytest-xdist workers may get here at once: one unpacks, the others wait and look.
    with open(Path(tempfile.gettempdir()) / "mailtrek-debroot.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            debroot.ensure(kind)
        except debroot.DebrootError as exc:
            pytest.skip(f"{kind} packages unavailable: {exc}")


@pytest.fixture(scope="session")
def cyrus_server() -> Iterator[CyrusInstance]:
    """A private Cyrus IMAP 3.6 (Debian defaults: INBOX. namespace, '.' separator)."""
    _debian_server("cyrus")
    inst = CyrusInstance(Path(tempfile.mkdtemp(prefix="mt-cyrus-", dir="/tmp")))
    try:
        inst.start()
    except CyrusError:
        inst.remove()
        raise
    try:
        yield inst
    finally:
        inst.remove()


@pytest.fixture(scope="session")
def courier_server() -> Iterator[CourierInstance]:
    """A private Courier-IMAP 5 with courier-authdaemon and a userdb."""
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    _debian_server("courier")
    inst = CourierInstance(Path(tempfile.mkdtemp(prefix="mt-courier-", dir="/tmp")))
    try:
        inst.start()
    except CourierError:
        inst.remove()
        raise
    try:
        yield inst
    finally:
        inst.remove()


@pytest.fixture(scope="session")
def corpus_dir() -> Path | None:
    """The shared real-world corpus, or None in a plain clone."""
    return CORPUS if (CORPUS / "MANIFEST.tsv").exists() else None


@pytest.fixture(scope="session")
def corpus_rows(corpus_dir: Path | None) -> Callable[[], Iterator[tuple[str, bytes, str]]]:
    """Return a function yielding (relative name, bytes, sha256) per MANIFEST.tsv row.

    Skips the test when the shared corpus is absent; fails if a file's hash differs.
    """
    if corpus_dir is None:
        pytest.skip("shared corpus not present next to the repository")
    root = corpus_dir

    def rows() -> Iterator[tuple[str, bytes, str]]:
        with (root / "MANIFEST.tsv").open(encoding="utf-8", newline="") as fh:
            for row in csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE):
                raw = (root / row["file"]).read_bytes()
                digest = hashlib.sha256(raw).hexdigest()
                assert digest == row["sha256"], f"corpus file changed: {row['file']}"
                yield row["file"], raw, digest

    return rows


def _user_factory(inst: DovecotInstance, prefix: str) -> Callable[[], tuple[str, str]]:
    def make() -> tuple[str, str]:
        name = f"{prefix}{uuid.uuid4().hex[:10]}"
        password = f"pw-{uuid.uuid4().hex}"
        return inst.add_user(name, password), password

    return make


@pytest.fixture
def new_user() -> Callable[[DovecotInstance], tuple[str, str]]:
    """Return a factory: ``new_user(instance)`` adds a fresh user, returns (login, password)."""
    return lambda inst: _user_factory(inst, "t")()


@pytest.fixture
def src_user(dovecot_src: DovecotInstance) -> tuple[str, str]:
    """A fresh (login, password) on the source server."""
    return _user_factory(dovecot_src, "s")()


@pytest.fixture
def dst_user(dovecot_dst: DovecotInstance) -> tuple[str, str]:
    """A fresh (login, password) on the destination server."""
    return _user_factory(dovecot_dst, "d")()


@pytest.fixture
def proxy() -> Iterator[Callable[..., Proxy]]:
    """Return a factory ``proxy(host, port, **faults)`` of started proxies, stopped after."""
    started: list[Proxy] = []

    def make(host: str, port: int, **kwargs: object) -> Proxy:
        p = Proxy(host, port, **kwargs).start()  # type: ignore[arg-type]
        started.append(p)
        return p

    yield make
    for p in started:
        p.stop()


# -- CalDAV/CardDAV: a private Radicale (issue 17) -----------------------------------------
PIM_CORPUS = REPO.parent / "shared" / "pim-corpus"


@pytest.fixture(scope="session")
def radicale() -> Iterator[object]:
    """A private Radicale (CalDAV + CardDAV) over TLS on a high loopback port."""
    pytest.importorskip("radicale", reason="radicale is a test dependency (pip install -e .[test])")
    from mailtrek.devtools.radicale import RadicaleInstance

    inst = RadicaleInstance(Path(tempfile.mkdtemp(prefix="mt-dav-", dir="/tmp")), tls=True)
    inst.start()
    try:
        yield inst
    finally:
        inst.remove()


@pytest.fixture
def dav_user(radicale: object) -> Callable[[], tuple[str, str]]:
    """Return a factory: ``dav_user()`` adds a fresh Radicale user, returns (name, password)."""

    def make() -> tuple[str, str]:
        name, password = f"u{uuid.uuid4().hex[:10]}", f"pw-{uuid.uuid4().hex}"
        return radicale.add_user(name, password), password  # type: ignore[attr-defined]

    return make


@pytest.fixture(scope="session")
def pim_corpus_dir() -> Path:
    """The shared PIM corpus's files folder; skips when the shared folder is absent."""
    # A worktree is not next to shared/: MAILTREK_PIM_CORPUS may point at the folder.
    files = Path(os.environ.get("MAILTREK_PIM_CORPUS") or PIM_CORPUS) / "files"
    if not files.is_dir():
        pytest.skip("shared PIM corpus not present next to the repository")
    return files
