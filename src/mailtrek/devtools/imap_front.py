"""What the test fronts share: a TCP server on 127.0.0.1 that relays to a Dovecot port.

A front (``GmailFront``, ``ExchangeFront``) adds one provider's behaviour on top of a real
Dovecot. This base opens the backend connection for each client, runs the front's two
relay directions until either ends, and closes both sides.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any, Self


class ImapFront:
    """Serve on a free loopback port; relay each client to ``host:backend_port``."""

    def __init__(self, host: str, backend_port: int) -> None:
        self.host, self.backend_port = host, backend_port
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> Self:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _relays(self, creader: asyncio.StreamReader, cwriter: asyncio.StreamWriter,
                sreader: asyncio.StreamReader, swriter: asyncio.StreamWriter
                ) -> tuple[Coroutine[Any, Any, None], Coroutine[Any, Any, None]]:
        """Return the (client -> server, server -> client) relays of one connection."""
        raise NotImplementedError

    async def _serve(self, creader: asyncio.StreamReader, cwriter: asyncio.StreamWriter) -> None:
        try:
            sreader, swriter = await asyncio.open_connection(self.host, self.backend_port)
        except OSError:
            cwriter.close()
            return
        tasks = [asyncio.create_task(c)
                 for c in self._relays(creader, cwriter, sreader, swriter)]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for t in tasks:
            t.cancel()
        for w in (swriter, cwriter):
            with contextlib.suppress(Exception):
                w.close()


def unquote(name: bytes) -> bytes:
    """Return an IMAP mailbox name without its quotes and escapes."""
    name = name.strip()
    if name.startswith(b'"') and name.endswith(b'"'):
        return name[1:-1].replace(b'\\"', b'"').replace(b"\\\\", b"\\")
    return name
