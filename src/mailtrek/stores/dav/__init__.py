"""CalDAV/CardDAV store (RFC 4791, RFC 6352): source and destination of contacts and calendars.

``address`` parses ``dav+https://USER@HOST[:PORT]/[PATH]``; ``xml`` builds request bodies and
reads multistatus answers; ``client`` is the one path to the wire (httpx); ``discovery``
finds the homes (RFC 6764); ``store`` is the ``PimDestination`` the PIM sync talks to.
``DavStore`` is imported on first use: telling a DAV address apart loads no HTTP client.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mailtrek.stores.dav.address import DavAddress, is_dav_address, parse_dav_address

if TYPE_CHECKING:
    from mailtrek.stores.dav.store import DavStore

__all__ = ["DavAddress", "DavStore", "is_dav_address", "parse_dav_address"]


def __getattr__(name: str) -> object:
    if name == "DavStore":
        from mailtrek.stores.dav.store import DavStore

        return DavStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
