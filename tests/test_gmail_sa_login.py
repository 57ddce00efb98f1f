"""Google Workspace service account (domain-wide delegation) → XOAUTH2 login, end to end.

A local token endpoint plays Google's: it checks the service account's signed assertion
and hands out access tokens that a real Dovecot validates (as Gmail would) — so
``mailtrek copy --source-service-account-key`` is tested from key file to copied mail.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import jwt
import pytest

from imap_helpers import dump, load, new_user
from mailtrek.devtools.dovecot import DovecotInstance, OAuthConfig, hmac_key_text
from test_cli_copy import mailtrek
from test_gmail_auth import DELEGATED, GMAIL_SCOPE, TokenEndpoint

ISSUER = "https://accounts.google.test"
SECRET = b"dovecot-and-the-token-endpoint-share-this"


class GoogleLikeEndpoint(TokenEndpoint):
    """Access tokens are JWTs the IMAP server can check locally."""

    def answer(self, form):  # type: ignore[no-untyped-def]
        status, body = super().answer(form)
        if status == 200:
            sub = self.requests[-1]["sub"]
            body["access_token"] = jwt.encode(
                {"iss": ISSUER, "sub": sub, "email": sub, "scope": GMAIL_SCOPE,
                 "exp": int(time.time()) + 600}, SECRET, algorithm="HS256")
        return status, body


@pytest.fixture(scope="module")
def workspace() -> Iterator[DovecotInstance]:
    oauth = OAuthConfig(issuer=ISSUER, scope=GMAIL_SCOPE,
                        keys={(None, "HS256", None): hmac_key_text(SECRET)})
    inst = DovecotInstance(Path(tempfile.mkdtemp(prefix="mt-gws-")), name="gws", oauth=oauth)
    inst.start()
    try:
        yield inst
    finally:
        inst.remove()


async def test_copy_with_a_service_account_key(workspace, dovecot_dst, tmp_path: Path) -> None:
    user = sorted(DELEGATED)[0]
    workspace.add_user(user, "not-used-for-xoauth2")
    await load(workspace, user, "not-used-for-xoauth2",
               [(("INBOX",), b"Subject: via delegation\r\n\r\nhi\r\n", frozenset({"\\Seen"}),
                 datetime(2024, 5, 5, tzinfo=UTC))])
    endpoint = GoogleLikeEndpoint(tmp_path)
    try:
        key = tmp_path / "sa.json"
        key.write_text(json.dumps(endpoint.info()))
        dst = new_user(dovecot_dst)
        r = mailtrek("copy", f"imap://{user.replace('@', '%40')}@127.0.0.1:{workspace.port}",
                     f"imap://{dst[0]}@127.0.0.1:{dovecot_dst.port}",
                     "--source-service-account-key", str(key),
                     "--source-ca-file", endpoint.ca_file, "--state", str(tmp_path / "s.db"),
                     env={"MAILTREK_DEST_PASSWORD": dst[1]})
        assert r.returncode == 0, r.stdout + r.stderr
        assert endpoint.requests and endpoint.requests[0]["sub"] == user  # delegated to the user
        assert await dump(dovecot_dst, *dst) == await dump(workspace, user, "not-used-for-xoauth2")
        assert "PRIVATE KEY" not in r.stdout + r.stderr
    finally:
        endpoint.server.shutdown()
        endpoint.server.server_close()
