"""Simulator attachments (inline and upload sessions) and JSON batching."""

from __future__ import annotations

import base64
import email
import hashlib
import os
from collections.abc import Iterator

import httpx
import pytest

from mailtrek.sim import SimConfig, Simulator
from mailtrek.sim.config import MB
from mailtrek.sim.testing import graph_client, tls_context

ALICE = "alice@contoso.test"
NON_DRAFT = [{"id": "Integer 0x0E07", "value": "1"}]


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator(SimConfig()) as running:
        yield running


@pytest.fixture()
def graph(sim: Simulator) -> Iterator[httpx.Client]:
    with graph_client(sim) as client:
        yield client


def _message(graph: httpx.Client, subject: str) -> str:
    response = graph.post(f"/users/{ALICE}/mailFolders/inbox/messages", json={
        "subject": subject, "body": {"contentType": "text", "content": "see attached"},
        "singleValueExtendedProperties": NON_DRAFT})
    assert response.status_code == 201
    return str(response.json()["id"])


def test_small_attachment_inline(graph: httpx.Client, sim: Simulator) -> None:
    message_id = _message(graph, "small")
    content = b"hello attachment\n" * 100
    response = graph.post(f"/users/{ALICE}/messages/{message_id}/attachments", json={
        "@odata.type": "#microsoft.graph.fileAttachment", "name": "note.txt",
        "contentType": "text/plain", "contentBytes": base64.b64encode(content).decode()})
    assert response.status_code == 201
    assert graph.get(f"/users/{ALICE}/messages/{message_id}").json()["hasAttachments"] is True
    listed = graph.get(f"/users/{ALICE}/messages/{message_id}/attachments").json()["value"]
    assert [base64.b64decode(a["contentBytes"]) for a in listed] == [content]
    mime = email.message_from_bytes(graph.get(f"/users/{ALICE}/messages/{message_id}/$value").content)
    parts = [p for p in mime.walk() if p.get_filename() == "note.txt"]
    assert parts and parts[0].get_payload(decode=True) == content
    # Over 3 MB needs an upload session; missing name and bad base64 are refused.
    big = base64.b64encode(b"z" * (3 * MB + 1)).decode()
    assert graph.post(f"/users/{ALICE}/messages/{message_id}/attachments", json={
        "@odata.type": "#microsoft.graph.fileAttachment", "name": "big.bin",
        "contentBytes": big}).status_code == 413
    assert graph.post(f"/users/{ALICE}/messages/{message_id}/attachments", json={
        "@odata.type": "#microsoft.graph.fileAttachment", "contentBytes": "aGk="}).status_code == 400
    assert graph.post(f"/users/{ALICE}/messages/{message_id}/attachments", json={
        "@odata.type": "#microsoft.graph.fileAttachment", "name": "x", "contentBytes": "!!"}).status_code == 400
    assert len(sim.attachments(message_id)) == 1


def _put(client: httpx.Client, url: str, data: bytes, start: int, total: int) -> httpx.Response:
    return client.put(url, content=data, headers={
        "Content-Range": f"bytes {start}-{start + len(data) - 1}/{total}",
        "Content-Type": "application/octet-stream"})


def test_upload_session_assembles_10_mb(graph: httpx.Client, sim: Simulator) -> None:
    message_id = _message(graph, "large")
    content = os.urandom(10 * MB + 12345)
    session = graph.post(f"/users/{ALICE}/messages/{message_id}/attachments/createUploadSession",
                         json={"AttachmentItem": {"attachmentType": "file", "name": "big.bin",
                                                  "size": len(content)}})
    assert session.status_code == 201
    upload_url = session.json()["uploadUrl"]
    assert session.json()["nextExpectedRanges"] == ["0"]
    chunk = 4 * MB
    with httpx.Client(verify=tls_context(sim), trust_env=False, timeout=60) as raw:
        # A token must not be sent to the pre-authenticated URL.
        assert raw.put(upload_url, content=content[:10], headers={
            "Authorization": "Bearer x", "Content-Range": f"bytes 0-9/{len(content)}"}).status_code == 401
        # Out-of-order fragment.
        assert _put(raw, upload_url, content[chunk:chunk + 10], chunk, len(content)).status_code == 416
        # Over 4 MB in one fragment.
        assert _put(raw, upload_url, content[: chunk + 1], 0, len(content)).status_code == 413
        last: httpx.Response | None = None
        for start in range(0, len(content), chunk):
            last = _put(raw, upload_url, content[start:start + chunk], start, len(content))
            if start + chunk < len(content):
                assert last.status_code == 200
                assert last.json()["nextExpectedRanges"] == [str(start + chunk)]
        assert last is not None and last.status_code == 201
        location = last.headers["Location"]
        assert raw.put(upload_url, content=b"x", headers={
            "Content-Range": "bytes 0-0/1"}).status_code == 404
    stored = sim.attachments(message_id)
    assert len(stored) == 1
    assert hashlib.sha256(stored[0].content).digest() == hashlib.sha256(content).digest()
    # Outlook's form: .../api/v2.0/Users('..')/Messages('..')/Attachments('{id}').
    assert location.endswith(f"/Attachments('{stored[0].id}')")
    fetched = graph.get(f"/users/{ALICE}/messages/{message_id}/attachments/{stored[0].id}").json()
    assert fetched["size"] == len(content) and fetched["name"] == "big.bin"


def test_upload_session_respects_message_size_limit(graph: httpx.Client) -> None:
    message_id = _message(graph, "too big")
    response = graph.post(f"/users/{ALICE}/messages/{message_id}/attachments/createUploadSession",
                          json={"AttachmentItem": {"attachmentType": "file", "name": "x.bin",
                                                   "size": 36 * MB}})
    assert response.status_code == 413
    assert graph.post(f"/users/{ALICE}/messages/{message_id}/attachments/createUploadSession",
                      json={"AttachmentItem": {"name": "x"}}).status_code == 400


def test_batch_runs_requests_and_reports_each(graph: httpx.Client, sim: Simulator) -> None:
    raw = b"From: a@example.org\r\nSubject: batched\r\nMessage-ID: <b1@example.org>\r\n\r\nbody\r\n"
    response = graph.post("/$batch", json={"requests": [
        {"id": "1", "method": "GET", "url": f"/users/{ALICE}/mailFolders/inbox"},
        {"id": "2", "method": "POST", "url": f"/users/{ALICE}/messages",
         "headers": {"Content-Type": "text/plain"}, "body": base64.b64encode(raw).decode()},
        {"id": "3", "method": "POST", "url": f"/users/{ALICE}/mailFolders/inbox/messages",
         "headers": {"Content-Type": "application/json"},
         "body": {"subject": "json in batch", "singleValueExtendedProperties": NON_DRAFT}},
        {"id": "4", "method": "GET", "url": "/users/ghost@contoso.test"},
    ]})
    assert response.status_code == 200
    by_id = {r["id"]: r for r in response.json()["responses"]}
    assert by_id["1"]["status"] == 200 and by_id["1"]["body"]["displayName"] == "Inbox"
    assert by_id["2"]["status"] == 201 and by_id["2"]["body"]["isDraft"] is True
    assert by_id["3"]["status"] == 201 and by_id["3"]["body"]["isDraft"] is False
    assert by_id["4"]["status"] == 404
    assert by_id["4"]["body"]["error"]["code"] == "Request_ResourceNotFound"


def test_batch_depends_on_and_limits(graph: httpx.Client) -> None:
    response = graph.post("/$batch", json={"requests": [
        {"id": "a", "method": "GET", "url": f"/users/{ALICE}/mailFolders/AAMk{'A' * 60}"},
        {"id": "b", "method": "GET", "url": f"/users/{ALICE}/mailFolders/inbox", "dependsOn": ["a"]},
    ]}).json()["responses"]
    assert [r["status"] for r in response] == [404, 424]
    too_many = [{"id": str(i), "method": "GET", "url": f"/users/{ALICE}"} for i in range(21)]
    refused = graph.post("/$batch", json={"requests": too_many})
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "BadRequest"
    dup = [{"id": "1", "method": "GET", "url": "/users"}] * 2
    assert graph.post("/$batch", json={"requests": dup}).status_code == 400


def test_batch_inner_requests_are_throttled_individually() -> None:
    from mailtrek.sim import Limits

    with Simulator(SimConfig(limits=Limits(requests_per_window=3))) as sim, graph_client(sim) as graph:
        requests = [{"id": str(i), "method": "GET", "url": f"/users/{ALICE}/mailFolders/inbox"}
                    for i in range(5)]
        response = graph.post("/$batch", json={"requests": requests})
        assert response.status_code == 200
        statuses = sorted(r["status"] for r in response.json()["responses"])
        assert statuses == [200, 200, 200, 429, 429]
        throttled = [r for r in response.json()["responses"] if r["status"] == 429]
        assert all("retry-after" in {k.lower() for k in r["headers"]} for r in throttled)


def test_batch_inner_dropped_response_is_in_doubt(graph: httpx.Client, sim: Simulator) -> None:
    # The outer $batch is request N+1, its only inner request N+2.
    sim.drop_response_after_commit(sim.request_count + 2)
    response = graph.post("/$batch", json={"requests": [
        {"id": "1", "method": "POST", "url": f"/users/{ALICE}/mailFolders/inbox/messages",
         "headers": {"Content-Type": "application/json"},
         "body": {"subject": "doubtful", "internetMessageId": "<batch-doubt@example.org>",
                  "singleValueExtendedProperties": NON_DRAFT}}]})
    assert response.status_code == 200
    assert response.json()["responses"][0]["status"] == 504
    stored = [m.props.get("internetMessageId") for m in sim.messages(ALICE, "inbox")]
    assert "<batch-doubt@example.org>" in stored
