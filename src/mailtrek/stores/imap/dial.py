"""Open the stream an IMAP connection runs over: resolve, connect, TLS, one step at a time.

``ImapConnection.open`` dials through here, and so do ``endpoint test`` and discovery:
one socket path, whose steps are reported as they finish (``DialStep``, with their
time) to a hook, so diagnostics show DNS, TCP and TLS separately without a second
client. Errors are translated into mailtrek's (``translate``) and each failed step is
reported before it is raised.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mailtrek.errors import CertificateError, ConnectionFailedError

STREAM_LIMIT = 16 << 20  # longest line the reader takes in one piece


@dataclass(frozen=True, slots=True)
class DialStep:
    """One finished step of opening a connection: ``dns``, ``tcp`` or ``tls``.

    ``problem`` names why a step failed: ``resolve``, ``refused``, ``timeout``,
    ``unreachable``, ``certificate``, ``handshake`` or ``no-starttls``.
    """

    name: str
    ok: bool
    seconds: float
    addresses: tuple[str, ...] = ()  # dns: what the host resolves to, in order
    address: str | None = None  # tcp: the address that answered
    failures: tuple[str, ...] = ()  # tcp: "address:port: reason" for each that did not
    tls_version: str | None = None
    certificate: dict[str, Any] = field(default_factory=dict)  # the peer's, as getpeercert()
    starttls: bool = False
    problem: str | None = None
    error: Exception | None = None  # the translated error, its cause the original


StepHook = Callable[[DialStep], None]


def hostport(address: str, port: int) -> str:
    """``127.0.0.1:993``, ``[::1]:993``."""
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def reason(e: BaseException) -> str:
    """A short reason for a failed connect (``Connection refused``), without addresses."""
    if isinstance(e, TimeoutError):
        return "timed out"
    if isinstance(e, OSError) and e.errno:
        return os.strerror(e.errno)
    return str(e) or type(e).__name__


def tls_facts(writer: asyncio.StreamWriter, *, starttls: bool) -> dict[str, Any]:
    """The TLS version and peer certificate of ``writer``'s stream, for a ``tls`` step."""
    obj = writer.get_extra_info("ssl_object")
    if obj is None:
        return {"starttls": starttls}
    return {"tls_version": obj.version(), "certificate": obj.getpeercert() or {},
            "starttls": starttls}


async def dial(host: str, port: int, *, security: str, ctx: ssl.SSLContext | None,
               timeout: float, addresses: tuple[str, ...] = (),
               on_step: StepHook | None = None
               ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Resolve ``host`` (unless ``addresses`` are given), connect to the first address
    that answers, and do implicit TLS when ``security`` is ``ssl`` (checking ``host``).

    Reports each step to ``on_step``; raises ConnectionFailedError or CertificateError.
    """
    where = f"{host}:{port}"

    def report(step: DialStep) -> None:
        if on_step is not None:
            on_step(step)

    loop = asyncio.get_running_loop()
    t0 = time.monotonic()
    if addresses:
        infos = [await _numeric(loop, a, port) for a in addresses]
    else:
        try:
            found = await asyncio.wait_for(
                loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), timeout)
        except (OSError, TimeoutError) as e:
            err = translate(e, host, port, timeout)
            report(DialStep("dns", False, time.monotonic() - t0, problem="resolve", error=err))
            raise err from e
        seen: dict[str, tuple[int, Any]] = {}
        for fam, _, _, _, sockaddr in found:
            seen.setdefault(str(sockaddr[0]), (int(fam), sockaddr))
        infos = list(seen.items())
        report(DialStep("dns", True, time.monotonic() - t0, addresses=tuple(seen)))

    t0 = time.monotonic()
    failures: list[str] = []
    last: BaseException | None = None
    sock: socket.socket | None = None
    address = ""
    for address, (family, sockaddr) in infos:
        s = socket.socket(family, socket.SOCK_STREAM)
        s.setblocking(False)
        try:
            await asyncio.wait_for(loop.sock_connect(s, sockaddr), timeout)
        except (OSError, TimeoutError) as e:
            s.close()
            failures.append(f"{hostport(address, port)}: {reason(e)}")
            last = e
            continue
        sock = s
        break
    if sock is None:
        assert last is not None or not infos
        cause = last or OSError(f"no address for {where}")
        err = translate(cause, host, port, timeout)
        problem = ("refused" if isinstance(cause, ConnectionRefusedError)
                   else "timeout" if isinstance(cause, TimeoutError) else "unreachable")
        report(DialStep("tcp", False, time.monotonic() - t0, failures=tuple(failures),
                        problem=problem, error=err))
        raise err from cause
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    report(DialStep("tcp", True, time.monotonic() - t0, address=address,
                    failures=tuple(failures)))

    t0 = time.monotonic()
    try:
        if security != "ssl":
            return await asyncio.open_connection(sock=sock, limit=STREAM_LIMIT)
        assert ctx is not None
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(sock=sock, ssl=ctx, server_hostname=host,
                                    ssl_handshake_timeout=timeout, limit=STREAM_LIMIT),
            timeout)
    except BaseException as e:
        sock.close()
        err = translate(e, host, port, timeout)
        if security == "ssl":
            report(DialStep("tls", False, time.monotonic() - t0, problem=tls_problem(e),
                            error=err))
        raise err from e
    report(DialStep("tls", True, time.monotonic() - t0, **tls_facts(writer, starttls=False)))
    return reader, writer


async def _numeric(loop: asyncio.AbstractEventLoop, address: str, port: int
                   ) -> tuple[str, tuple[int, Any]]:
    family, _, _, _, sockaddr = (await loop.getaddrinfo(
        address, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST))[0]
    return address, (family, sockaddr)


def tls_problem(e: BaseException) -> str:
    """``certificate`` for an untrusted certificate, else ``handshake``."""
    return "certificate" if isinstance(e, ssl.SSLCertVerificationError) else "handshake"


def translate(e: BaseException, host: str, port: int, timeout: float) -> Exception:
    """Turn a lower-layer connect error into mailtrek's (re-raises cancellation)."""
    where = f"{host}:{port}"
    if isinstance(e, ssl.SSLCertVerificationError):
        return CertificateError(
            f"the certificate of {where} is not trusted: {e.verify_message}",
            hint="pass the server's CA with --ca-file, or fix the server's certificate",
        )
    if isinstance(e, ssl.SSLError):
        return ConnectionFailedError(
            f"TLS handshake with {where} failed: {e.reason or e}",
            hint="check the security setting (ssl on 993, starttls on 143)",
        )
    if isinstance(e, socket.gaierror):
        return ConnectionFailedError(f"cannot resolve host {host!r}", hint="check the name")
    if isinstance(e, ConnectionRefusedError):
        return ConnectionFailedError(f"{where} refused the connection",
                                     hint="check the host and port")
    if isinstance(e, (TimeoutError, asyncio.TimeoutError)):
        return ConnectionFailedError(f"no answer from {where} within {timeout:.0f} s",
                                     hint="check the host, port and firewall")
    if isinstance(e, OSError):
        return ConnectionFailedError(f"cannot connect to {where}: {e.strerror or e}")
    if isinstance(e, Exception):
        return ConnectionFailedError(f"cannot connect to {where}: {e}")
    raise e
