"""The dashboard's ETA before a user's own speed is known rests on the route's earlier runs."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import update

import mailtrek.state.web  # noqa: F401  (web tables before open_home)
from mailtrek.orchestrate.batches import create_batch, start_batch
from mailtrek.orchestrate.csvfile import parse_users_csv
from mailtrek.orchestrate.endpoints import add_endpoint, make_endpoint
from mailtrek.orchestrate.home import open_home
from mailtrek.orchestrate.rates import record_run, route_key
from mailtrek.state.orchestration import batch_users
from mailtrek.web.live import SpeedMeter, batch_view


def _home(tmp_path: Path, status: str) -> object:
    h = open_home(tmp_path / "home")
    add_endpoint(h, make_endpoint("src", host="imap.example.org", port=993, security="ssl"))
    add_endpoint(h, make_endpoint("dst", host="mail.example.net", port=993, security="ssl"))
    create_batch(h, "b", endpoint="src", dest_endpoint="dst",
                 users=parse_users_csv(b"EmailAddress,UserName,Password\nann@example.net,ann,pw\n"))
    start_batch(h, "b")
    with h.engine.begin() as c:
        c.execute(update(batch_users).values(status=status, items_total=1000, items_synced=100))
    return h


def test_eta_from_the_route_until_the_speed_is_measured(tmp_path: Path) -> None:
    h = _home(tmp_path, "Syncing")
    user = batch_view(h, "b", SpeedMeter())["users"][0]
    assert user["eta_seconds"] is None and user["eta_basis"] is None  # never measured
    assert record_run(h.engine, route_key("imap.example.org", "mail.example.net"), 600, 6 << 20, 60.0)
    user = batch_view(h, "b", SpeedMeter())["users"][0]
    assert user["eta_seconds"] == 90  # 900 left at 10 messages/s
    assert user["eta_basis"] == "route: 1 earlier run, 10.0 messages/s"


def test_no_eta_for_a_user_that_is_not_moving(tmp_path: Path) -> None:
    h = _home(tmp_path, "Synced")
    record_run(h.engine, route_key("imap.example.org", "mail.example.net"), 600, 6 << 20, 60.0)
    user = batch_view(h, "b", SpeedMeter())["users"][0]
    assert user["eta_seconds"] is None


def test_the_page_and_the_api_say_what_the_eta_rests_on(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from mailtrek.web.app import create_app
    from mailtrek.web.auth import set_admin_password

    h = _home(tmp_path, "Syncing")
    record_run(h.engine, route_key("imap.example.org", "mail.example.net"), 600, 6 << 20, 60.0)
    set_admin_password(h, "a long admin password")
    with TestClient(create_app(h)) as c:
        r = c.post("/api/login", json={"password": "a long admin password"})
        assert r.status_code == 200, r.text
        user = c.get("/api/batches/b").json()["users"][0]
        assert (user["eta_seconds"], user["eta_basis"]) == (90, "route: 1 earlier run, 10.0 messages/s")
        page = c.get("/batches/b/live")
        assert page.status_code == 200, page.text
        assert 'title="route: 1 earlier run, 10.0 messages/s"' in page.text and "(route)" in page.text
