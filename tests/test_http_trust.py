"""Both HTTP stores open their client through ``stores/http.py`` and verify TLS: the
server's own CA is trusted, a stranger CA and the default trust are refused
(CertificateError), for the DAV client against Radicale and the Graph client against
the simulator."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailtrek.errors import AuthenticationError, CertificateError
from mailtrek.sim import SimConfig, Simulator, UserSpec
from mailtrek.sim.certs import write_tls_files
from mailtrek.stores.dav import parse_dav_address
from mailtrek.stores.dav.client import DavClient
from mailtrek.stores.m365.api import GraphClient
from pim_graph_helpers import tenant

UPN = "trust@contoso.test"


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator(SimConfig(users=[UserSpec(UPN)])) as running:
        yield running


@pytest.fixture
def stranger_ca(tmp_path: Path) -> str:
    return str(write_tls_files(tmp_path / "stranger").ca_file)


async def test_dav_client_trusts_only_its_ca(radicale, stranger_ca: str) -> None:  # type: ignore[no-untyped-def]
    address = parse_dav_address(radicale.dav_url("nobody"))
    for ca_file in (stranger_ca, None):
        client = DavClient(address, "wrong", ca_file=ca_file)
        try:
            with pytest.raises(CertificateError):
                await client.request("PROPFIND", "/", headers={"Depth": "0"})
        finally:
            await client.close()
    client = DavClient(address, "wrong", ca_file=str(radicale.ca_file))
    try:  # TLS passes; the made-up login is what is refused
        with pytest.raises(AuthenticationError):
            await client.request("PROPFIND", "/", headers={"Depth": "0"})
    finally:
        await client.close()


async def test_graph_client_trusts_only_its_ca(sim: Simulator, stranger_ca: str) -> None:
    for ca_file in (Path(stranger_ca), None):
        client = GraphClient(dataclasses.replace(tenant(sim), ca_file=ca_file))
        try:
            with pytest.raises(CertificateError):
                await client.request(UPN, "GET", f"users/{UPN}", authenticated=False)
        finally:
            await client.close()
    client = GraphClient(tenant(sim))
    try:
        got = await client.get_json(UPN, f"users/{UPN}")
        assert got["userPrincipalName"] == UPN
    finally:
        await client.close()
