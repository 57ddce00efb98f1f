"""A local DNS server for tests (dnslib): a mutable zone on 127.0.0.1, high port."""

from __future__ import annotations

import threading

from dnslib import QTYPE, RR
from dnslib.server import BaseResolver, DNSLogger, DNSServer


class Zone(BaseResolver):
    """A mutable zone; unknown names get an empty answer (NOERROR), as from a real server."""

    def __init__(self) -> None:
        self.records: dict[tuple[str, str], list] = {}
        self.lock = threading.Lock()

    def set(self, name: str, rtype: str, rdatas: list) -> None:
        with self.lock:
            self.records[name.rstrip(".").lower(), rtype] = rdatas

    def resolve(self, request, handler):
        reply = request.reply()
        q = request.q
        name = str(q.qname).rstrip(".").lower()
        with self.lock:
            found = self.records.get((name, QTYPE[q.qtype]), [])
        for rdata in found:
            reply.add_answer(RR(q.qname, q.qtype, rdata=rdata, ttl=60))
        return reply


def start_dns(zone: Zone) -> tuple[DNSServer, str]:
    """Start a DNS server on 127.0.0.1; return it and its "IP:PORT"."""
    quiet = DNSLogger(log="-request,-reply,-truncated,-error,-recv,-send,-data", prefix=False)
    server = DNSServer(zone, address="127.0.0.1", port=0, logger=quiet)
    server.start_thread()
    return server, f"127.0.0.1:{server.server.server_address[1]}"

