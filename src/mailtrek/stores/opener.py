"""Open the store an address names, with its secrets and TLS settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mailtrek.errors import UsageError
from mailtrek.stores.imap.choice import imap_store
from mailtrek.stores.imap.connection import ConnectParams, Credentials
from mailtrek.stores.imap.store import ImapSettings, ImapStore
from mailtrek.stores.url import StoreAddress

M365_IMAP_HOST = "outlook.office365.com"


@dataclass(slots=True)
class OpenOptions:
    """Everything besides the address that opening a store needs."""

    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)  # a given OAuth access token
    google_sa_key: str | None = None  # Workspace service-account key (domain-wide delegation)
    ca_file: str | None = None
    connections: int = 4
    readonly: bool = True
    # Microsoft 365
    tenant: Any = None  # stores.m365.TenantConfig
    m365_imap_host: str = M365_IMAP_HOST  # tests point this at a local server
    m365_imap_port: int = 993
    m365_imap_security: str = "ssl"
    graph_options: Any = None
    # m365+imap: rename Disposition-Notification-To so Outlook sends no read receipts for
    # migrated mail (``mailtrek copy --keep-read-receipts`` turns this off).
    disarm_read_receipts: bool = True
    label: str = "store"


def open_store(addr: StoreAddress, opts: OpenOptions) -> Any:
    """Return an unconnected store for ``addr``. Raises UsageError for missing secrets."""
    if addr.is_imap:
        return _imap(addr, opts)
    if opts.tenant is None:
        raise UsageError(
            f"{addr.display()} needs Microsoft 365 tenant settings",
            hint="set MAILTREK_M365_TENANT_ID, MAILTREK_M365_CLIENT_ID and "
                 "MAILTREK_M365_CLIENT_SECRET (or a certificate)",
        )
    if addr.scheme == "m365+imap":
        from mailtrek.stores.m365 import OUTLOOK_SCOPE, TokenSource

        tokens = TokenSource(opts.tenant)

        async def token() -> str:
            return await tokens.get_token(OUTLOOK_SCOPE)

        params = ConnectParams(opts.m365_imap_host, opts.m365_imap_port, opts.m365_imap_security,
                               ca_file=opts.ca_file)
        creds = Credentials(addr.user, mechanism="xoauth2", token=token)
        return imap_store(ImapSettings(params, creds, connections=opts.connections,
                                       readonly=opts.readonly, exchange=True,
                                       disarm_read_receipts=opts.disarm_read_receipts),
                          label=opts.label)
    from mailtrek.stores.m365 import open_graph_store

    return open_graph_store(addr.user, opts.tenant, options=opts.graph_options)


def _imap(addr: StoreAddress, opts: OpenOptions) -> ImapStore:
    mech = addr.auth
    token_fn = None
    if opts.google_sa_key:
        from pathlib import Path

        from mailtrek.stores.gmail.auth import ServiceAccountTokens, load_key

        mech = "xoauth2"
        token_fn = ServiceAccountTokens(load_key(Path(opts.google_sa_key)),
                                        ca_file=opts.ca_file).for_user(addr.user)
    elif mech in ("xoauth2", "oauthbearer"):
        if not opts.token:
            raise UsageError(f"{addr.display()} uses {mech} but no access token was given",
                             hint="pass --source-token-file/--dest-token-file")
        given = opts.token

        async def token_fn() -> str:
            return given
    elif opts.password is None:
        raise UsageError(f"no password for {addr.display()}",
                         hint="use --source-password-file/--dest-password-file or "
                              "MAILTREK_SOURCE_PASSWORD/MAILTREK_DEST_PASSWORD")
    if addr.authzid and mech == "login":
        mech = "plain"
    params = ConnectParams(addr.host, addr.port, addr.security, ca_file=opts.ca_file)
    creds = Credentials(addr.user, password=opts.password, mechanism=mech,
                        authzid=addr.authzid, token=token_fn)
    return ImapStore(ImapSettings(params, creds, connections=opts.connections,
                                  readonly=opts.readonly), label=opts.label)
