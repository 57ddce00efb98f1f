"""A TCP proxy for tests and benchmarks: adds round-trip time, cuts or stalls links.

Latency is a delay line, not a sleep per chunk: each chunk is stamped on arrival and
written at arrival + RTT/2, in order, so bandwidth is not reduced. The upstream connect
waits 1.5 × RTT so the greeting arrives 2 × RTT after ``connect()``, as over a real link.
Faults: ``cut_after`` ends the link after exactly N bytes from server to client,
``cut_upstream_after`` after N bytes from client to server (mid-APPEND); ``cut_mode``
"rst" resets, "fin" closes. ``stall_after`` turns the link into a black hole in both
directions after N server bytes, for ``stall_for`` seconds or for good. ``fault_conns``
limits faults to the first K connections. Listens on 127.0.0.1 only; each direction
buffers at most 64 MiB before it stops reading.

    python -m mailtrek.devtools.proxy --target 127.0.0.1:143 --rtt-ms 40
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Literal, TypeVar

__all__ = ["Proxy", "main"]

CutMode = Literal["rst", "fin"]
T = TypeVar("T")
CHUNK = 1 << 20  # bytes per read: per-chunk work, not per-byte, is what a proxy costs
MAX_BUFFER = 64 * 1024 * 1024
MAX_QUEUE_CHUNKS = MAX_BUFFER // CHUNK


@dataclass
class _Link:
    """Shared state of one proxied connection."""

    faulty: bool
    open: asyncio.Event = field(default_factory=asyncio.Event)  # cleared while stalled
    dead: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.open.set()


class Proxy:
    """A proxy on its own event loop in a background thread; sync and async callers alike.

    ``start()`` returns once listening (``.port`` set); ``stop()`` drops every link.
    ``connections`` counts accepted links, ``faults`` the cuts and stalls performed.
    """

    def __init__(
        self,
        target_host: str,
        target_port: int,
        *,
        rtt: float = 0.0,
        cut_after: int | None = None,
        cut_upstream_after: int | None = None,
        cut_mode: CutMode = "rst",
        stall_after: int | None = None,
        stall_for: float | None = None,
        fault_conns: int | None = None,
        handshake: bool = True,
    ) -> None:
        if rtt < 0 or any(
            v is not None and v < 0
            for v in (cut_after, cut_upstream_after, stall_after, stall_for, fault_conns)
        ):
            raise ValueError("proxy delays, byte counts and connection counts must be >= 0")
        self.target = (target_host, target_port)
        self.rtt = rtt
        self.cut_after = cut_after
        self.cut_upstream_after = cut_upstream_after
        self.cut_mode: CutMode = cut_mode
        self.stall_after = stall_after
        self.stall_for = stall_for
        self.fault_conns = fault_conns
        self.handshake = handshake
        self.port = 0
        self.connections = 0
        self.faults = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stopping: asyncio.Event | None = None
        self._error: BaseException | None = None

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> Proxy:
        """Start listening on a free port of 127.0.0.1; return self."""
        if self._thread is not None:
            return self
        self._thread = threading.Thread(target=self._run, name="mailtrek-proxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(10) or self._error is not None:
            raise RuntimeError(f"proxy did not start: {self._error}")
        return self

    def stop(self) -> None:
        """Stop listening and drop every link; safe to call twice."""
        loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stopping.set)
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None

    def __enter__(self) -> Proxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported to start(); the thread must not die silently
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        tasks: set[asyncio.Task[None]] = set()

        async def on_connect(cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            tasks.add(task)
            try:
                await self._handle(cr, cw)
            except asyncio.CancelledError:
                pass  # stop() drops the link; asyncio would log a cancelled handler as an error
            finally:
                tasks.discard(task)

        server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
        self.port = int(server.sockets[0].getsockname()[1])
        self._ready.set()
        async with server:
            await self._stopping.wait()
            server.close()
            for task in list(tasks):
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    # -- one link ----------------------------------------------------------------------
    async def _handle(self, cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        self.connections += 1
        link = _Link(faulty=self.fault_conns is None or self.connections <= self.fault_conns)
        sw: asyncio.StreamWriter | None = None
        try:
            if self.handshake and self.rtt:
                await asyncio.sleep(1.5 * self.rtt)
            try:
                sr, sw = await asyncio.open_connection(*self.target)
            except OSError:
                _reset(cw)
                return
            down = self._pipe(sr, cw, link, cut=self.cut_after, stall=self.stall_after)
            up = self._pipe(cr, sw, link, cut=self.cut_upstream_after, stall=None)
            await asyncio.gather(down, up)
        finally:
            for w in (cw, sw):
                if w is not None:
                    with contextlib.suppress(Exception):
                        w.close()

    async def _pipe(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        link: _Link,
        *,
        cut: int | None,
        stall: int | None,
    ) -> None:
        """Copy one direction through the delay line, applying this direction's faults."""
        if not link.faulty:
            cut = stall = None
        delay = self.rtt / 2
        queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue(MAX_QUEUE_CHUNKS)

        async def deliver() -> None:
            nonlocal stall
            sent = 0
            while (item := await queue.get()) is not None:
                due, data = item
                if (wait := due - time.monotonic()) > 0:
                    await asyncio.sleep(wait)
                if not link.open.is_set():
                    await link.open.wait()
                if cut is not None and sent + len(data) >= cut:
                    writer.write(data[: cut - sent])
                    with contextlib.suppress(OSError):
                        await writer.drain()
                    self.faults += 1
                    link.dead.set()
                    return
                if stall is not None and sent + len(data) >= stall:
                    head, data = data[: stall - sent], data[stall - sent :]
                    writer.write(head)
                    sent += len(head)
                    stall = None
                    self.faults += 1
                    link.open.clear()  # both directions stop forwarding
                    if self.stall_for is None:
                        await link.dead.wait()
                        return
                    await asyncio.sleep(self.stall_for)
                    link.open.set()
                writer.write(data)
                sent += len(data)
                await writer.drain()

        async def pump() -> None:
            while True:
                data = await reader.read(CHUNK)
                if not data:
                    if not link.open.is_set():  # the peer gave up on a stalled link
                        link.dead.set()
                    return
                await queue.put((time.monotonic() + delay, data))

        task = asyncio.create_task(deliver())
        try:
            # One watch over the whole stream (not one per chunk): it stops reading when
            # the link dies or the delivery ends first.
            await _unless_dead(link, pump(), task)
            await _unless_dead(link, queue.put(None), task)
            await _unless_dead(link, asyncio.shield(task), task)
            if task.done() and not task.cancelled() and task.exception() is not None:
                link.dead.set()  # the far side broke: break this side too
        except (OSError, ConnectionError):
            link.dead.set()
        finally:
            task.cancel()
            if link.dead.is_set():
                # A cut or a broken side ends both sides at once, as a broken link does.
                if self.cut_mode == "rst":
                    _reset(writer)
                else:
                    writer.close()
            else:
                with contextlib.suppress(OSError, RuntimeError):
                    if writer.can_write_eof():
                        writer.write_eof()


async def _unless_dead(link: _Link, aw: Awaitable[T], task: asyncio.Task[None]) -> T | None:
    """Await ``aw`` unless the link dies or the delivery task ends first (then None)."""
    work = asyncio.ensure_future(aw)
    dead = asyncio.ensure_future(link.dead.wait())
    try:
        await asyncio.wait({work, dead, task}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        dead.cancel()
    if work.done():
        return work.result()
    work.cancel()
    return None


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST, as a broken link does."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m mailtrek.devtools.proxy",
        description="TCP proxy on 127.0.0.1 that adds latency, cuts or stalls links.",
    )
    ap.add_argument("--target", required=True, help="HOST:PORT to forward to")
    ap.add_argument("--rtt-ms", type=float, default=0.0, help="round-trip time to add")
    ap.add_argument("--no-handshake", action="store_true", help="no 1.5×RTT connect delay")
    ap.add_argument("--cut-after-bytes", type=int, help="end link after N server bytes")
    ap.add_argument("--cut-upstream-after-bytes", type=int, help="... after N client bytes")
    ap.add_argument("--cut-mode", choices=("rst", "fin"), default="rst")
    ap.add_argument("--stall-after-bytes", type=int, help="black-hole after N server bytes")
    ap.add_argument("--stall-for", type=float, help="resume a stall after S seconds")
    ap.add_argument("--fault-conns", type=int, help="fault only the first K connections")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run a proxy until SIGINT/SIGTERM; print the listening port on the first line."""
    a = _parse_args(argv)
    host, _, port = a.target.rpartition(":")
    proxy = Proxy(
        host or "127.0.0.1",
        int(port),
        rtt=a.rtt_ms / 1000,
        cut_after=a.cut_after_bytes,
        cut_upstream_after=a.cut_upstream_after_bytes,
        cut_mode=a.cut_mode,
        stall_after=a.stall_after_bytes,
        stall_for=a.stall_for,
        fault_conns=a.fault_conns,
        handshake=not a.no_handshake,
    ).start()
    print(proxy.port, flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    try:
        done.wait()
    except KeyboardInterrupt:
        pass
    finally:
        proxy.stop()
        print(f"connections={proxy.connections} faults={proxy.faults}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
