"""Let `copy` and `verify` use a stored endpoint or tenant instead of URLs and env secrets.

``--endpoint NAME`` turns a bare SOURCE user name into the stored endpoint's address (host,
port, security, CA file); ``--dest-endpoint NAME`` does the same for DEST; ``--tenant NAME``
gives an ``m365://`` DEST the stored app registration (secret decrypted from the home).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from mailtrek.errors import UsageError

SCHEME = {"ssl": "imaps", "starttls": "imap+starttls", "none": "imap"}


@dataclass(slots=True)
class Resolved:
    """The addresses to open and what the stored objects add to them."""

    source: str
    dest: str
    source_ca: Path | None = None
    dest_ca: Path | None = None
    tenant: Any = None  # stores.m365.TenantConfig from a stored tenant


def endpoint_address(ep: Any, user: str) -> str:
    """Return the IMAP address of ``user`` on the stored endpoint ``ep``."""
    if "://" in user:
        raise UsageError(f"with a stored endpoint, give a user name, not an address: {user!r}",
                         hint=f"for example `alice` instead of imaps://alice@{ep.host}")
    return f"{SCHEME[ep.security]}://{quote(user, safe='')}@{ep.host}:{ep.port}"


def resolve(source: str, dest: str, *, endpoint: str | None, dest_endpoint: str | None,
            tenant: str | None, home: Path | None) -> Resolved:
    """Return the addresses and settings for ``copy``/``verify``; unchanged without stored names."""
    r = Resolved(source, dest)
    if not (endpoint or dest_endpoint or tenant):
        return r
    from mailtrek.orchestrate.endpoints import get_endpoint, get_tenant
    from mailtrek.orchestrate.home import open_home

    h = open_home(home)
    if endpoint:
        ep = get_endpoint(h, endpoint)
        if ep.uses_service_account:
            raise UsageError(f"endpoint {endpoint} logs in with a service account",
                             hint="use --source-service-account-key with an imaps:// address")
        r.source = endpoint_address(ep, source)
        r.source_ca = Path(ep.ca_file) if ep.ca_file else None
    if dest_endpoint and tenant:
        raise UsageError("give --dest-endpoint or --tenant, not both")
    if dest_endpoint:
        ep = get_endpoint(h, dest_endpoint)
        r.dest = endpoint_address(ep, dest)
        r.dest_ca = Path(ep.ca_file) if ep.ca_file else None
    if tenant:
        from mailtrek.orchestrate.specs import tenant_config
        from mailtrek.secrets import remember

        if not dest.startswith(("m365://", "m365+imap://")):
            r.dest = f"m365://{dest}"
        cfg = tenant_config(h, get_tenant(h, tenant))
        remember(cfg.client_secret)
        r.tenant = cfg
    return r
