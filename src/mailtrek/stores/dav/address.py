"""``dav+https://USER@HOST[:PORT]/[PATH]`` (and ``dav+http://``): one DAV account."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from mailtrek.errors import UsageError

SCHEMES = {"dav+https": "https", "dav+http": "http"}


def is_dav_address(text: str) -> bool:
    """True when ``text`` names a DAV account (so the PIM commands take it)."""
    return text.lower().startswith(tuple(f"{s}://" for s in SCHEMES))


@dataclass(frozen=True, slots=True)
class DavAddress:
    """A DAV account: where the server is, who logs in, and an optional start path."""

    scheme: str  # "https" or "http"
    user: str
    host: str
    port: int
    path: str  # "/" when none was given: discovery starts at /.well-known

    @property
    def origin(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return f"{self.scheme}://{host}" + ("" if self.port == default else f":{self.port}")

    def display(self) -> str:
        """The address as the user wrote it, without any password."""
        rest = self.origin.split("://", 1)[1]
        return f"dav+{self.scheme}://{self.user}@{rest}{self.path}"


def parse_dav_address(text: str) -> DavAddress:
    """Parse a ``dav+http(s)://`` address; UsageError (never echoing a password) when bad."""
    parts = urlsplit(text.strip())
    scheme = SCHEMES.get(parts.scheme.lower())
    if scheme is None:
        raise UsageError("a DAV address starts with dav+https:// or dav+http://")
    if parts.password is not None:
        raise UsageError("put no password in the address: use MAILTREK_SOURCE_PASSWORD, "
                         "MAILTREK_DEST_PASSWORD or a password file")
    if not parts.username or not parts.hostname:
        raise UsageError(f"a DAV address needs USER@HOST: {scheme}://USER@HOST[:PORT]/[PATH]")
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError as e:
        raise UsageError(f"bad port in DAV address: {e}") from None
    path = parts.path or "/"
    return DavAddress(scheme, unquote(parts.username), parts.hostname, port,
                      path if path.endswith("/") else path + "/")
