"""The store registry: every address scheme and every stored endpoint or tenant becomes a
spec, equal specs for the same server, and stores built nowhere else."""

from __future__ import annotations

import ast
import asyncio
from dataclasses import FrozenInstanceError
from pathlib import Path

import pytest

from mailtrek.errors import UsageError
from mailtrek.orchestrate.batches import Batch, BatchOptions
from mailtrek.orchestrate.endpoints import Endpoint, Tenant
from mailtrek.orchestrate.home import open_home
from mailtrek.orchestrate.mover import MoveJob, imap_destination_spec, source_spec
from mailtrek.orchestrate.specs import endpoint_spec, tenant_config
from mailtrek.orchestrate.states import BatchStatus
from mailtrek.stores import registry
from mailtrek.stores.dav.store import DavStore
from mailtrek.stores.imap.store import ImapStore
from mailtrek.stores.m365 import GraphStore, TenantConfig
from mailtrek.stores.m365.pim_store import GraphPimStore
from mailtrek.stores.memory import MemoryStore
from mailtrek.stores.registry import open_store, register
from mailtrek.stores.spec import DavSpec, GraphPimSpec, GraphSpec, ImapSpec, MemorySpec, StoreSpec
from mailtrek.stores.url import OpenOptions, address_spec, pim_spec

SRC = Path(__file__).resolve().parent.parent / "src" / "mailtrek"
TENANT = TenantConfig(tenant_id="contoso-id", client_id="app-id", client_secret="Tenant-Secret-9")


@pytest.mark.parametrize("address,kind,where", [
    ("imaps://alice@mail.example.test", ImapSpec, ("mail.example.test", 993, "ssl")),
    ("imap+starttls://alice@mail.example.test", ImapSpec, ("mail.example.test", 143, "starttls")),
    ("imap://alice@mail.example.test:1143", ImapSpec, ("mail.example.test", 1143, "none")),
    ("m365+imap://alice@contoso.test", ImapSpec, ("outlook.office365.com", 993, "ssl")),
    ("m365://alice@contoso.test", GraphSpec, None),
    ("dav+https://alice@dav.example.test/dav/", DavSpec, ("dav.example.test", 443, "https")),
    ("dav+http://alice@dav.example.test:8080", DavSpec, ("dav.example.test", 8080, "http")),
    ("memory://scratch", MemorySpec, None),
])
def test_every_scheme_maps_to_its_spec_and_store(address: str, kind: type, where: tuple | None) -> None:
    spec = address_spec(address, OpenOptions(password="Pw-123", tenant=TENANT))
    assert type(spec) is kind
    if isinstance(spec, ImapSpec):
        assert (spec.host, spec.port, spec.security) == where
        assert spec.exchange == address.startswith("m365+imap")
        assert spec.mechanism == ("xoauth2" if spec.exchange else "login")
    elif isinstance(spec, DavSpec):
        assert (spec.address.host, spec.address.port, spec.address.scheme) == where
    elif isinstance(spec, GraphSpec):
        assert spec.mailbox == "alice@contoso.test" and spec.tenant is TENANT
    store = open_store(spec)
    assert isinstance(store, {ImapSpec: ImapStore, GraphSpec: GraphStore, DavSpec: DavStore,
                              MemorySpec: MemoryStore}[kind])
    if isinstance(store, GraphStore):
        asyncio.run(store.close())


def test_contacts_and_calendars_open_through_the_registry() -> None:
    opts = OpenOptions(password="Pw-123", tenant=TENANT, label="dest")
    dav = pim_spec("dav+https://alice@dav.example.test/", opts)
    assert dav == address_spec("dav+https://alice@dav.example.test/", opts)
    assert isinstance(registry.open_pim_store(dav), DavStore)
    graph = pim_spec("m365://alice@contoso.test", opts)
    assert graph == GraphPimSpec(mailbox="alice@contoso.test", tenant=TENANT)
    store = registry.open_pim_store(graph)
    assert isinstance(store, GraphPimStore)
    asyncio.run(store.close())
    with pytest.raises(UsageError, match=r"not m365\+imap"):
        pim_spec("m365+imap://alice@contoso.test", opts)
    with pytest.raises(UsageError, match="contacts and calendars go to"):
        pim_spec("imaps://alice@mail.example.test", opts)


def test_unknown_scheme_and_kind_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="unknown address scheme 'ftp'"):
        address_spec("ftp://alice@files.example.test", OpenOptions(password="x"))
    with pytest.raises(UsageError, match="names no mailbox"):
        address_spec("memory://", OpenOptions())

    class PigeonSpec(StoreSpec[object]):
        kind = "pigeon"

    with pytest.raises(UsageError, match="no store backend for 'pigeon'") as e:
        open_store(PigeonSpec())
    assert "imap" in (e.value.hint or "")
    with pytest.raises(TypeError):
        open_store("imaps://alice@mail.example.test")  # type: ignore[arg-type]


def test_a_backend_is_one_registry_entry() -> None:
    class EchoSpec(StoreSpec[str]):
        kind = "echo-test"

    register("echo-test", lambda spec: f"store for {spec.label}")
    try:
        assert open_store(EchoSpec(label="x")) == "store for x"
    finally:
        registry._openers.pop("echo-test")
    for kind in registry.BACKENDS:  # each listed module registers the kind it is listed for
        assert registry.opener_for(kind)


def test_memory_addresses_name_one_mailbox_per_process() -> None:
    a = open_store(MemorySpec(name="registry-test"))
    assert a is open_store(address_spec("memory://registry-test", OpenOptions()))
    assert a is not open_store(MemorySpec(name="registry-other"))


def test_specs_are_frozen_and_keep_secrets_out_of_repr() -> None:
    async def token() -> str:
        return "Token-Secret-7"

    imap = ImapSpec(host="h", port=993, user="alice", password="Pw-Secret-1", token=token)
    graph = GraphSpec(mailbox="alice@contoso.test", tenant=TENANT)
    dav = address_spec("dav+https://alice@dav.example.test", OpenOptions(password="Dav-Secret-3"))
    text = repr(imap) + repr(graph) + repr(dav) + repr(GraphPimSpec(mailbox="a@b", tenant=TENANT))
    for secret in ("Pw-Secret-1", "Token-Secret-7", "token", "Tenant-Secret-9", "Dav-Secret-3"):
        assert secret not in text
    with pytest.raises(FrozenInstanceError):
        imap.host = "elsewhere"  # type: ignore[misc]


def _job(ep: Endpoint, dest: Endpoint | None = None, tenant: Tenant | None = None) -> MoveJob:
    batch = Batch(name="b", status=BatchStatus.CREATED, source_endpoint=ep.name,
                  tenant=tenant.name if tenant else None, dest_endpoint=dest.name if dest else None,
                  options=BatchOptions(), notify=[], incremental_hours=24.0)
    return MoveJob(batch=batch, email="alice@example.test", username="alice", password="Pw-123",
                   user_root=None, phase="initial", source=ep, tenant=tenant, dest_endpoint=dest)


def test_endpoint_and_address_give_equal_specs_for_the_same_server(tmp_path) -> None:
    from mailtrek.cli.stored_refs import endpoint_address

    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    for security, port in (("ssl", 993), ("starttls", 1143), ("none", 143)):
        ep = Endpoint(name="old", host="mail.example.test", port=port, security=security,
                      ca_file=str(ca), connections_per_mailbox=3)
        opts = OpenOptions(password="Pw-123", ca_file=str(ca), connections=3)
        by_address = address_spec(endpoint_address(ep, "alice"), opts)
        assert endpoint_spec(ep, "alice", password="Pw-123") == by_address
        assert source_spec(_job(ep)) == by_address  # what a batch opens
        assert endpoint_spec(ep, "alice", password="other") != by_address
    # an IMAP destination with an admin: SASL PLAIN as the admin for the user
    home = open_home(tmp_path / "home")
    dest = Endpoint(name="new", host="new.example.test", port=993, admin_user="admin",
                    admin_password_enc=home.box.encrypt("Admin-Pw"))
    admin = address_spec("imaps://admin@new.example.test?authzid=alice@example.test",
                         OpenOptions(password="Admin-Pw", readonly=False))
    assert imap_destination_spec(home, _job(ep, dest)) == admin
    assert admin.mechanism == "plain" and not admin.readonly
    # a stored tenant and the MAILTREK_M365_* variables: the same Graph mailbox
    t = Tenant(name="t", tenant_id="contoso-id", client_id="app-id",
               client_secret_enc=home.box.encrypt("Tenant-Secret-9"))
    stored = address_spec("m365://alice@contoso.test", OpenOptions(tenant=tenant_config(home, t)))
    env = {"MAILTREK_M365_TENANT_ID": "contoso-id", "MAILTREK_M365_CLIENT_ID": "app-id",
           "MAILTREK_M365_CLIENT_SECRET": "Tenant-Secret-9"}
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        from_env = address_spec("m365://alice@contoso.test", OpenOptions())
    assert stored == from_env


def _calls(tree: ast.AST) -> set[str]:
    names = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.Call):
            f = n.func
            names.add(f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else "")
    return names


# Built only by their backend's own package (its registry entry), with no exception.
BUILDERS = {"ImapStore", "ImapSettings", "GraphStore", "open_graph_store", "DavStore",
            "GraphPimStore", "MemoryStore", "GmailSource", "gmail_view"}
ALLOWED: dict[str, set[str]] = {}


def test_the_registry_is_the_only_place_stores_are_built() -> None:
    found = {}
    for f in SRC.rglob("*.py"):
        rel = f.relative_to(SRC)
        if rel.parts[0] in ("stores", "sim"):  # backends (and the simulator: its own program)
            continue
        built = _calls(ast.parse(f.read_text(encoding="utf-8"))) & BUILDERS
        if built - ALLOWED.get(str(rel), set()):
            found[str(rel)] = sorted(built)
    assert found == {}
    # nor through a backend's own factory functions, imported around the registry
    factories = {"open_graph_store", "open_pim_store", "gmail_view"}
    around = set()
    for f in SRC.rglob("*.py"):
        rel = f.relative_to(SRC)
        if rel.parts[0] in ("stores", "sim"):
            continue
        for n in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if (isinstance(n, ast.ImportFrom) and (n.module or "").startswith("mailtrek.stores.")
                    and n.module != "mailtrek.stores.registry"):
                around |= {f"{rel}: {a.name}" for a in n.names if a.name in factories}
    assert around == set()
    # the Gmail view: applied by the registry alone
    users = {str(f.relative_to(SRC)) for f in (SRC / "stores").rglob("*.py")
             if "gmail_view" in _calls(ast.parse(f.read_text(encoding="utf-8")))}
    assert users == {"stores/registry.py"}
