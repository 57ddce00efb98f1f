"""The private Radicale of the test suite: users, TLS, collections and loading files."""

from __future__ import annotations

import httpx
import pytest

from mailtrek.devtools.dav_load import Loader, split_objects

EVENT = (
    "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//t//EN\r\n"
    "BEGIN:VEVENT\r\nUID:{uid}\r\nDTSTAMP:20240101T000000Z\r\n"
    "DTSTART:20240301T090000Z\r\nDTEND:20240301T100000Z\r\nSUMMARY:{uid}\r\n"
    "END:VEVENT\r\nEND:VCALENDAR\r\n"
)


def test_users_tls_and_wrong_password(radicale, dav_user) -> None:
    user, password = dav_user()
    ok = httpx.request("PROPFIND", f"{radicale.base_url}/{user}/", auth=(user, password),
                       headers={"Depth": "0"}, verify=radicale.ssl_context())
    assert ok.status_code == 207
    bad = httpx.request("PROPFIND", f"{radicale.base_url}/{user}/", auth=(user, "nope"),
                        verify=radicale.ssl_context())
    assert bad.status_code == 401
    with pytest.raises(httpx.ConnectError):  # verification stays on: no CA, no connection
        httpx.get(radicale.base_url, verify=True)


def test_loader_splits_multi_object_files_and_reports_refusals(radicale, dav_user, tmp_path) -> None:
    user, password = dav_user()
    two = tmp_path / "two.ics"
    two.write_text(EVENT.format(uid="a").replace("END:VCALENDAR\r\n", "")
                   + EVENT.format(uid="b").split("PRODID:-//t//t//EN\r\n", 1)[1])
    broken = tmp_path / "broken.ics"
    broken.write_text("BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nDTSTART:INVALID\r\nEND:VCALENDAR\r\n")
    parts = split_objects(two.read_bytes(), "calendar")
    assert parts is not None and sorted(uid for uid, _ in parts) == ["a", "b"]
    with Loader(radicale.base_url, user, password, verify=radicale.ssl_context()) as load:
        cal = load.make_collection("Büro", "calendar")
        result = load.load(cal, [two, broken], "calendar")
    assert sorted(i.uid for i in result.stored) == ["a", "b"]
    assert result.refused == [("broken.ics", "HTTP 400")]


def test_loader_overflow_keeps_duplicate_uids(radicale, dav_user, tmp_path) -> None:
    user, password = dav_user()
    files = []
    for name in ("one", "two"):
        f = tmp_path / f"{name}.ics"
        f.write_text(EVENT.format(uid="same"))
        files.append(f)
    with Loader(radicale.base_url, user, password, verify=radicale.ssl_context()) as load:
        cal = load.make_collection("Dup", "calendar")
        result = load.load(cal, files, "calendar", overflow=True)
    assert [i.href.split("/")[2] for i in result.stored] == ["Dup", "Dup-2"]
    assert result.refused == []
