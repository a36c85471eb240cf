"""A TCP proxy on loopback that a test can cut: a network outage between a
process and a real server (PostgreSQL, ...), without stopping the server.

Runs in the test's event loop::

    proxy = TcpProxy("127.0.0.1", pg_port)
    port = await proxy.start()      # connect to 127.0.0.1:port instead
    proxy.cut()                     # open connections dropped, new ones closed at once
    proxy.restore()                 # new connections go through again
    await proxy.stop()

``on_connect`` (if set) is called as each connection arrives, before it is
let through or closed: a test can make "the network fails" happen at the
moment a process connects.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable


class TcpProxy:
    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.up = True
        self.on_connect: Callable[[], None] | None = None
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    def cut(self) -> None:
        self.up = False
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    def restore(self) -> None:
        self.up = True

    async def stop(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.on_connect is not None:
            self.on_connect()
        if not self.up:
            writer.transport.abort()
            return
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(self.host, self.port)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, upstream_writer))
        await asyncio.gather(self._pipe(reader, upstream_writer), self._pipe(upstream_reader, writer))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self._writers.discard(writer)
            with contextlib.suppress(Exception):
                writer.transport.abort()
