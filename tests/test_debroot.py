"""The private root of Debian server packages: idempotent, complete, loadable."""

from __future__ import annotations

import time

import pytest

from mailtrek.devtools import debroot


@pytest.mark.parametrize("kind", ["cyrus", "courier"])
def test_unpacked_once_and_every_library_found(kind: str) -> None:
    try:
        root = debroot.ensure(kind)
    except debroot.DebrootError as exc:
        pytest.skip(f"{kind} packages unavailable: {exc}")
    t = time.monotonic()
    assert debroot.ensure(kind) == root  # a second call only looks
    assert time.monotonic() - t < 1.0
    assert all((root / p).exists() for p in debroot.PROBES[kind])
    assert debroot.missing_libraries(kind) == []


def test_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown server kind"):
        debroot.ensure("exchange")


def test_root_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("MAILTREK_SERVERS_ROOT", str(tmp_path))
    assert debroot.servers_root() == tmp_path
    assert debroot.library_path().startswith(str(tmp_path / "root"))
