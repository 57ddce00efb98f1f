"""Real-world MIME the simulator once crashed on answers 201, never 500.

A message whose Date and Received headers carry raw EUC-KR bytes (as old Korean mail
clients wrote them) made ``parsedate_to_datetime`` fail with
``AttributeError: 'Header' object has no attribute 'split'``; Exchange accepts such mail.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator

import httpx
import pytest

from mailtrek.sim import SimConfig, Simulator
from mailtrek.sim.mime import properties_from_mime
from mailtrek.sim.testing import graph_client

ALICE = "alice@contoso.test"

ODD = [
    # Date and Received stamp in raw EUC-KR, Subject a malformed EUC-KR encoded-word.
    b"From: =?EUC-KR?B?seg=?= <kim@example.kr>\r\nTo: alice@contoso.test\r\n"
    b"Date: \xc8\xad, 05 Mar 2019 10:00:00 +0900\r\n"
    b"Received: from mx by mx2; \xc8\xad, 5 Mar 2019 10:00:01 +0900\r\n"
    b"Subject: =?EUC-KR?B?xMTH?=\xb0\xa1\r\nMessage-ID: <odd-1@example.kr>\r\n\r\nbody\r\n",
    # No header at all but a bare body line.
    b"\r\njust a body\r\n",
    # A Date that is pure noise, an address list with unbalanced brackets.
    b"Date: ???\r\nFrom: <<a@b\r\nTo: \"x <y@z>\r\nSubject: =?x-unknown?Q?=FF?=\r\n\r\nhi\r\n",
    # Content-Type with a charset Python does not know, 8-bit body.
    b"From: a@b.test\r\nContent-Type: text/plain; charset=x-mac-korean\r\n"
    b"Content-Transfer-Encoding: 8bit\r\n\r\n\xb0\xa1\xb3\xaa\r\n",
]


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator(SimConfig()) as running:
        yield running


@pytest.mark.parametrize("raw", ODD, ids=["euc-kr-date", "bare-body", "noise", "odd-charset"])
def test_parser_survives(raw: bytes) -> None:
    props, _received = properties_from_mime(raw)
    assert isinstance(props["subject"], str)


def test_odd_mime_lands_through_both_routes(sim: Simulator) -> None:
    with graph_client(sim) as graph, graph_client(sim, beta=True) as beta:
        for raw in ODD:
            body = base64.b64encode(raw)
            for client, path in ((beta, f"/users/{ALICE}/mailFolders/inbox/importMime"),
                                 (graph, f"/users/{ALICE}/messages")):
                response: httpx.Response = client.post(
                    path, content=body, headers={"Content-Type": "text/plain"})
                assert response.status_code == 201, (path, response.text[:300])
    assert sim.status_count(500) == 0
    korean = [m for m in sim.messages(ALICE, "inbox")
              if m.props.get("internetMessageId") == "<odd-1@example.kr>"]
    # The received date falls back to the Received stamp's time, parsed despite the bytes.
    assert korean and korean[0].props["receivedDateTime"] == "2019-03-05T01:00:01Z"
