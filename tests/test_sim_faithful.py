"""The simulator answers as Microsoft's published pages say Graph does.

Each test names the page whose behaviour it checks; the simulator modules cite the same.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from mailtrek.sim import Limits, SimConfig, Simulator
from mailtrek.sim.testing import fetch_token, graph_client, tls_context

ALICE = "alice@contoso.test"
NON_DRAFT = [{"id": "Integer 0x0E07", "value": "1"}]
MISSING = "AAMk" + "A" * 60  # well-formed, names no item


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator(SimConfig()) as running:
        yield running


@pytest.fixture()
def graph(sim: Simulator) -> Iterator[httpx.Client]:
    with graph_client(sim) as client:
        yield client


def _item(graph: httpx.Client, subject: str = "s") -> dict:
    response = graph.post(f"/users/{ALICE}/mailFolders/inbox/messages", json={
        "subject": subject, "singleValueExtendedProperties": NON_DRAFT})
    assert response.status_code == 201
    return response.json()


@pytest.mark.parametrize("fractional", [False, True])
def test_429_body_and_retry_after(fractional: bool) -> None:
    """learn.microsoft.com/graph/throttling, "Sample response"."""
    config = SimConfig(limits=Limits(requests_per_window=1), fractional_retry_after=fractional)
    with Simulator(config) as sim, graph_client(sim) as graph:
        assert graph.get(f"/users/{ALICE}/mailFolders/inbox").status_code == 200
        refused = graph.get(f"/users/{ALICE}/mailFolders/inbox",
                            headers={"client-request-id": "c-1"})
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert error["code"] == "TooManyRequests"
    assert "MailboxRequestRate" in error["message"]
    inner = error["innerError"]
    assert inner["code"] == "429" and inner["status"] == "429"
    assert inner["client-request-id"] == "c-1" and inner["request-id"] and inner["date"]
    value = refused.headers["Retry-After"]
    if fractional:
        _whole, dot, decimals = value.partition(".")
        assert dot and len(decimals) == 3 and 600 <= float(value) < 601
    else:
        assert value == "600"


def test_malformed_ids_are_400_and_missing_ones_404(graph: httpx.Client) -> None:
    """Graph tells 'Id is malformed.' (ErrorInvalidIdMalformed) from ErrorItemNotFound."""
    for path in (f"/users/{ALICE}/messages/not-an-id", f"/users/{ALICE}/mailFolders/bogus",
                 f"/users/{ALICE}/messages/x%20y/attachments"):
        response = graph.get(path)
        assert response.status_code == 400, path
        assert response.json()["error"] == {**response.json()["error"],
                                            "code": "ErrorInvalidIdMalformed",
                                            "message": "Id is malformed."}
    assert graph.get(f"/users/{ALICE}/messages/{MISSING}").json()["error"]["code"] == "ErrorItemNotFound"
    item = _item(graph)
    bad = graph.get(f"/users/{ALICE}/messages/{item['id']}/attachments/nope")
    assert bad.status_code == 400
    # Well-known names are not ids and stay valid in any case.
    assert graph.get(f"/users/{ALICE}/mailFolders/SentItems").status_code == 200


def test_etag_changes_on_patch_and_stale_if_match_is_412(graph: httpx.Client) -> None:
    """message-update: If-Match is compared with the item's etag (change key)."""
    item = _item(graph)
    url = f"/users/{ALICE}/messages/{item['id']}"
    first = item["@odata.etag"]
    assert graph.get(url).json()["@odata.etag"] == first
    patched = graph.patch(url, json={"isRead": True}, headers={"If-Match": first})
    assert patched.status_code == 200
    second = patched.json()["@odata.etag"]
    assert second != first and patched.json()["changeKey"] in second
    stale = graph.patch(url, json={"isRead": False}, headers={"If-Match": first})
    assert stale.status_code == 412
    assert stale.json()["error"]["code"] == "ErrorIrresolvableConflict"
    assert graph.get(url).json()["isRead"] is True
    assert graph.patch(url, json={"isRead": False}, headers={"If-Match": "*"}).status_code == 200
    assert graph.delete(url, headers={"If-Match": second}).status_code == 412
    assert graph.delete(url).status_code == 204


@pytest.mark.parametrize("body", [
    {"isRead": "yes"}, {"isRead": 1}, {"importance": "urgent"},
    {"inferenceClassification": "spam"}, {"flag": {"flagStatus": "bogus"}}, {"flag": "flagged"},
    {"categories": "Red"}, {"categories": [1]}, {"@odata.type": "#microsoft.graph.event"},
])
def test_wrong_types_and_enum_values_are_refused(graph: httpx.Client, body: dict) -> None:
    """CSDL types of message, followupFlag and itemBody (resources/message)."""
    item = _item(graph)
    response = graph.patch(f"/users/{ALICE}/messages/{item['id']}", json=body)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "RequestBodyRead"
    create = graph.post(f"/users/{ALICE}/mailFolders/inbox/messages", json={"subject": "t", **body})
    assert create.status_code == 400


def test_patch_with_odata_type_as_the_sdk_sends_it(graph: httpx.Client) -> None:
    """Microsoft's SDKs annotate every object with @odata.type; Graph accepts that."""
    item = _item(graph)
    response = graph.patch(f"/users/{ALICE}/messages/{item['id']}", json={
        "@odata.type": "#microsoft.graph.message", "isRead": True, "categories": ["Blue"],
        "flag": {"@odata.type": "#microsoft.graph.followupFlag", "flagStatus": "flagged"}})
    assert response.status_code == 200, response.text
    assert response.json()["flag"] == {"flagStatus": "flagged"}
    assert response.json()["categories"] == ["Blue"]


def test_expand_child_folders_count_and_context(graph: httpx.Client, sim: Simulator) -> None:
    """mailfolder-list-childfolders ($expand), query-parameters ($count), message-get (context)."""
    parent = graph.post(f"/users/{ALICE}/mailFolders", json={"displayName": "Projects"}).json()
    assert parent["@odata.context"].endswith("/$metadata#users('alice%40contoso.test')/mailFolders/$entity")
    for name in ("A", "B"):
        graph.post(f"/users/{ALICE}/mailFolders/{parent['id']}/childFolders", json={"displayName": name})
    listed = graph.get(f"/users/{ALICE}/mailFolders",
                       params={"$expand": "childFolders", "$count": "true", "$top": "2"}).json()
    assert listed["@odata.context"] == (
        "https://graph.microsoft.com/v1.0/$metadata#users('alice%40contoso.test')/mailFolders")
    root = next(f for f in sim.folders(ALICE) if f.well_known == "msgfolderroot")
    assert listed["@odata.count"] == sum(f.parent_id == root.id for f in sim.folders(ALICE))
    assert len(listed["value"]) == 2 and "@odata.nextLink" in listed
    one = graph.get(f"/users/{ALICE}/mailFolders/{parent['id']}", params={"$expand": "childFolders"}).json()
    assert sorted(c["displayName"] for c in one["childFolders"]) == ["A", "B"]
    assert "childFolders" not in graph.get(f"/users/{ALICE}/mailFolders/{parent['id']}").json()

    item = _item(graph, "ctx")
    got = graph.get(f"/users/{ALICE}/messages/{item['id']}").json()
    assert got["@odata.context"].endswith("#users('alice%40contoso.test')/messages/$entity")
    inbox = graph.get(f"/users/{ALICE}/mailFolders/inbox/messages", params={"$count": "true"}).json()
    assert inbox["@odata.context"].endswith("#users('alice%40contoso.test')/mailFolders('inbox')/messages")
    assert inbox["@odata.count"] == len(sim.messages(ALICE, "inbox"))


def test_token_endpoint_refuses_unknown_apps_when_told_which_exist() -> None:
    """Entra: unknown client id AADSTS700016, wrong secret AADSTS7000215 (mailtrek sim --apps)."""
    config = SimConfig(client_secrets={"app-one": "s1", "app-two": "s2"}, registered_apps_only=True)
    with Simulator(config) as sim:
        assert fetch_token(sim, client_id="app-one", client_secret="s1")
        assert fetch_token(sim, client_id="app-two", client_secret="s2")
        with httpx.Client(verify=tls_context(sim), trust_env=False) as client:
            def token(client_id: str, secret: str) -> httpx.Response:
                return client.post(f"{sim.authority()}/oauth2/v2.0/token", data={
                    "grant_type": "client_credentials", "client_id": client_id,
                    "client_secret": secret, "scope": "https://graph.microsoft.com/.default"})

            unknown = token("stranger", "s1")
            assert unknown.status_code == 400 and unknown.json()["error_codes"] == [700016]
            wrong = token("app-two", "s1")
            assert wrong.status_code == 401 and wrong.json()["error_codes"] == [7000215]
    # Without the list any app is accepted, as before.
    with Simulator(SimConfig()) as sim:
        assert fetch_token(sim, client_id="anything", client_secret="whatever")


async def test_client_waits_a_fractional_retry_after_and_lands_everything() -> None:
    """mailtrek's client honours Retry-After: 1.xxx as sent by the throttling page's sample."""
    from datetime import UTC, datetime
    from pathlib import Path

    from mailtrek.model import Message
    from mailtrek.stores.m365 import TenantConfig, open_graph_store

    limits = Limits(requests_per_window=3, request_window_s=1.0)
    sim = Simulator(SimConfig(limits=limits, fractional_retry_after=True)).start()
    try:
        tenant = TenantConfig(tenant_id=sim.config.tenant_id, client_id="app", client_secret="x",
                              authority=sim.authority(), graph_url=f"{sim.base_url}/graph",
                              ca_file=Path(sim.ca_file))
        store = open_graph_store(ALICE, tenant)
        await store.connect()
        folder = await store.ensure_folder(("Paced",))
        raws = [f"Message-ID: <p{i}@x.test>\r\nSubject: p{i}\r\nFrom: a@x.test\r\n\r\nhi\r\n".encode()
                for i in range(4)]
        results = [await store.append(folder, Message(uid=i, raw=raw,
                                                      internaldate=datetime(2024, 1, 1, tzinfo=UTC)))
                   for i, raw in enumerate(raws)]
        await store.close()
        assert all(r.ok for r in results), results
        assert sim.status_count(429) >= 1
        assert len(sim.messages(ALICE, folder.store_id)) == 4
    finally:
        sim.stop()
