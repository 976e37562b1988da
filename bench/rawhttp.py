"""A minimal pooled HTTP/1.1 client on asyncio protocols and httptools: a ceiling to compare.

Not a general client (plain HTTP, no redirects, no compression, no proxies, no TLS): just
enough to show what the upstream hop costs when the client does nothing else, next to httpx
and aiohttp behind the relay's ``--client`` switch.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from typing import cast

import httptools


class _Conn(asyncio.Protocol):
    """One keep-alive connection; answers one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.head: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.pieces: deque[bytes] = deque()
        self.complete = False
        self.keep_alive = False
        self.wake: asyncio.Future[None] | None = None
        self.paused = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.complete:
            self._fail(exc or ConnectionResetError("upstream closed the connection"))

    def _fail(self, exc: BaseException) -> None:
        self.closed = True
        if not self.head.done():
            self.head.set_exception(exc)
        if self.wake is not None and not self.wake.done():
            self.wake.set_exception(exc)
        if self.transport is not None:
            self.transport.close()

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        if not self.head.done():
            self.head.set_result(None)

    def on_body(self, body: bytes) -> None:
        self.pieces.append(body)
        if len(self.pieces) > 64 and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        self.complete = True
        self.keep_alive = self.parser.should_keep_alive()
        self._wake()

    def _wake(self) -> None:
        if self.wake is not None and not self.wake.done():
            self.wake.set_result(None)

    async def next_piece(self) -> bytes | None:
        while not self.pieces:
            if self.complete:
                return None
            self.wake = asyncio.get_running_loop().create_future()
            await self.wake
            self.wake = None
        piece = self.pieces.popleft()
        if self.paused and len(self.pieces) < 16 and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()
        return piece


class Response:
    def __init__(self, pool: Pool, conn: _Conn) -> None:
        self._pool = pool
        self._conn = conn
        self.status = conn.status
        self.headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in conn.headers}

    async def iter_bytes(self) -> AsyncIterator[bytes]:
        try:
            while (piece := await self._conn.next_piece()) is not None:
                yield piece
        finally:
            self.release()

    async def read(self) -> bytes:
        return b"".join([piece async for piece in self.iter_bytes()])

    def release(self) -> None:
        conn = self._conn
        if conn.complete and conn.keep_alive and not conn.closed:
            self._pool.idle.append(conn)
        elif not conn.closed and conn.transport is not None:
            conn.transport.close()


class Pool:
    """Keep-alive connections to one ``host:port``, most recently used first."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.idle: list[_Conn] = []
        self._host_header = f"{host}:{port}".encode()

    async def request(
        self, method: str, path: str, body: bytes, headers: dict[str, str]
    ) -> Response:
        head = [
            b"%s %s HTTP/1.1\r\nhost: %s\r\n" % (method.encode(), path.encode(), self._host_header)
        ]
        head += [b"%s: %s\r\n" % (k.encode(), v.encode()) for k, v in headers.items()]
        head.append(b"content-length: %d\r\n\r\n" % len(body))
        data = b"".join(head) + body
        for attempt in range(2):  # a reused connection may have been closed by the server
            reused = bool(self.idle)
            conn = self.idle.pop() if reused else await self._connect()
            if conn.closed or conn.transport is None:
                continue
            conn._reset()
            conn.transport.write(data)
            try:
                await conn.head
            except (ConnectionError, OSError):
                if reused and attempt == 0 and not conn.pieces:
                    continue
                raise
            return Response(self, conn)
        raise ConnectionError("could not send the request")

    async def _connect(self) -> _Conn:
        loop = asyncio.get_running_loop()
        _, proto = await loop.create_connection(_Conn, self.host, self.port)
        return proto

    def close(self) -> None:
        for conn in self.idle:
            if conn.transport is not None:
                conn.transport.close()
        self.idle.clear()
