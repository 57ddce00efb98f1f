"""One way to build a DNS resolver (dnspython): the system's, or one given name server."""

from __future__ import annotations

from typing import Any

import dns.exception
import dns.resolver


def resolver_for(nameserver: str | None, timeout: float = 5.0) -> dns.resolver.Resolver:
    """Return a resolver; ``nameserver`` is ``IP`` or ``IP:PORT`` (``[v6]:PORT`` too)."""
    if not nameserver:
        r = dns.resolver.Resolver()
    else:
        r = dns.resolver.Resolver(configure=False)
        host, port = nameserver, 53
        if nameserver.startswith("["):
            host, _, rest = nameserver[1:].partition("]")
            port = int(rest[1:]) if rest.startswith(":") else 53
        elif nameserver.count(":") == 1:
            host, port_text = nameserver.split(":")
            port = int(port_text)
        r.nameservers = [host]
        r.port = port
    r.lifetime = timeout
    r.timeout = timeout
    return r


def query(resolver: dns.resolver.Resolver, name: str, rtype: str) -> tuple[list[Any], str | None]:
    """Return ``name``'s ``rtype`` records, or no records and the reason (never raises)."""
    try:
        return list(resolver.resolve(name, rtype)), None
    except dns.resolver.NXDOMAIN:
        return [], f"{name} does not exist"
    except dns.resolver.NoAnswer:
        return [], f"no {rtype} record for {name}"
    except dns.resolver.NoNameservers:
        return [], f"no name server answered for {name} {rtype}"
    except dns.exception.Timeout:
        return [], f"DNS timeout for {name} {rtype}"
    except dns.exception.DNSException as e:
        return [], f"DNS error for {name} {rtype}: {e.__class__.__name__}: {e}"
