"""Asyncio TCP proxy that injects network faults between edge and cloud in tests: resets
mid-stream, stalls, a bandwidth cap, and half-open (black-holed) connections."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import time
from dataclasses import dataclass, field


@dataclass
class _Link:
    client_writer: asyncio.StreamWriter
    upstream_writer: asyncio.StreamWriter
    blackholed: bool = False
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def reset(self) -> None:
        """Close both sides with RST (SO_LINGER 0), like a middlebox dropping state."""
        for writer in (self.client_writer, self.upstream_writer):
            sock = writer.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()


class _Pacer:
    """Shared bytes/s cap for one direction."""

    def __init__(self) -> None:
        self.rate: float | None = None
        self.allowance = 0.0
        self.updated = time.monotonic()

    async def pace(self, amount: int) -> None:
        if self.rate is None:
            return
        now = time.monotonic()
        self.allowance = min(self.rate / 10, self.allowance + (now - self.updated) * self.rate)
        self.updated = now
        self.allowance -= amount
        if self.allowance < 0:
            await asyncio.sleep(-self.allowance / self.rate)  # pacing, not synchronisation


class FaultProxy:
    """Listen on 127.0.0.1:<port>, forward to upstream; faults are switched by method calls
    from the same event loop."""

    def __init__(self, upstream_host: str, upstream_port: int, read_size: int = 16 << 10) -> None:
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self.read_size = read_size
        self.port = 0
        self.connections_total = 0
        self.resets = 0
        self.bytes_up = 0  # client -> upstream
        self.bytes_down = 0
        self._server: asyncio.Server | None = None
        self._links: list[_Link] = []
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._reset_budget: int | None = None
        self._pacers = {"up": _Pacer(), "down": _Pacer()}

    async def start(self) -> FaultProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        tasks = [task for link in self._links for task in link.tasks]
        for link in list(self._links):
            link.reset()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    # fault switches ------------------------------------------------------------------------
    def reset_after(self, nbytes: int) -> None:
        """Reset the live connection once `nbytes` more client->upstream bytes have passed."""
        self._reset_budget = nbytes

    def reset_all(self) -> None:
        for link in list(self._links):
            self.resets += 1
            link.reset()

    def stall(self) -> None:
        """Stop forwarding in both directions on all connections (bytes queue up in buffers)."""
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    def set_bandwidth(self, bytes_per_s: float | None) -> None:
        for pacer in self._pacers.values():
            pacer.rate = bytes_per_s

    def blackhole_existing(self) -> int:
        """Half-open: live connections silently swallow everything from now on (no FIN, no RST);
        new connections work. Returns how many connections were black-holed."""
        for link in self._links:
            link.blackholed = True
        return len(self._links)

    @property
    def live_connections(self) -> int:
        return len(self._links)

    # plumbing ------------------------------------------------------------------------------
    async def _accept(self, client_reader: asyncio.StreamReader,
                      client_writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(self.upstream_host,
                                                                 self.upstream_port)
        except OSError:
            client_writer.transport.abort()
            return
        self.connections_total += 1
        link = _Link(client_writer, up_writer)
        self._links.append(link)
        link.tasks = [
            asyncio.ensure_future(self._pump(link, client_reader, up_writer, "up")),
            asyncio.ensure_future(self._pump(link, up_reader, client_writer, "down")),
        ]
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*link.tasks, return_exceptions=True)
        if link in self._links:
            self._links.remove(link)
        link.reset()

    async def _pump(self, link: _Link, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    direction: str) -> None:
        try:
            while True:
                await self._flowing.wait()
                data = await reader.read(self.read_size)
                if not data:
                    break
                if link.blackholed:
                    continue  # swallow: the peer never hears of it
                await self._flowing.wait()
                await self._pacers[direction].pace(len(data))
                if direction == "up" and self._reset_budget is not None:
                    if len(data) >= self._reset_budget:
                        data = data[: self._reset_budget]
                        self._reset_budget = None
                        writer.write(data)
                        self.bytes_up += len(data)
                        self.resets += 1
                        link.reset()
                        break
                    self._reset_budget -= len(data)
                writer.write(data)
                await writer.drain()
                if direction == "up":
                    self.bytes_up += len(data)
                else:
                    self.bytes_down += len(data)
        except (ConnectionError, OSError):
            pass
        finally:
            # half-open: when the edge gives up, the cloud must not hear of it; the down
            # pump keeps swallowing until the cloud's own timeout closes its side
            if not (link.blackholed and direction == "up"):
                for task in link.tasks:
                    if task is not asyncio.current_task():
                        task.cancel()
