"""DAV discovery through DNS (RFC 6764 §3): SRV and TXT path= before /.well-known.

A local DNS server (dnslib) answers for ``*.test`` names; the SRV targets point at the
suite's Radicale on loopback, so a store given only a domain finds the real server.
"""

from __future__ import annotations

import asyncio

import pytest
from dnslib import SRV, TXT

from dns_helpers import Zone, start_dns
from mailtrek.devtools.dav_load import Loader
from mailtrek.stores.dav import DavStore, parse_dav_address
from mailtrek.stores.dav.discovery import locate
from mailtrek.stores.dav.srv import DnsSettings, lookup_sync

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def dns():
    zone = Zone()
    server, ns = start_dns(zone)
    yield zone, DnsSettings(nameserver=ns, timeout=2.0)
    server.stop()


def _connect(store: DavStore) -> list[str]:
    async def go() -> list[str]:
        try:
            await store.connect()
            return [c.name for c in await store.collections(("calendar", "contacts"))]
        finally:
            await store.close()
    return asyncio.run(go())


def test_srv_names_the_server_and_the_store_finds_the_account(dns, radicale, dav_user):
    zone, settings = dns
    zone.set("_caldavs._tcp.srv1.test", "SRV", [SRV(0, 1, radicale.port, "localhost.")])
    user, password = dav_user()

    with Loader(radicale.base_url, user, password, verify=radicale.ssl_context()) as load:
        load.make_collection("Found by SRV", "calendar")
    store = DavStore(parse_dav_address(f"dav+https://{user}@srv1.test/"), password,
                     ca_file=str(radicale.ca_file), dns=settings)
    assert _connect(store) == ["Found by SRV"]
    assert (store.address.host, store.address.port) == ("localhost", radicale.port)
    assert store.notes[0] == f"SRV _caldavs._tcp.srv1.test: localhost:{radicale.port}"


def test_txt_path_is_the_context_path(dns, radicale, dav_user):
    zone, settings = dns
    user, password = dav_user()
    zone.set("_carddavs._tcp.srv2.test", "SRV", [SRV(0, 1, radicale.port, "localhost.")])
    zone.set("_carddavs._tcp.srv2.test", "TXT", [TXT(f"path=/{user}/")])
    address, _ = asyncio.run(locate(parse_dav_address(f"dav+https://{user}@srv2.test"),
                                    ("contacts",), settings))
    assert (address.host, address.port, address.path) == ("localhost", radicale.port, f"/{user}/")
    store = DavStore(parse_dav_address(f"dav+https://{user}@srv2.test"), password,
                     ca_file=str(radicale.ca_file), dns=settings, kinds=("contacts",))
    _connect(store)
    assert store.homes is not None and store.homes.principal == f"/{user}/"


def test_plain_services_only_when_allowed_and_always_below_tls(dns):
    zone, settings = dns
    zone.set("_caldav._tcp.srv3.test", "SRV", [SRV(0, 1, 8080, "plain.srv3.test.")])
    found, notes = lookup_sync("srv3.test", ("calendar",), allow_plain=False, settings=settings)
    assert found == [] and notes == ["SRV _caldavs._tcp.srv3.test: nothing "
                                     "(no SRV record for _caldavs._tcp.srv3.test)"]
    zone.set("_caldavs._tcp.srv3.test", "SRV", [SRV(5, 1, 8443, "b.srv3.test."),
                                                SRV(1, 1, 443, "a.srv3.test.")])
    found, _ = lookup_sync("srv3.test", ("calendar",), allow_plain=True, settings=settings)
    assert [(t.scheme, t.host, t.port) for t in found] == [
        ("https", "a.srv3.test", 443), ("https", "b.srv3.test", 8443), ("http", "plain.srv3.test", 8080)]


def test_no_srv_or_a_given_path_keeps_the_address(dns):
    zone, settings = dns
    zone.set("_caldavs._tcp.srv4.test", "SRV", [SRV(0, 0, 0, ".")])  # "no such service"
    given = parse_dav_address("dav+https://u@srv4.test/")
    address, notes = asyncio.run(locate(given, ("calendar",), settings))
    assert address == given and "no such service" in notes[0]
    zone.set("_caldavs._tcp.srv5.test", "SRV", [SRV(0, 1, 443, "elsewhere.test.")])
    for text in ("dav+https://u@srv5.test/dav/", "dav+https://u@srv5.test:8443/"):
        kept = parse_dav_address(text)
        assert asyncio.run(locate(kept, ("calendar",), settings)) == (kept, [])
