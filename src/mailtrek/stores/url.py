"""Store addresses as users write them, and the store spec each one names.

    imaps://USER@HOST[:PORT]          IMAP over TLS (993)
    imap+starttls://USER@HOST[:PORT]  IMAP with STARTTLS (143)
    imap://USER@HOST[:PORT]           plain IMAP (143): only when asked
    m365://USER@DOMAIN                Microsoft 365 over Graph
    m365+imap://USER@DOMAIN           Microsoft 365 over IMAP with XOAUTH2

USER is URL-encoded (``alice%40example.com``). Query options for IMAP:
``?auth=plain|login|xoauth2|oauthbearer`` and ``?authzid=MAILBOX`` (open MAILBOX with
an admin's credentials, SASL PLAIN). Passwords never appear in an address.
``dav+https://USER@HOST[:PORT]/[PATH]`` names a contacts-and-calendars account
(:mod:`mailtrek.stores.dav.address`) and ``memory://NAME`` an in-memory mailbox.

:func:`address_spec` turns an address and the secrets given beside it
(:class:`OpenOptions`) into a :mod:`~mailtrek.stores.spec`; the registry opens it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, unquote, urlsplit

from mailtrek.errors import UsageError
from mailtrek.stores.spec import (
    DavSpec,
    GraphPimSpec,
    GraphSpec,
    ImapSpec,
    MemorySpec,
    StoreSpec,
    TokenFn,
)

if TYPE_CHECKING:
    from mailtrek.stores.m365.config import TenantConfig

_IMAP = {"imaps": ("ssl", 993), "imap+starttls": ("starttls", 143), "imap": ("none", 143)}
_M365 = ("m365", "m365+imap")
_AUTH = ("login", "plain", "xoauth2", "oauthbearer")
M365_IMAP_HOST = "outlook.office365.com"
GRAPH_MAX_MESSAGE_SIZE = 150 * 1024 * 1024  # Exchange Online's ceiling


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


@dataclass(slots=True)
class OpenOptions:
    """Everything besides the address that opening a store needs."""

    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)  # a given OAuth access token
    google_sa_key: str | None = None  # Workspace service-account key (domain-wide delegation)
    ca_file: str | None = None
    connections: int = 4
    readonly: bool = True
    label: str = "store"
    # Microsoft 365: a stored tenant, or MAILTREK_M365_* with these overrides
    tenant: TenantConfig | None = None
    m365_authority: str | None = None
    graph_url: str | None = None
    m365_imap_host: str | None = None  # HOST[:PORT]; tests point this at a local server
    dest_root: tuple[str, ...] = ()
    max_size: int | None = None
    # m365 and m365+imap: rename Disposition-Notification-To so Outlook sends no read
    # receipts for migrated mail (``mailtrek copy --keep-read-receipts`` turns this off).
    disarm_read_receipts: bool = True


def address_spec(text: str, opts: OpenOptions) -> StoreSpec:
    """Return the spec of the store the address ``text`` names (any scheme).

    Raises UsageError for unknown schemes and missing secrets, ConfigError for missing
    Microsoft 365 tenant settings.
    """
    from mailtrek.stores.dav.address import is_dav_address, parse_dav_address

    if is_dav_address(text):
        if opts.password is None:
            raise UsageError(f"no password for {text}")
        return DavSpec(address=parse_dav_address(text), password=opts.password,
                       ca_file=opts.ca_file, connections=opts.connections, label=opts.label)
    if text.lower().startswith("memory://"):
        name = text[len("memory://"):].strip("/")
        if not name:
            raise UsageError(f"the address {text!r} names no mailbox", hint="write memory://NAME")
        return MemorySpec(name=name, label=opts.label)
    return spec_for(parse_address(text), opts)


def pim_spec(text: str, opts: OpenOptions) -> DavSpec | GraphPimSpec:
    """Return the spec of the contacts-and-calendars store ``text`` names.

    ``dav+https://`` (or ``dav+http://``) is a DAV account, ``m365://USER@DOMAIN`` a
    Microsoft 365 mailbox over Graph (tenant as for mail). Raises UsageError otherwise.
    """
    from mailtrek.stores.dav.address import is_dav_address

    if is_dav_address(text):
        spec = address_spec(text, opts)
        assert isinstance(spec, DavSpec)
        return spec
    addr = parse_address(text)
    if addr.scheme != "m365":
        raise UsageError("contacts and calendars go to a dav+https:// account or to Microsoft 365 "
                         "through Graph: m365://USER@DOMAIN"
                         + (" (not m365+imap://)" if addr.scheme == "m365+imap" else ""))
    return GraphPimSpec(mailbox=addr.user, tenant=opts.tenant or _tenant_from_env(opts),
                        label=opts.label)


def spec_for(addr: StoreAddress, opts: OpenOptions) -> ImapSpec | GraphSpec:
    """Return the spec of the mail store ``addr`` names, with the secrets in ``opts``."""
    if addr.is_imap:
        return _imap(addr, opts)
    tenant = opts.tenant or _tenant_from_env(opts)
    if addr.scheme == "m365+imap":
        from mailtrek.stores.m365 import OUTLOOK_SCOPE, TokenSource

        tokens = TokenSource(tenant)

        async def token() -> str:
            return await tokens.get_token(OUTLOOK_SCOPE)

        host, _, port = (opts.m365_imap_host or M365_IMAP_HOST).partition(":")
        return ImapSpec(host=host, port=int(port or 993), security="ssl", user=addr.user,
                        mechanism="xoauth2", token=token, ca_file=opts.ca_file,
                        connections=opts.connections, readonly=opts.readonly, exchange=True,
                        disarm_read_receipts=opts.disarm_read_receipts, label=opts.label)
    from mailtrek.stores.m365 import GraphOptions

    graph = GraphOptions(dest_root=opts.dest_root, disarm_read_receipts=opts.disarm_read_receipts)
    if opts.max_size:
        graph = replace(graph, max_message_size=min(int(opts.max_size), GRAPH_MAX_MESSAGE_SIZE))
    return GraphSpec(mailbox=addr.user, tenant=tenant, options=graph, label=opts.label)


def _tenant_from_env(opts: OpenOptions) -> TenantConfig:
    from mailtrek.stores.m365 import TenantConfig

    return TenantConfig.from_env(authority=opts.m365_authority, graph_url=opts.graph_url,
                                 ca_file=Path(opts.ca_file) if opts.ca_file else None)


def _imap(addr: StoreAddress, opts: OpenOptions) -> ImapSpec:
    mech = addr.auth
    token_fn: TokenFn | None = None
    if opts.google_sa_key:
        from mailtrek.stores.gmail.auth import ServiceAccountTokens, load_key

        mech = "xoauth2"
        token_fn = ServiceAccountTokens(load_key(Path(opts.google_sa_key)),
                                        ca_file=opts.ca_file).for_user(addr.user)
    elif mech in ("xoauth2", "oauthbearer"):
        if not opts.token:
            raise UsageError(f"{addr.display()} uses {mech} but no access token was given",
                             hint="pass --source-token-file/--dest-token-file")
        given = opts.token

        async def given_token() -> str:
            return given

        token_fn = given_token
    elif opts.password is None:
        raise UsageError(f"no password for {addr.display()}",
                         hint="use --source-password-file/--dest-password-file or "
                              "MAILTREK_SOURCE_PASSWORD/MAILTREK_DEST_PASSWORD")
    if addr.authzid and mech == "login":
        mech = "plain"
    return ImapSpec(host=addr.host, port=addr.port, security=addr.security, user=addr.user,
                    password=opts.password, mechanism=mech, authzid=addr.authzid,
                    token=token_fn, ca_file=opts.ca_file, connections=opts.connections,
                    readonly=opts.readonly, label=opts.label)
