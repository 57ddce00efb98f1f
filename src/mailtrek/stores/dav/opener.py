"""Registry entry of the DAV store: build a ``DavStore`` from a ``DavSpec``."""

from __future__ import annotations

from mailtrek.stores.dav.srv import DnsSettings
from mailtrek.stores.dav.store import DavStore
from mailtrek.stores.registry import register
from mailtrek.stores.spec import DavSpec


def open_dav(spec: DavSpec) -> DavStore:
    """Return an unconnected CalDAV/CardDAV store for ``spec``."""
    return DavStore(spec.address, spec.password, ca_file=spec.ca_file,
                    connections=spec.connections, kinds=spec.kinds,  # type: ignore[arg-type]
                    token=spec.token,
                    dns=DnsSettings(nameserver=spec.nameserver) if spec.nameserver else None)


register(DavSpec.kind, open_dav)
