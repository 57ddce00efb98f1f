"""Microsoft's own Python SDK (msgraph-sdk) drives the simulator through every Graph call
mailtrek's Microsoft 365 store makes: an independent client checks the simulator's shapes.

The SDK parses every answer into its generated models (from Graph's CSDL), sends
``@odata.type`` in bodies, and uploads large attachments with its own LargeFileUploadTask,
which sends the token only to hosts it was told are Graph's. Skipped when the SDK is not
installed (it is in the ``test`` extra). Not covered here: importMime (beta, not in the v1.0
SDK) and ``$batch`` (msgraph-core's batch module needs the undeclared ``deprecated``
package); tests/test_sim_attachments.py covers both with plain HTTP.
"""

from __future__ import annotations

import base64
import datetime as dt
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest

pytest.importorskip("msgraph")

from kiota_abstractions.authentication import (
    AccessTokenProvider,
    AllowedHostsValidator,
    BaseBearerTokenAuthenticationProvider,
)
from kiota_abstractions.base_request_configuration import RequestConfiguration
from kiota_abstractions.method import Method
from kiota_abstractions.request_information import RequestInformation
from msgraph import GraphRequestAdapter, GraphServiceClient
from msgraph.generated.models.attachment_item import AttachmentItem
from msgraph.generated.models.attachment_type import AttachmentType
from msgraph.generated.models.body_type import BodyType
from msgraph.generated.models.file_attachment import FileAttachment
from msgraph.generated.models.followup_flag import FollowupFlag
from msgraph.generated.models.followup_flag_status import FollowupFlagStatus
from msgraph.generated.models.item_body import ItemBody
from msgraph.generated.models.mail_folder import MailFolder
from msgraph.generated.models.message import Message
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.generated.models.single_value_legacy_extended_property import (
    SingleValueLegacyExtendedProperty,
)
from msgraph.generated.users.item.messages.item.attachments.create_upload_session.create_upload_session_post_request_body import (
    CreateUploadSessionPostRequestBody,
)
from msgraph.generated.users.item.messages.messages_request_builder import (
    MessagesRequestBuilder,
)
from msgraph_core import GraphClientFactory

from mailtrek.sim import SimConfig, Simulator
from mailtrek.sim.config import MB
from mailtrek.sim.testing import fetch_token, tls_context

ALICE = "alice@contoso.test"


class _SimTokens(AccessTokenProvider):
    """Hand the simulator's token to the SDK, for the Graph host only."""

    def __init__(self, token: str, host: str) -> None:
        self.token = token
        self.validator = AllowedHostsValidator([host])

    async def get_authorization_token(self, uri: str, additional_authentication_context=None) -> str:
        return self.token if self.validator.is_url_host_valid(uri) else ""

    def get_allowed_hosts_validator(self) -> AllowedHostsValidator:
        return self.validator


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator(SimConfig()) as running:
        yield running


def _client(sim: Simulator) -> tuple[GraphServiceClient, GraphRequestAdapter]:
    host = urlsplit(sim.base_url).hostname or ""
    auth = BaseBearerTokenAuthenticationProvider(_SimTokens(fetch_token(sim), host))
    http = GraphClientFactory.create_with_default_middleware(
        client=httpx.AsyncClient(verify=tls_context(sim), trust_env=False, timeout=60))
    adapter = GraphRequestAdapter(auth, client=http)
    adapter.base_url = sim.graph_url
    return GraphServiceClient(request_adapter=adapter), adapter


async def test_every_call_mailtrek_makes_through_the_sdk(sim: Simulator) -> None:
    graph, adapter = _client(sim)
    me = graph.users.by_user_id(ALICE)

    user = await me.get()
    assert user is not None and user.user_principal_name == ALICE
    records = await graph.domains.by_domain_id("contoso.test").service_configuration_records.get()
    assert records is not None and records.value and records.value[0].odata_type.endswith("MxRecord")

    folders = await me.mail_folders.get()
    assert folders is not None and "Inbox" in {f.display_name for f in folders.value or []}
    created = await me.mail_folders.by_mail_folder_id("inbox").child_folders.post(
        MailFolder(display_name=f"SDK {uuid.uuid4().hex[:6]}"))
    assert created is not None and created.id
    children = await me.mail_folders.by_mail_folder_id("inbox").child_folders.get()
    assert created.id in {f.id for f in children.value or []}

    received = dt.datetime(2021, 5, 4, 3, 2, 1, tzinfo=dt.UTC)
    mid = f"<{uuid.uuid4().hex}@sdk.test>"
    message = await me.mail_folders.by_mail_folder_id(created.id).messages.post(Message(
        subject="From the SDK", internet_message_id=mid,
        body=ItemBody(content_type=BodyType.Html, content="<p>hello</p>"),
        single_value_extended_properties=[
            SingleValueLegacyExtendedProperty(id="Integer 0x0E07", value="1"),
            SingleValueLegacyExtendedProperty(id="SystemTime 0x0E06", value=received.isoformat()),
        ]))
    assert message is not None and message.is_draft is False
    assert message.received_date_time == received
    item = me.messages.by_message_id(message.id or "")

    patched = await item.patch(Message(
        is_read=False, categories=["Blue"],
        flag=FollowupFlag(flag_status=FollowupFlagStatus.Flagged)))
    assert patched is not None and patched.flag.flag_status == FollowupFlagStatus.Flagged
    assert patched.change_key and patched.change_key != message.change_key

    small = b"small attachment\n" * 50
    await item.attachments.post(FileAttachment(
        odata_type="#microsoft.graph.fileAttachment", name="small.txt",
        content_type="text/plain", content_bytes=small))
    big = bytes(range(256)) * (3 * MB // 256 + 1000)
    session = await item.attachments.create_upload_session.post(
        CreateUploadSessionPostRequestBody(attachment_item=AttachmentItem(
            attachment_type=AttachmentType.File, name="big.bin", size=len(big))))
    assert session is not None and session.upload_url
    assert urlsplit(session.upload_url).hostname != urlsplit(sim.base_url).hostname
    assert session.next_expected_ranges == ["0"]
    # msgraph-core's LargeFileUploadTask expects OneDrive's "start-end" ranges and fails on
    # Outlook's documented ["2097152"]; the PUTs go through the SDK's adapter instead, whose
    # token provider must leave the Outlook host's pre-authenticated URL alone.
    chunk = 2 * MB
    for start in range(0, len(big), chunk):
        part = big[start:start + chunk]
        info = RequestInformation(method=Method.PUT)
        info.url = session.upload_url
        info.headers.try_add("Content-Range", f"bytes {start}-{start + len(part) - 1}/{len(big)}")
        info.set_stream_content(part)
        await adapter.send_primitive_async(info, "bytes", {})
    assert sim.status_count(401) == 0
    stored = {a.props["name"]: a.content for a in sim.attachments(message.id or "")}
    assert stored == {"small.txt": small, "big.bin": big}
    listed = await item.attachments.get()
    assert {a.name for a in listed.value or []} == {"small.txt", "big.bin"}

    query = MessagesRequestBuilder.MessagesRequestBuilderGetQueryParameters(
        filter=f"internetMessageId eq '{mid}'", select=["id", "isRead", "categories"],
        count=True)
    found = await me.messages.get(request_configuration=RequestConfiguration(query_parameters=query))
    assert found is not None and [m.id for m in found.value or []] == [message.id]
    assert found.odata_count == 1 and found.value[0].categories == ["Blue"]

    mime = await item.content.get()
    assert mime and b"From the SDK" in mime and b"big.bin" in mime

    with pytest.raises(ODataError) as malformed:
        await me.messages.by_message_id("not-an-id").get()
    assert malformed.value.error is not None and malformed.value.error.code == "ErrorInvalidIdMalformed"
    await item.delete()
    with pytest.raises(ODataError) as gone:
        await item.get()
    assert gone.value.response_status_code == 404
    assert base64.b64encode(small)  # the small attachment went as base64 contentBytes
