"""Graph mail behaviour of the simulator: users, folders, message create/import, read, update."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import httpx
import pytest

from mailtrek.sim import SimConfig, Simulator, UserSpec
from mailtrek.sim.testing import graph_client

ALICE = "alice@contoso.test"

MIME = (
    b"Received: from mx.example.org by mail.example.org; Tue, 2 Jan 2024 08:30:00 +0100\r\n"
    b"From: Carol <carol@example.org>\r\n"
    b"To: Alice <alice@contoso.test>, bob@contoso.test\r\n"
    b"Subject: Quarterly numbers\r\n"
    b"Date: Mon, 1 Jan 2024 12:00:00 +0000\r\n"
    b"Message-ID: <q1-2024@example.org>\r\n"
    b"X-Odd-Header:   kept   as is\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"\r\n"
    b"Numbers attached in spirit.\r\n"
)


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    users = [UserSpec(ALICE), UserSpec("bob@contoso.test"), UserSpec("nomail@contoso.test", has_mailbox=False)]
    with Simulator(SimConfig(users=users, mx_records={"contoso.test": "contoso-test.mx.microsoft"})) as running:
        yield running


@pytest.fixture()
def graph(sim: Simulator) -> Iterator[httpx.Client]:
    with graph_client(sim) as client:
        yield client


@pytest.fixture()
def beta(sim: Simulator) -> Iterator[httpx.Client]:
    with graph_client(sim, beta=True) as client:
        yield client


def _mime_post(client: httpx.Client, url: str, raw: bytes) -> httpx.Response:
    return client.post(url, content=base64.b64encode(raw), headers={"Content-Type": "text/plain"})


def _error(response: httpx.Response) -> str:
    return str(response.json()["error"]["code"])


# ----- users and domains ----------------------------------------------------------------
def test_user_by_upn_and_id_with_select(graph: httpx.Client) -> None:
    user = graph.get(f"/users/{ALICE}", params={"$select": "id,mail,userPrincipalName,assignedPlans"}).json()
    assert user["userPrincipalName"] == ALICE and user["mail"] == ALICE
    assert "displayName" not in user
    assert any(p["service"] == "exchange" and p["capabilityStatus"] == "Enabled" for p in user["assignedPlans"])
    assert graph.get(f"/users/{user['id']}").json()["userPrincipalName"] == ALICE


def test_unknown_user_is_request_resource_not_found(graph: httpx.Client) -> None:
    response = graph.get("/users/ghost@contoso.test")
    assert response.status_code == 404
    assert _error(response) == "Request_ResourceNotFound"
    assert graph.get("/users/ghost@contoso.test/mailFolders").status_code == 404


def test_user_without_mailbox(graph: httpx.Client, sim: Simulator) -> None:
    user = graph.get("/users/nomail@contoso.test").json()
    assert user["assignedPlans"] == [] and user["mail"] is None
    response = graph.get("/users/nomail@contoso.test/mailFolders/inbox")
    assert response.status_code == 404
    assert _error(response) == "MailboxNotEnabledForRESTAPI"


def test_service_configuration_records(graph: httpx.Client) -> None:
    records = graph.get("/domains/contoso.test/serviceConfigurationRecords").json()["value"]
    mx = [r for r in records if r["recordType"] == "Mx"]
    assert mx[0]["mailExchange"] == "contoso-test.mx.microsoft"
    assert graph.get("/domains/other.test/serviceConfigurationRecords").status_code == 404


# ----- folders ----------------------------------------------------------------------------
def test_root_folders_and_paging(graph: httpx.Client) -> None:
    names = [f["displayName"] for f in graph.get(f"/users/{ALICE}/mailFolders").json()["value"]]
    assert {"Inbox", "Drafts", "Sent Items", "Deleted Items", "Junk Email", "Archive"} <= set(names)
    first = graph.get(f"/users/{ALICE}/mailFolders", params={"$top": 3}).json()
    assert len(first["value"]) == 3
    seen = [f["displayName"] for f in first["value"]]
    link = first.get("@odata.nextLink")
    while link:
        page = graph.get(link).json()
        seen += [f["displayName"] for f in page["value"]]
        link = page.get("@odata.nextLink")
    assert seen == names


def test_well_known_folders_resolve(graph: httpx.Client) -> None:
    inbox = graph.get(f"/users/{ALICE}/mailFolders/inbox").json()
    assert inbox["displayName"] == "Inbox"
    assert graph.get(f"/users/{ALICE}/mailFolders/{inbox['id']}").json()["id"] == inbox["id"]
    root = graph.get(f"/users/{ALICE}/mailFolders/msgfolderroot").json()
    assert inbox["parentFolderId"] == root["id"]
    response = graph.get(f"/users/{ALICE}/mailFolders/nosuchfolder")
    assert response.status_code == 400 and _error(response) == "ErrorInvalidIdMalformed"
    response = graph.get(f"/users/{ALICE}/mailFolders/AAMk{'A' * 60}")
    assert response.status_code == 404 and _error(response) == "ErrorItemNotFound"


def test_child_folders_and_name_rules(graph: httpx.Client, sim: Simulator) -> None:
    created = graph.post(f"/users/{ALICE}/mailFolders/inbox/childFolders",
                         json={"displayName": "Projects", "isHidden": False})
    assert created.status_code == 201
    project = created.json()
    clash = graph.post(f"/users/{ALICE}/mailFolders/inbox/childFolders", json={"displayName": "PROJECTS"})
    assert clash.status_code == 409 and _error(clash) == "ErrorFolderExists"
    # The same name under another parent is fine.
    sub = graph.post(f"/users/{ALICE}/mailFolders/{project['id']}/childFolders", json={"displayName": "Projects"})
    assert sub.status_code == 201
    assert sim.folder_path(ALICE, sub.json()["id"]) == "Inbox/Projects/Projects"
    children = graph.get(f"/users/{ALICE}/mailFolders/inbox/childFolders").json()["value"]
    assert [c["displayName"] for c in children] == ["Projects"]
    assert children[0]["childFolderCount"] == 1
    for bad in ({"displayName": ""}, {"name": "x"}):
        assert graph.post(f"/users/{ALICE}/mailFolders/inbox/childFolders", json=bad).status_code == 400
    reserved = graph.post(f"/users/{ALICE}/mailFolders", json={"displayName": "files"})
    assert reserved.status_code == 409
    assert graph.post(f"/users/{ALICE}/mailFolders", json={"displayName": "inbox"}).status_code == 409
    hidden = graph.post(f"/users/{ALICE}/mailFolders", json={"displayName": "Secret", "isHidden": True})
    assert hidden.status_code == 201
    visible = [f["displayName"] for f in graph.get(f"/users/{ALICE}/mailFolders").json()["value"]]
    assert "Secret" not in visible
    everything = graph.get(f"/users/{ALICE}/mailFolders", params={"includeHiddenFolders": "true"}).json()
    assert "Secret" in [f["displayName"] for f in everything["value"]]


# ----- messages -------------------------------------------------------------------------
def test_mime_create_makes_a_read_draft_received_now(graph: httpx.Client, sim: Simulator) -> None:
    response = _mime_post(graph, "/users/bob@contoso.test/messages", MIME)
    assert response.status_code == 201
    message = response.json()
    assert message["isDraft"] is True and message["isRead"] is True
    assert message["sentDateTime"] == "2024-01-01T12:00:00Z"
    assert message["receivedDateTime"] == message["createdDateTime"]
    drafts = graph.get("/users/bob@contoso.test/mailFolders/drafts").json()
    assert message["parentFolderId"] == drafts["id"]
    assert [m.id for m in sim.messages("bob@contoso.test", "drafts")] == [message["id"]]


def test_mime_create_rejects_bad_base64(graph: httpx.Client) -> None:
    response = graph.post(f"/users/{ALICE}/messages", content=b"%%% not base64 %%%",
                          headers={"Content-Type": "text/plain"})
    assert response.status_code == 400
    assert _error(response) == "ErrorMimeContentInvalidBase64String"


def test_import_mime_keeps_bytes_and_is_not_a_draft(beta: httpx.Client, graph: httpx.Client,
                                                   sim: Simulator) -> None:
    response = _mime_post(beta, f"/users/{ALICE}/mailFolders/inbox/importMime", MIME)
    assert response.status_code == 201
    message = response.json()
    assert message["isDraft"] is False and message["isRead"] is False
    # Topmost Received header date (08:30 +01:00) wins over Date.
    assert message["receivedDateTime"] == "2024-01-02T07:30:00Z"
    assert message["sentDateTime"] == "2024-01-01T12:00:00Z"
    assert message["internetMessageId"] == "<q1-2024@example.org>"
    assert message["subject"] == "Quarterly numbers"
    assert message["from"]["emailAddress"]["address"] == "carol@example.org"
    assert [r["emailAddress"]["address"] for r in message["toRecipients"]] == [ALICE, "bob@contoso.test"]
    value = graph.get(f"/users/{ALICE}/messages/{message['id']}/$value")
    assert value.status_code == 200 and value.content == MIME
    assert sim.message_mime(ALICE, message["id"]) == MIME
    # importMime is beta only.
    assert _mime_post(graph, f"/users/{ALICE}/mailFolders/inbox/importMime", MIME).status_code == 400


def test_import_mime_permission_denied(beta: httpx.Client, sim: Simulator) -> None:
    sim.deny_permission()
    try:
        response = _mime_post(beta, f"/users/{ALICE}/mailFolders/inbox/importMime", MIME)
        assert response.status_code == 403 and _error(response) == "ErrorAccessDenied"
    finally:
        sim.allow_permission()


def test_json_create_with_extended_properties_is_not_a_draft(graph: httpx.Client) -> None:
    body = {
        "subject": "Imported", "body": {"contentType": "html", "content": "<p>hi</p>"},
        "from": {"emailAddress": {"address": "carol@example.org", "name": "Carol"}},
        "toRecipients": [{"emailAddress": {"address": ALICE}}],
        "internetMessageId": "<json-1@example.org>",
        "internetMessageHeaders": [{"name": "X-Source", "value": "imap"}],
        "categories": ["$label1"],
        "singleValueExtendedProperties": [
            {"id": "Integer 0x0E07", "value": "1"},
            {"id": "SystemTime 0x0E06", "value": "2023-05-06T07:08:09Z"},
            {"id": "SystemTime 0x0039", "value": "2023-05-06T07:00:00Z"},
        ],
    }
    response = graph.post(f"/users/{ALICE}/mailFolders/inbox/messages", json=body)
    assert response.status_code == 201
    message = response.json()
    assert message["isDraft"] is False and message["isRead"] is True
    assert message["receivedDateTime"] == "2023-05-06T07:08:09Z"
    assert message["sentDateTime"] == "2023-05-06T07:00:00Z"
    assert message["categories"] == ["$label1"]
    mime = graph.get(f"/users/{ALICE}/messages/{message['id']}/$value").content
    assert b"Subject: Imported" in mime and b"<json-1@example.org>" in mime
    # Unread flag value 0 (no READ, no UNSENT) -> unread non-draft.
    body["singleValueExtendedProperties"][0]["value"] = "0"
    body["internetMessageId"] = "<json-2@example.org>"
    unread = graph.post(f"/users/{ALICE}/mailFolders/inbox/messages", json=body).json()
    assert unread["isRead"] is False and unread["isDraft"] is False


def test_json_create_without_flags_is_a_draft(graph: httpx.Client) -> None:
    message = graph.post(f"/users/{ALICE}/messages", json={"subject": "plain"}).json()
    assert message["isDraft"] is True
    bad = graph.post(f"/users/{ALICE}/messages",
                     json={"subject": "x", "internetMessageHeaders": [{"name": "Received", "value": "x"}]})
    assert bad.status_code == 400 and _error(bad) == "InvalidInternetMessageHeader"
    assert graph.post(f"/users/{ALICE}/messages", json={"nonsense": 1}).status_code == 400
    assert graph.post(f"/users/{ALICE}/messages", content=b"{",
                      headers={"Content-Type": "application/json"}).status_code == 400


def test_filter_select_top_and_paging(graph: httpx.Client, beta: httpx.Client) -> None:
    user = "bob@contoso.test"
    for n in range(5):
        raw = MIME.replace(b"<q1-2024@example.org>", f"<page-{n}@example.org>".encode())
        assert _mime_post(beta, f"/users/{user}/mailFolders/inbox/importMime", raw).status_code == 201
    found = graph.get(f"/users/{user}/messages",
                      params={"$filter": "internetMessageId eq '<page-3@example.org>'",
                              "$select": "id,internetMessageId"}).json()["value"]
    assert [m["internetMessageId"] for m in found] == ["<page-3@example.org>"]
    assert set(found[0]) <= {"id", "internetMessageId", "@odata.etag"}
    none = graph.get(f"/users/{user}/messages", params={"$filter": "internetMessageId eq 'x''y'"})
    assert none.json()["value"] == []
    assert graph.get(f"/users/{user}/messages", params={"$filter": "subject eq 'x'"}).status_code == 400
    ids: list[str] = []
    link: str | None = f"/users/{user}/mailFolders/inbox/messages?$top=2"
    while link:
        page = graph.get(link).json()
        assert len(page["value"]) <= 2
        ids += [m["id"] for m in page["value"]]
        link = page.get("@odata.nextLink")
    assert len(ids) == len(set(ids)) == 5


def test_patch_rules_for_drafts_and_non_drafts(graph: httpx.Client, beta: httpx.Client) -> None:
    raw = MIME.replace(b"<q1-2024@example.org>", b"<patch@example.org>")
    delivered = _mime_post(beta, f"/users/{ALICE}/mailFolders/inbox/importMime", raw).json()
    url = f"/users/{ALICE}/messages/{delivered['id']}"
    ok = graph.patch(url, json={"isRead": True, "categories": ["Blue"], "importance": "high",
                                "flag": {"flagStatus": "flagged"}})
    assert ok.status_code == 200
    got = graph.get(url).json()
    assert got["isRead"] is True and got["categories"] == ["Blue"]
    assert got["flag"]["flagStatus"] == "flagged" and got["importance"] == "high"
    refused = graph.patch(url, json={"subject": "changed"})
    assert refused.status_code == 400
    assert graph.get(url).json()["subject"] == "Quarterly numbers"
    assert graph.patch(url, json={"flag": {"flagStatus": "bogus"}}).status_code == 400
    assert graph.get(f"{url}/$value").content == raw

    draft = graph.post(f"/users/{ALICE}/messages", json={"subject": "draft"}).json()
    changed = graph.patch(f"/users/{ALICE}/messages/{draft['id']}", json={"subject": "edited"})
    assert changed.status_code == 200 and changed.json()["subject"] == "edited"
    assert graph.get(f"/users/{ALICE}/messages/nope").status_code == 400  # malformed id
    assert graph.get(f"/users/{ALICE}/messages/AAMk{'A' * 60}").status_code == 404


def test_size_extended_property_and_beta_well_known_name(graph: httpx.Client, beta: httpx.Client) -> None:
    raw = MIME.replace(b"<q1-2024@example.org>", b"<size@example.org>")
    created = _mime_post(beta, f"/users/{ALICE}/mailFolders/inbox/importMime", raw).json()
    got = graph.get(f"/users/{ALICE}/messages/{created['id']}", params={
        "$expand": "singleValueExtendedProperties($filter=id eq 'Integer 0x0E08')"}).json()
    assert got["singleValueExtendedProperties"] == [{"id": "Integer 0x0E08", "value": str(len(raw))}]
    listed = graph.get(f"/users/{ALICE}/mailFolders/inbox/messages", params={
        "$select": "id,internetMessageId",
        "$filter": "internetMessageId eq '<size@example.org>'",
        "$expand": "singleValueExtendedProperties($filter=id eq 'Integer 0x0E08')"}).json()["value"]
    assert set(listed[0]) == {"@odata.etag", "id", "internetMessageId", "singleValueExtendedProperties"}
    # Extended properties set at create come back through $expand as well.
    made = graph.post(f"/users/{ALICE}/mailFolders/inbox/messages", json={
        "subject": "verb", "singleValueExtendedProperties": [
            {"id": "Integer 0x0E07", "value": "1"}, {"id": "Integer 0x1081", "value": "102"}]}).json()
    verb = graph.get(f"/users/{ALICE}/messages/{made['id']}", params={
        "$select": "id", "$expand": "singleValueExtendedProperties($filter=id eq 'Integer 0x1081')"}).json()
    assert verb["singleValueExtendedProperties"] == [{"id": "Integer 0x1081", "value": "102"}]
    assert beta.get(f"/users/{ALICE}/mailFolders/inbox").json()["wellKnownName"] == "inbox"
    assert "wellKnownName" not in graph.get(f"/users/{ALICE}/mailFolders/inbox").json()


def test_move_gives_a_new_id_and_delete_removes(graph: httpx.Client, beta: httpx.Client,
                                                sim: Simulator) -> None:
    raw = MIME.replace(b"<q1-2024@example.org>", b"<move@example.org>")
    created = _mime_post(beta, "/users/bob@contoso.test/mailFolders/inbox/importMime", raw).json()
    moved = graph.post(f"/users/bob@contoso.test/messages/{created['id']}/move",
                       json={"destinationId": "archive"})
    assert moved.status_code == 201
    new = moved.json()
    assert new["id"] != created["id"]
    assert graph.get(f"/users/bob@contoso.test/messages/{created['id']}").status_code == 404
    archive = graph.get("/users/bob@contoso.test/mailFolders/archive").json()
    assert new["parentFolderId"] == archive["id"]
    assert graph.get(f"/users/bob@contoso.test/mailFolders/archive/messages/{new['id']}/$value").content == raw
    assert graph.delete(f"/users/bob@contoso.test/messages/{new['id']}").status_code == 204
    assert graph.delete(f"/users/bob@contoso.test/messages/{new['id']}").status_code == 404
    assert all(m.props["internetMessageId"] != "<move@example.org>" for m in sim.messages("bob@contoso.test"))
