"""Find a domain's CalDAV/CardDAV server in DNS (RFC 6764 §3, RFC 2782).

``_caldavs._tcp.DOMAIN`` / ``_carddavs._tcp.DOMAIN`` SRV records name the TLS server and
port; a TXT record at the same name may carry ``path=/context/path`` (RFC 6764 §4).
The non-TLS services (``_caldav._tcp``, ``_carddav._tcp``) are looked at only when plain
HTTP is allowed (the address said ``dav+http://``), and always rank below TLS. A target
of ``.`` means the domain says it offers no such service (RFC 2782). Lookup trouble
(no record, timeout) is an empty answer with a note: the caller goes on to
``/.well-known`` as before. The answers are not DNSSEC-validated, so an answer only
changes where mailtrek connects; TLS still verifies the target's certificate.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mailtrek.pim.model import Kind
from mailtrek.resolver import query, resolver_for

SERVICES: dict[Kind, tuple[str, str]] = {"calendar": ("_caldavs._tcp", "_caldav._tcp"),
                                         "contacts": ("_carddavs._tcp", "_carddav._tcp")}


@dataclass(frozen=True, slots=True)
class DnsSettings:
    """How DAV discovery asks DNS: ``nameserver`` ``IP[:PORT]`` (None: the system's)."""

    nameserver: str | None = None
    timeout: float = 5.0
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class SrvTarget:
    """One SRV answer: where the service is, and the context path its TXT record gives."""

    service: str  # the queried name, e.g. "_caldavs._tcp.example.com"
    scheme: str  # "https" or "http"
    host: str
    port: int
    path: str | None  # TXT "path=" value; None: start at /.well-known on the target


def is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def txt_path(answers: Sequence[Any]) -> str | None:
    """The ``path=`` value of TXT answers (RFC 6764 §4), or None."""
    for a in answers:
        text = b"".join(getattr(a, "strings", ())).decode("utf-8", "replace").strip()
        if text.startswith("path="):
            path = text[5:].strip()
            return path if path.startswith("/") else "/" + path
    return None


def lookup_sync(domain: str, kinds: Sequence[Kind], *, allow_plain: bool,
                settings: DnsSettings) -> tuple[list[SrvTarget], list[str]]:
    """Return the SRV targets for ``kinds`` on ``domain`` (TLS first, then the kinds'
    order, priority and weight) and notes on what was asked. Never raises for DNS trouble."""
    resolver = resolver_for(settings.nameserver, timeout=settings.timeout)
    found: list[tuple[int, int, int, SrvTarget]] = []
    notes: list[str] = []
    for order, kind in enumerate(kinds):
        tls, plain = SERVICES[kind]
        for rank, (service, scheme) in enumerate(((tls, "https"), (plain, "http"))):
            if scheme == "http" and not allow_plain:
                continue
            name = f"{service}.{domain}"
            answers, why = query(resolver, name, "SRV")
            if why:
                notes.append(f"SRV {name}: nothing ({why})")
                continue
            txt, _ = query(resolver, name, "TXT")
            path = txt_path(txt)
            for a in answers:
                target = str(a.target).rstrip(".")
                if not target:
                    notes.append(f"SRV {name}: the domain says there is no such service")
                    continue
                found.append((rank, order, int(a.priority) * 65536 - int(a.weight),
                              SrvTarget(name, scheme, target, int(a.port), path)))
                notes.append(f"SRV {name}: {target}:{a.port}" + (f" path={path}" if path else ""))
    found.sort(key=lambda f: f[:3])
    return [f[3] for f in found], notes


async def lookup(domain: str, kinds: Sequence[Kind], *, allow_plain: bool,
                 settings: DnsSettings) -> tuple[list[SrvTarget], list[str]]:
    """:func:`lookup_sync` in a thread (dnspython's resolver blocks); nothing for an IP
    literal, ``localhost`` or disabled settings."""
    if not settings.enabled or is_ip_literal(domain) or domain.lower() == "localhost":
        return [], []
    return await asyncio.to_thread(lookup_sync, domain, kinds, allow_plain=allow_plain,
                                   settings=settings)
