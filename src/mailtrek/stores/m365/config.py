"""Tenant settings for the Microsoft 365 destination: who we are and where to ask.

A ``TenantConfig`` names the app registration (tenant, client id, secret or certificate)
and, for tests and sovereign clouds, where the identity and Graph endpoints live and which
CA file verifies them. The secret is kept out of ``repr`` so that it never reaches a log.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from mailtrek.errors import ConfigError

DEFAULT_AUTHORITY_HOST = "https://login.microsoftonline.com"
DEFAULT_GRAPH_URL = "https://graph.microsoft.com"

ENV_TENANT_ID = "MAILTREK_M365_TENANT_ID"
ENV_CLIENT_ID = "MAILTREK_M365_CLIENT_ID"
ENV_CLIENT_SECRET = "MAILTREK_M365_CLIENT_SECRET"
ENV_CERT_PATH = "MAILTREK_M365_CERT_PATH"  # PEM holding the private key and certificate
ENV_CERT_KEY_PATH = "MAILTREK_M365_CERT_KEY_PATH"  # optional separate private key PEM
ENV_CERT_PASSPHRASE = "MAILTREK_M365_CERT_PASSPHRASE"
ENV_AUTHORITY = "MAILTREK_M365_AUTHORITY"
ENV_GRAPH_URL = "MAILTREK_M365_GRAPH_URL"
ENV_CA_FILE = "MAILTREK_M365_CA_FILE"


@dataclass(frozen=True)
class TenantConfig:
    """One app registration in one tenant.

    Exactly one of ``client_secret`` and ``cert_path`` must be set. ``authority`` is the
    full authority URL (``https://host/TENANT``); when None it is
    ``https://login.microsoftonline.com/{tenant_id}``. ``graph_url`` is the Graph root
    without the version (``https://graph.microsoft.com``).
    """

    tenant_id: str
    client_id: str
    client_secret: str | None = field(default=None, repr=False)
    cert_path: Path | None = None
    cert_key_path: Path | None = None  # when the key is not in cert_path
    cert_passphrase: str | None = field(default=None, repr=False)
    authority: str | None = None
    graph_url: str = DEFAULT_GRAPH_URL
    ca_file: Path | None = None

    def __post_init__(self) -> None:
        if not self.tenant_id or not self.client_id:
            raise ConfigError("The Microsoft 365 tenant id and client id are required",
                              hint=f"set {ENV_TENANT_ID} and {ENV_CLIENT_ID}")
        if bool(self.client_secret) == bool(self.cert_path):
            raise ConfigError(
                "Give either a client secret or a certificate for the Microsoft 365 app, not both"
                if self.client_secret else
                "The Microsoft 365 app needs a client secret or a certificate",
                hint=f"set {ENV_CLIENT_SECRET} or {ENV_CERT_PATH}")
        for name, url in (("authority", self.authority), ("graph URL", self.graph_url)):
            if url is not None and urlsplit(url).scheme != "https":
                raise ConfigError(f"The Microsoft 365 {name} must be an https:// URL: {url}")
        if self.ca_file is not None and not Path(self.ca_file).is_file():
            raise ConfigError(f"CA file not found: {self.ca_file}")

    @property
    def authority_url(self) -> str:
        """Return the authority MSAL talks to."""
        return (self.authority or f"{DEFAULT_AUTHORITY_HOST}/{self.tenant_id}").rstrip("/")

    @property
    def is_microsoft_authority(self) -> bool:
        """True when the authority is Microsoft's own (instance discovery works there)."""
        host = (urlsplit(self.authority_url).hostname or "").lower()
        return host.endswith((".microsoftonline.com", ".microsoftonline.us",
                              ".chinacloudapi.cn", ".microsoftonline.de"))

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: object) -> TenantConfig:
        """Build the config from ``MAILTREK_M365_*`` variables; ``overrides`` win when not None.

        Raises ConfigError naming the missing variable.
        """
        env = dict(os.environ if env is None else env)

        def path(name: str) -> Path | None:
            return Path(env[name]) if env.get(name) else None

        values: dict[str, object] = {
            "tenant_id": env.get(ENV_TENANT_ID, ""),
            "client_id": env.get(ENV_CLIENT_ID, ""),
            "client_secret": env.get(ENV_CLIENT_SECRET) or None,
            "cert_path": path(ENV_CERT_PATH),
            "cert_key_path": path(ENV_CERT_KEY_PATH),
            "cert_passphrase": env.get(ENV_CERT_PASSPHRASE) or None,
            "authority": env.get(ENV_AUTHORITY) or None,
            "graph_url": env.get(ENV_GRAPH_URL) or DEFAULT_GRAPH_URL,
            "ca_file": path(ENV_CA_FILE),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        if values.get("cert_path") and "client_secret" not in overrides:
            values["client_secret"] = None  # an explicit certificate beats an env secret
        return cls(**values)  # type: ignore[arg-type]
