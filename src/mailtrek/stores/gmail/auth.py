"""XOAUTH2 for Google Workspace: a service account with domain-wide delegation.

The Workspace admin creates a service account, grants its client id the scope
``https://mail.google.com/`` under Security > API controls > Domain-wide delegation,
and gives mailtrek the account's JSON key. ``ServiceAccountTokens`` then signs a JWT
for each mailbox (``sub`` = the user), trades it for an access token with google-auth,
and refreshes it before it expires, so long runs keep logging in. Secrets (the private
key, tokens) are never logged or put into errors.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from mailtrek.errors import AuthenticationError, ConfigError, TransientError

GMAIL_SCOPE = "https://mail.google.com/"
DELEGATION_HINT = (
    "in the Google Admin console, Security > Access and data control > API controls > "
    "Domain-wide delegation, add the service account's client id with the scope "
    f"{GMAIL_SCOPE}")


def load_key(path: Path) -> dict[str, Any]:
    """Read a service-account JSON key. Raises ConfigError (without the key) if unusable."""
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot read the service-account key {path}: {e.__class__.__name__}"
                          ) from None
    if not isinstance(info, dict) or info.get("type") != "service_account" or not all(
            info.get(k) for k in ("client_email", "private_key", "token_uri")):
        raise ConfigError(f"{path} is not a Google service-account key",
                          hint="download a JSON key for the service account (IAM > Keys)")
    return info


class ServiceAccountTokens:
    """Access tokens for the mailboxes of one Workspace domain, one per user, refreshed.

    ``ca_file`` pins the CA for the token endpoint (tests; corporate TLS proxies).
    """

    def __init__(self, info: dict[str, Any], *, ca_file: str | None = None,
                 scopes: tuple[str, ...] = (GMAIL_SCOPE,)) -> None:
        self._info = info
        self._ca_file = ca_file
        self._scopes = scopes
        self._creds: dict[str, Any] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self.refreshes = 0  # token requests made (for tests and reports)

    def _session(self) -> Any:
        import requests

        s = requests.Session()
        # REQUESTS_CA_BUNDLE would override verify= otherwise (see testing.md).
        s.trust_env = False
        s.verify = self._ca_file or True
        return s

    def _credentials(self, user: str) -> Any:
        from google.oauth2 import service_account

        creds = self._creds.get(user)
        if creds is None:
            try:
                creds = service_account.Credentials.from_service_account_info(
                    self._info, scopes=list(self._scopes), subject=user)
            except (ValueError, KeyError) as e:
                raise ConfigError(f"the service-account key is unusable: {e.__class__.__name__}"
                                  ) from None
            self._creds[user] = creds
        return creds

    async def token(self, user: str) -> str:
        """Return a valid access token for ``user``, refreshing it when near expiry.

        Raises AuthenticationError when Google refuses the delegation (with the setting
        to change) and TransientError when the token endpoint cannot be reached.
        """
        lock = self._locks.setdefault(user, asyncio.Lock())
        async with lock:
            creds = self._credentials(user)
            if not creds.valid:  # google-auth counts a token as expired a few minutes early
                await asyncio.to_thread(self._refresh, creds, user)
                self.refreshes += 1
            return str(creds.token)

    def _refresh(self, creds: Any, user: str) -> None:
        from google.auth import exceptions
        from google.auth.transport.requests import Request

        session = self._session()
        try:
            creds.refresh(Request(session))
        except exceptions.RefreshError as e:
            reason = _reason(e)
            raise AuthenticationError(
                f"Google refused a token for {user}: {reason}",
                hint=DELEGATION_HINT if "unauthorized_client" in reason or
                "access_denied" in reason else "check that the user exists and is active",
            ) from None
        except exceptions.TransportError as e:
            raise TransientError(f"cannot reach Google's token endpoint: {e.__class__.__name__}"
                                 ) from None
        finally:
            session.close()

    def for_user(self, user: str) -> Callable[[], Awaitable[str]]:
        """Return the ``Credentials.token`` callable for ``user``'s IMAP logins."""

        async def get() -> str:
            return await self.token(user)

        return get


def _reason(e: Exception) -> str:
    """The error code Google gave, never the request (which holds the signed assertion)."""
    args = getattr(e, "args", ())
    for a in args:
        if isinstance(a, dict) and a.get("error"):
            return str(a.get("error")) + (f": {a['error_description']}"
                                          if a.get("error_description") else "")
    text = str(args[0]) if args else e.__class__.__name__
    return text.split(",")[0][:200]
