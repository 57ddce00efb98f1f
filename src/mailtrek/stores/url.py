"""Store addresses as users write them, and opening the store they name.

    imaps://USER@HOST[:PORT]          IMAP over TLS (993)
    imap+starttls://USER@HOST[:PORT]  IMAP with STARTTLS (143)
    imap://USER@HOST[:PORT]           plain IMAP (143): only when asked
    m365://USER@DOMAIN                Microsoft 365 over Graph
    m365+imap://USER@DOMAIN           Microsoft 365 over IMAP with XOAUTH2

USER is URL-encoded (``alice%40example.com``). Query options for IMAP:
``?auth=plain|login|xoauth2|oauthbearer`` and ``?authzid=MAILBOX`` (open MAILBOX with
an admin's credentials, SASL PLAIN). Passwords never appear in an address.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

from mailtrek.errors import UsageError

_IMAP = {"imaps": ("ssl", 993), "imap+starttls": ("starttls", 143), "imap": ("none", 143)}
_M365 = ("m365", "m365+imap")
_AUTH = ("login", "plain", "xoauth2", "oauthbearer")


@dataclass(frozen=True, slots=True)
class StoreAddress:
    """A parsed store address."""

    scheme: str
    user: str
    host: str
    port: int
    security: str  # ssl, starttls, none; "" for m365
    auth: str = "login"
    authzid: str | None = None

    @property
    def is_imap(self) -> bool:
        return self.scheme in _IMAP

    @property
    def is_m365(self) -> bool:
        return self.scheme in _M365

    def display(self) -> str:
        """The address without secrets, for logs, reports and state keys."""
        if self.is_m365:
            return f"{self.scheme}://{self.user}"
        who = f"{self.authzid} (as {self.user})" if self.authzid else self.user
        return f"{self.scheme}://{who}@{self.host}:{self.port}"


def parse_address(text: str) -> StoreAddress:
    """Parse a store address. Raises UsageError saying what is wrong."""
    try:
        parts = urlsplit(text)
    except ValueError as e:
        raise UsageError(f"cannot read address {text!r}: {e}") from e
    scheme = parts.scheme.lower()
    if scheme not in _IMAP and scheme not in _M365:
        raise UsageError(
            f"unknown address scheme {parts.scheme!r} in {text!r}",
            hint="use imaps://USER@HOST, imap+starttls://USER@HOST, imap://USER@HOST or "
                 "m365://USER@DOMAIN",
        )
    if parts.password is not None:
        raise UsageError("do not put a password in the address",
                         hint="use --source-password-file/--dest-password-file or the "
                              "MAILTREK_SOURCE_PASSWORD/MAILTREK_DEST_PASSWORD variables")
    netloc = parts.netloc
    if "@" not in netloc:
        raise UsageError(f"the address {text!r} names no user", hint="write USER@HOST")
    user_enc, _, hostport = netloc.rpartition("@")
    user = unquote(user_enc)
    if not user:
        raise UsageError(f"the address {text!r} names no user")
    if scheme in _M365:
        # m365://alice@contoso.com : the whole thing is the mailbox address.
        host = hostport
        if not host:
            raise UsageError(f"the address {text!r} names no domain")
        mailbox = user if "@" in user else f"{user}@{host}"
        return StoreAddress(scheme, mailbox, host, 993 if scheme == "m365+imap" else 443, "")
    security, default_port = _IMAP[scheme]
    host = parts.hostname or ""
    if not host:
        raise UsageError(f"the address {text!r} names no host")
    try:
        port = parts.port or default_port
    except ValueError as e:
        raise UsageError(f"bad port in {text!r}") from e
    q = parse_qs(parts.query)
    auth = (q.get("auth", ["login"])[0] or "login").lower()
    if auth not in _AUTH:
        raise UsageError(f"unknown auth {auth!r}", hint="use " + ", ".join(_AUTH))
    authzid = q.get("authzid", [None])[0]
    return StoreAddress(scheme, user, host, port, security, auth, authzid)
