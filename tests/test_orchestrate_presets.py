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
