"""Provider presets: every required provider is there and builds a usable endpoint."""

from __future__ import annotations

import pytest

from mailtrek.errors import UsageError
from mailtrek.orchestrate.endpoints import make_endpoint
from mailtrek.orchestrate.presets import PRESETS, get_preset

REQUIRED = ["gmail", "google-workspace", "yahoo", "aol", "icloud", "outlook", "zoho", "yandex", "gmx",
            "webde", "mailcom", "fastmail", "ionos", "zimbra", "cpanel", "dovecot", "courier"]


@pytest.mark.parametrize("name", REQUIRED)
def test_required_presets_exist_with_limits(name):
    p = get_preset(name)
    assert p.connections_per_account and p.connections_per_account > 0
    assert p.security in ("ssl", "starttls", "none") and 0 < p.port < 65536
    assert p.hint


def test_hosted_presets_fill_host_and_cap_connections():
    ep = make_endpoint("g", host=None, preset="gmail", connections_per_mailbox=50)
    assert (ep.host, ep.port, ep.security) == ("imap.gmail.com", 993, "ssl")
    assert ep.connections_per_mailbox == 15
    assert get_preset("GMAIL").daily_download_mb == 2500


def test_self_hosted_preset_needs_host():
    with pytest.raises(UsageError, match="--host"):
        make_endpoint("d", host=None, preset="dovecot")
    ep = make_endpoint("d", host="mail.example.test", preset="dovecot")
    assert ep.admin_format == "dovecot"


def test_unknown_preset_lists_known():
    with pytest.raises(UsageError) as e:
        get_preset("hotmale")
    assert "gmail" in str(e.value)


def test_defaults_like_exchange():
    ep = make_endpoint("x", host="imap.example.test", security="starttls")
    assert (ep.port, ep.max_concurrent_migrations, ep.max_concurrent_incremental) == (143, 100, 20)


@pytest.mark.parametrize(("kw", "msg"), [({"security": "tls13"}, "--security"), ({"auth": "ntlm"}, "--auth"),
                                        ({"admin_format": "weird"}, "--admin-format"),
                                        ({"max_concurrent_migrations": 0}, "at least 1")])
def test_bad_options_rejected(kw, msg):
    with pytest.raises(UsageError, match=msg):
        make_endpoint("x", host="h.test", **kw)


def test_presets_are_data():
    assert all(p.name == k for k, p in PRESETS.items())


# -- contacts and calendars ---------------------------------------------------------------
def test_dav_presets_name_each_providers_services():
    import asyncio

    import httpx

    from mailtrek.stores.dav import DavStore, parse_dav_address
    from mailtrek.stores.dav.client import DavClient
    from mailtrek.stores.dav.presets import DAV_PRESETS, get_dav_preset

    assert {"google", "icloud", "fastmail", "nextcloud", "zimbra", "sogo"} <= set(DAV_PRESETS)
    assert get_preset("gmail").dav_preset is get_preset("google-workspace").dav_preset
    assert get_preset("icloud").dav_preset.name == "icloud" and get_preset("yahoo").dav_preset is None
    google = get_dav_preset("google")
    cal = google.address("a.b@example.com", "calendar")
    assert (cal.origin, cal.path) == ("https://apidata.googleusercontent.com",
                                      "/caldav/v2/a.b@example.com/user/")
    assert google.address("x@example.com", "contacts").origin == "https://www.googleapis.com"
    assert google.auth == "oauth" and len(google.scopes) == 2
    assert get_dav_preset("sogo").address("u@x.test", "contacts", "mail.x.test").path == "/SOGo/dav/u@x.test/"
    with pytest.raises(UsageError, match="host"):
        get_dav_preset("nextcloud").address("u", "calendar")
    # A dav+https address may name a preset as its host; iCloud's two hosts need one kind.
    store = DavStore(parse_dav_address("dav+https://me@example.com@icloud/"), "pw", kinds=("contacts",))
    assert (store.address.host, store.address.user) == ("contacts.icloud.com", "me@example.com")
    with pytest.raises(UsageError, match="two servers"):
        DavStore(parse_dav_address("dav+https://me@icloud/"), "pw")
    # OAuth presets log in with Bearer tokens, asked for on every request.
    seen = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["Authorization"])
        return httpx.Response(207, content=b"<multistatus xmlns='DAV:'/>")

    async def token() -> str:
        return f"tok{len(seen)}"

    async def go() -> None:
        client = DavClient(cal, "", transport=httpx.MockTransport(answer), token=token)
        for _ in range(2):
            await client.propfind("/", b"", "0")
        await client.close()

    asyncio.run(go())
    assert seen == ["Bearer tok0", "Bearer tok1"]


def test_presets_list_says_where_contacts_and_calendars_are():
    from typer.testing import CliRunner

    from mailtrek.cli.main import app

    out = CliRunner().invoke(app, ["endpoint", "presets"]).output
    line = next(x for x in out.splitlines() if x.startswith("icloud "))
    assert line.endswith("caldav.icloud.com, contacts.icloud.com")
    assert "(your host)/remote.php/dav/" in out and "(OAuth)" in out
