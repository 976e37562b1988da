"""A pooled HTTP/1.1 client on asyncio protocols and httptools, for the upstream hot path.

httpx and aiohttp together cost about a millisecond of CPU per upstream call; this client does
the same job in tens of microseconds by doing only what the gateway needs: one request at a
time per keep-alive connection, bodies framed by ``content-length`` (never chunked), responses
parsed by llhttp, and no task per request (the caller's task awaits plain futures that the
protocol callbacks resolve).

Request bodies are bytes; response bodies are read whole (``read``) or as they arrive
(``read_some``). ``gzip`` and ``deflate`` content codings are decoded. There are no redirects,
cookies, proxies or default headers: the caller sends exactly the headers it means to send.

Error messages never include header values (they carry API keys) nor the URL's query (some
providers take the key there), so they are safe to log.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
import zlib
from collections import deque
from collections.abc import Iterator, Mapping
from itertools import islice
from time import perf_counter
from typing import Final, cast
from urllib.parse import quote, urlsplit

import httptools

__all__ = [
    "ConnectError",
    "ConnectTimeout",
    "ConnectionPool",
    "Headers",
    "PoolTimeout",
    "ProtocolError",
    "ReadError",
    "ReadTimeout",
    "Response",
    "Timeout",
    "Timeouts",
    "TransportError",
    "WriteTimeout",
]


# --- Errors ---------------------------------------------------------------------------------


class TransportError(Exception):
    """Base of every error this client raises; messages hold no header values nor URL query."""


class ConnectError(TransportError):
    """The connection could not be made: refused, DNS failure, TLS handshake or verification."""


class ReadError(TransportError):
    """The connection was reset or closed while the response body was being read."""


class ProtocolError(TransportError):
    """The response was malformed, or the connection closed before its head arrived."""


class Timeout(TransportError):
    """A wait exceeded its limit in ``Timeouts``."""


class ConnectTimeout(Timeout):
    """The TCP connect and TLS handshake took longer than ``Timeouts.connect``."""


class ReadTimeout(Timeout):
    """No response bytes (head, or next body piece) within ``Timeouts.read``."""


class WriteTimeout(Timeout):
    """The socket did not take the request within ``Timeouts.write``."""


class PoolTimeout(Timeout):
    """No connection became free within ``Timeouts.pool``."""


_TIMEOUT_MESSAGES: Final[dict[type[Timeout], str]] = {
    ReadTimeout: "timed out waiting for the response",
    WriteTimeout: "timed out sending the request",
    PoolTimeout: "timed out waiting for a free connection",
}


class Timeouts:
    """Limits in seconds for each kind of wait; ``None`` waits forever (alias over provider).

    Built per request: a plain class (README, "The hot path, compiled").
    """

    def __init__(
        self,
        connect: float | None = None,  # TCP connect + TLS handshake
        read: float | None = None,  # each wait for bytes: the response head, then each piece
        write: float | None = None,  # waiting for the socket to take what its buffer can't
        pool: float | None = None,  # waiting for a free connection when all are busy
    ) -> None:
        self.connect: Final = connect
        self.read: Final = read
        self.write: Final = write
        self.pool: Final = pool


NO_TIMEOUTS: Final = Timeouts()


# --- Response -------------------------------------------------------------------------------


class Headers(Mapping[str, str]):
    """Response headers: case-insensitive lookup, repeated names joined with ``", "``.

    ``raw`` is the list as received. The lookup dict is built on first use, so a caller that
    only streams the body never pays for it.
    """

    __slots__ = ("_lookup", "raw")

    def __init__(self, raw: list[tuple[bytes, bytes]]) -> None:
        self.raw = raw
        self._lookup: dict[str, str] | None = None

    def _build(self) -> dict[str, str]:
        lookup: dict[str, str] = {}
        for name, value in self.raw:
            key = name.decode("latin-1").lower()
            text = value.decode("latin-1")
            lookup[key] = f"{lookup[key]}, {text}" if key in lookup else text
        self._lookup = lookup
        return lookup

    def __getitem__(self, key: str) -> str:
        lookup = self._lookup if self._lookup is not None else self._build()
        return lookup[key.lower()]

    def __iter__(self) -> Iterator[str]:
        return iter(self._lookup if self._lookup is not None else self._build())

    def __len__(self) -> int:
        return len(self._lookup if self._lookup is not None else self._build())

    def __repr__(self) -> str:
        return f"<Headers {sorted(self)}>"  # names only: values may be secrets


class Response:
    """A response whose head has arrived; the body is read with ``read`` or ``read_some``.

    The connection stays with the response until the body has been read or ``aclose`` is
    called, so every response must end one of those ways.
    """

    __slots__ = (
        "_conn",
        "_content",
        "_decoder",
        "_pool",
        "_read_timeout",
        "headers",
        "reason",
        "status",
        "waited",
    )

    def __init__(
        self, pool: ConnectionPool, conn: _Connection, waited: float, read_timeout: float | None
    ) -> None:
        self.status = conn.status
        self.reason = conn.reason.decode("latin-1")
        self.headers = Headers(conn.raw)
        self.waited = waited  # seconds spent awaiting the network, perf_counter based
        self._pool = pool
        self._conn: _Connection | None = conn
        self._read_timeout = read_timeout
        self._content: bytes | None = None
        self._decoder = _decoder_for(conn.raw)

    def __repr__(self) -> str:
        return f"<Response [{self.status} {self.reason}]>"

    async def read(self) -> bytes:
        """The whole (decoded) body; the connection is released once it is in."""
        if self._content is not None:
            return self._content
        conn = self._conn
        if conn is None:
            raise TransportError("the response is closed or its body was streamed")
        pieces: list[bytes] = []
        try:
            while True:  # inline, not a coroutine per piece: most bodies are in at once
                if conn.chunks:
                    pieces.append(conn.take())
                elif conn.phase is _DONE:
                    break
                elif conn.error is not None:
                    raise conn.error
                else:
                    self.waited += await _wait(conn, self._read_timeout, ReadTimeout)
            body = pieces[0] if len(pieces) == 1 else b"".join(pieces)
            decoder = self._decoder
            if decoder is not None:
                body = decoder.decode(body) + decoder.flush()
        except BaseException:
            self._close(reuse=False)
            raise
        self._content = body
        self._close(reuse=True)
        return body

    async def read_some(self) -> bytes:
        """The next piece of the body as it arrives (de-chunked, decoded), ``b""`` once all of it
        has been read; ``Timeouts.read`` between pieces.

        A coroutine per piece rather than an async generator: the relay above awaits it once a
        network read, and mypyc compiles coroutines (not async generators).
        """
        conn = self._conn
        if conn is None:
            content = self._content
            if content is None:
                raise TransportError("the response is closed or its body was streamed")
            self._content = b""  # read whole before: that body once, then the end
            return content
        decoder = self._decoder
        try:
            while True:
                if conn.chunks:
                    piece = conn.take()
                    if decoder is not None:
                        piece = decoder.decode(piece)
                    if piece:
                        return piece
                elif conn.phase is _DONE:
                    break
                elif conn.error is not None:
                    raise conn.error
                else:
                    self.waited += await _wait(conn, self._read_timeout, ReadTimeout)
            tail = decoder.flush() if decoder is not None else b""
        except BaseException:  # a cancelled read included: abandoned mid-body
            self._close(reuse=False)
            raise
        self._close(reuse=True)
        self._content = b""  # the end: every later call returns b""
        return tail

    async def aclose(self) -> None:
        """Release the connection: back to the pool if the whole response arrived, else closed."""
        self._close(reuse=True)

    def _close(self, *, reuse: bool) -> None:
        conn = self._conn
        if conn is None:
            return
        self._conn = None
        self._pool._finish(conn, reuse)


_BODY: Final = "body"
_DONE: Final = "done"
_HEAD: Final = "head"


class _Decoder:
    """Streaming ``gzip``/``deflate`` decoding with zlib; ``deflate`` may be raw or zlib-wrapped."""

    __slots__ = ("_bare_deflate_possible", "_decompressor", "_encoding")

    def __init__(self, encoding: str) -> None:
        self._encoding = encoding
        wbits = zlib.MAX_WBITS | 16 if encoding == "gzip" else zlib.MAX_WBITS
        self._decompressor = zlib.decompressobj(wbits)
        self._bare_deflate_possible = encoding == "deflate"

    def decode(self, data: bytes) -> bytes:
        try:
            decoded = self._decompressor.decompress(data)
        except zlib.error:
            if not self._bare_deflate_possible:
                raise ProtocolError(f"could not decode the {self._encoding} body") from None
            # Some servers send deflate without its zlib wrapper; that shows in the first bytes.
            self._bare_deflate_possible = False
            self._decompressor = zlib.decompressobj(-zlib.MAX_WBITS)
            return self.decode(data)
        self._bare_deflate_possible = False
        return decoded

    def flush(self) -> bytes:
        try:
            return self._decompressor.flush()
        except zlib.error:
            raise ProtocolError(f"could not decode the {self._encoding} body") from None


_CODINGS: Final = {"gzip": "gzip", "x-gzip": "gzip", "deflate": "deflate"}


def _decoder_for(raw: list[tuple[bytes, bytes]]) -> _Decoder | None:
    """The decoder for the response's content-encoding; ``None`` when there is nothing to undo.

    Other codings (br, zstd, or several stacked) leave the body as received, with its header
    for the caller to see.
    """
    value = b""
    for name, field in raw:
        if len(name) == 16 and name.lower() == b"content-encoding":
            value = field if not value else value + b"," + field
    if not value:
        return None
    codings = [c.strip().lower() for c in value.decode("latin-1").split(",")]
    codings = [c for c in codings if c and c != "identity"]
    if len(codings) != 1 or codings[0] not in _CODINGS:
        return None
    return _Decoder(_CODINGS[codings[0]])


# --- Connection -----------------------------------------------------------------------------

_HIGH_WATER: Final = 64 * 1024  # unread body bytes above which the socket stops being read
_LARGE_BODY: Final = 64 * 1024  # bodies above this are written after the head, not joined


class _Connection(asyncio.Protocol):
    """One keep-alive connection carrying one exchange at a time.

    httptools callbacks fill in the current response; the task awaiting it sleeps on
    ``waiter``, which every event that could change its view resolves (``_wake``).
    """

    def __init__(self, pool: ConnectionPool, origin: _Origin) -> None:
        self.loop = asyncio.get_running_loop()
        self.pool = pool
        self.origin = origin
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.parser_stale = False  # the parser was left mid-message (after a HEAD response)
        self.closed = False  # connection_lost has run
        self.idle = False  # in the pool's idle list
        self.active = False  # carrying an exchange
        self.exchanges = 0
        self.expires_at = 0.0
        self.waiter: asyncio.Future[None] | None = None
        self.deadline: float | None = None  # loop time at which the current wait times out
        self.deadline_error: type[Timeout] = ReadTimeout
        self.timer: asyncio.TimerHandle | None = None  # due at timer_at, at or before deadline
        self.timer_at = 0.0
        self.writing_paused = False
        self.reading_paused = False
        self.chunks: list[bytes] = []
        self.buffered = 0
        self._new_exchange(head_only=False)

    def _new_exchange(self, head_only: bool) -> None:
        """The state of the current exchange, as a new request finds it."""
        self.phase = _HEAD
        self.head_only = head_only
        self.interim = False
        self.received = False
        self.keep_alive = False
        self.status = 0
        self.reason = b""
        self.raw: list[tuple[bytes, bytes]] = []
        self.error: TransportError | None = None

    def start(self, head_only: bool) -> None:
        """Reset the exchange state for a new request."""
        self.active = True
        self.exchanges += 1
        self._new_exchange(head_only)
        if self.parser_stale:
            self.parser = httptools.HttpResponseParser(self)
            self.parser_stale = False

    def send(self, head: bytes, body: bytes | None) -> None:
        transport = self.transport
        if self.closed or transport is None or transport.is_closing():
            self.error = ProtocolError("the connection closed before the request was sent")
            return
        transport.write(head)
        if body is not None:
            transport.write(body)

    def take(self) -> bytes:
        """All the body bytes received and not yet read; reading resumes once they are taken."""
        chunks = self.chunks
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self.buffered = 0
        if self.reading_paused:
            self.reading_paused = False
            if not self.closed and self.transport is not None:
                self.transport.resume_reading()
        return data

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def arm(self, when: float) -> None:
        """(Re)schedule the connection's timer for ``when``."""
        if self.timer is not None:
            self.timer.cancel()
        self.timer = self.loop.call_at(when, self._on_timer)
        self.timer_at = when

    def _on_timer(self) -> None:
        """Time out the current wait if its deadline has come, else wait on for it."""
        self.timer = None
        deadline = self.deadline
        waiter = self.waiter
        if deadline is None or waiter is None or waiter.done():
            return  # no wait now, or one without a limit, or one already settled
        if deadline - self.loop.time() > _TIMER_SLACK:
            self.arm(deadline)
        else:
            _expire(waiter, self.deadline_error)

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None  # the wait is over: later events need not look at it
            if not waiter.done():
                waiter.set_result(None)

    def _fail(self, error: TransportError, cause: BaseException | None = None) -> None:
        if self.error is None:
            error.__cause__ = cause
            self.error = error
        self.abort()
        self._wake()

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if not self.active:  # bytes on an idle connection: its state is unknown
            self.abort()
            return
        self.received = True
        chunks = self.chunks
        before = len(chunks)
        try:
            self.parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            error: Exception | None = exc
        else:
            error = None
        after = len(chunks)
        if after != before:
            # Body pieces are counted and announced once per read, not once per piece: an SSE
            # burst is dozens of chunks, and the reader can't run before this returns anyway.
            if after == before + 1:
                self.buffered += len(chunks[before])
            else:
                self.buffered += sum(map(len, islice(chunks, before, None)))
            transport = self.transport
            if self.buffered > _HIGH_WATER and not self.reading_paused and transport is not None:
                self.reading_paused = True
                transport.pause_reading()
            self._wake()
        if error is not None:
            if self.phase is _DONE:  # garbage after a complete response
                self.keep_alive = False
                self.abort()
            else:
                self._fail(ProtocolError(f"malformed response: {error}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._settle_lost(exc)
        waiter = self.waiter
        if self.timer is not None and (waiter is None or waiter.done()):
            self.timer.cancel()  # don't keep the closed connection alive until it fires
            self.timer = None

    def _settle_lost(self, exc: Exception | None) -> None:
        """End the current exchange, or forget the idle connection, as the stream has ended."""
        if self.idle:
            self.pool._forget_idle(self)
        elif not self.active or self.phase is _DONE:
            pass
        elif self.phase is _HEAD:
            self._fail(ProtocolError(_lost("head", exc)), exc)
        elif self._until_close():
            self.phase = _DONE  # a body delimited by the end of the connection
            self.keep_alive = False
            self._wake()
        else:
            self._fail(ReadError(_lost("body", exc)), exc)

    def _until_close(self) -> bool:
        for name, value in self.raw:
            lowered = name.lower()
            if lowered == b"content-length":
                return False
            if lowered == b"transfer-encoding" and b"chunked" in value.lower():
                return False
        return True

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        self._wake()

    # httptools callbacks

    def on_message_begin(self) -> None:
        if self.phase is _DONE:  # a second response nobody asked for: the stream is unsound
            self.keep_alive = False

    def on_status(self, reason: bytes) -> None:
        if self.phase is _HEAD:  # the status line may come in pieces
            self.reason = self.reason + reason if self.reason else reason

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.phase is _HEAD:  # later ones are chunked trailers
            self.raw.append((name, value))

    def on_headers_complete(self) -> None:
        if self.phase is not _HEAD:
            return
        status = self.parser.get_status_code()
        if status < 200:  # an interim response (103 Early Hints): the real one follows
            self.interim = True
            self.reason = b""
            self.raw = []
            return
        self.status = status
        if self.head_only:
            # llhttp can't be told the response to HEAD has no body: end the exchange here and
            # give the next one a fresh parser.
            self.keep_alive = self.parser.should_keep_alive()
            self.parser_stale = True
            self.phase = _DONE
        else:
            self.phase = _BODY
        self._wake()

    def on_body(self, body: bytes) -> None:
        if self.phase is _BODY:
            self.chunks.append(body)  # counted, and the reader woken, by data_received
        else:
            self.keep_alive = False  # body bytes where none were due

    def on_message_complete(self) -> None:
        if self.interim:
            self.interim = False
            return
        if self.phase is _BODY:
            self.keep_alive = self.parser.should_keep_alive()
            self.phase = _DONE
            self._wake()


def _lost(part: str, exc: BaseException | None) -> str:
    why = "reset" if exc is not None else "closed"
    return f"the connection was {why} before the response {part} was complete"


def _expire(waiter: asyncio.Future[None], error: type[Timeout]) -> None:
    if not waiter.done():
        waiter.set_exception(error(_TIMEOUT_MESSAGES[error]))


_TIMER_SLACK: Final = 0.001  # uvloop's timers tick in milliseconds, so they may fire that early


async def _wait(conn: _Connection, timeout: float | None, error: type[Timeout]) -> float:
    """Sleep until the connection has news or ``timeout`` passes; returns the seconds slept.

    A future and no task: ``asyncio.wait_for`` would cost several times more. The deadline is
    kept on the connection, whose one timer outlives the wait and is moved on when it fires
    early: most waits end long before their limit, so most need no timer of their own.
    """
    loop = conn.loop
    waiter: asyncio.Future[None] = loop.create_future()
    conn.waiter = waiter
    if timeout is None:
        conn.deadline = None  # a timer still due from an earlier wait must not end this one
    else:
        deadline = conn.deadline = loop.time() + timeout
        conn.deadline_error = error
        if conn.timer is None or conn.timer_at > deadline:
            conn.arm(deadline)
    started = perf_counter()
    try:
        await waiter
    finally:
        conn.waiter = None
    return perf_counter() - started


# --- Pool -----------------------------------------------------------------------------------


class _Origin:
    """A parsed ``scheme://host:port`` and its idle connections, most recently used last."""

    __slots__ = ("host", "host_line", "idle", "port", "tls")

    def __init__(self, tls: bool, host: str, port: int, host_line: str) -> None:
        self.tls = tls
        self.host = host
        self.port = port
        self.host_line = host_line
        self.idle: list[_Connection] = []


_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
_NEEDS_LENGTH: Final = frozenset({"POST", "PUT", "PATCH"})
_TOKEN: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_TARGET: Final = re.compile(r"[\x00-\x20\x7f]")
_FRAMING: Final = frozenset({"content-length", "transfer-encoding"})
_MAX_CACHED: Final = 1024  # heads, URLs, origin prefixes and header names remembered

_HeadKey = tuple[str, str, tuple[tuple[str, str], ...]]
# A head's origin, its request and header lines, and the whole head for a request with no body.
_Encoded = tuple[_Origin, bytes, bytes]


class ConnectionPool:
    """Keep-alive HTTP/1.1 connections per origin, at most ``max_connections`` in all.

    Waiters for a connection are served first come, first served. A pool may be created
    outside the event loop, but is then used from one loop only.
    """

    def __init__(
        self,
        *,
        max_connections: int = 1000,
        keepalive_expiry: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._max_connections = max_connections
        self._keepalive_expiry = keepalive_expiry
        self._ssl_context = ssl_context
        self._heads: dict[_HeadKey, _Encoded] = {}  # (method, URL, header items) -> encoded
        self._urls: dict[str, tuple[_Origin, str]] = {}  # URL -> (origin, request target)
        self._prefixes: dict[str, _Origin] = {}  # "scheme://netloc" as written -> origin
        self._origins: dict[tuple[bool, str, int], _Origin] = {}
        self._tokens: set[str] = set()  # checked methods and header names, but for framing
        self._open = 0  # connections connecting, active or idle
        self._in_flight = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._handoffs = 0  # waiters woken for a free slot that have not run yet
        self._sweeper: asyncio.TimerHandle | None = None
        self._closed = False

    @property
    def in_flight(self) -> int:
        """Requests started whose response is not yet closed."""
        return self._in_flight

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        body: bytes | None = None,
        timeouts: Timeouts = NO_TIMEOUTS,
    ) -> Response:
        """Send a request; returns once the response head has arrived.

        ``content-length`` is the client's (a caller's ``content-length`` or
        ``transfer-encoding`` is dropped): the body is always framed by its length.
        """
        if self._closed:
            raise TransportError("pool closed")
        key = (method, url, tuple(headers.items()))
        encoded = self._heads.get(key)
        if encoded is None:
            encoded = self._encode_new(key, headers)
        origin, fields, bodyless = encoded
        if body is None:
            head = bodyless
        elif len(body) <= _LARGE_BODY:
            head, body = b"%bcontent-length: %d\r\n\r\n%b" % (fields, len(body), body), None
        else:
            head = b"%bcontent-length: %d\r\n\r\n" % (fields, len(body))
        self._in_flight += 1
        try:  # all in this one coroutine: each nested coroutine call costs a frame
            retried = False
            while True:
                # The usual case, an idle connection and nobody queued, needs no coroutine.
                if origin.idle and not retried and not self._waiters and not self._handoffs:
                    idle = self._take_idle(origin)
                    if idle is not None:
                        conn, waited = idle, 0.0
                    else:
                        conn, waited = await self._open_new(origin, timeouts)
                else:
                    conn, waited = await self._acquire(origin, timeouts, fresh=retried)
                conn.start(method == "HEAD")
                conn.send(head, body)
                try:
                    while conn.writing_paused and conn.phase is _HEAD and conn.error is None:
                        waited += await _wait(conn, timeouts.write, WriteTimeout)
                    while conn.phase is _HEAD:
                        if conn.error is not None:
                            raise conn.error
                        waited += await _wait(conn, timeouts.read, ReadTimeout)
                except ProtocolError:
                    self._finish(conn, reuse=False, counted=False)
                    # A reused connection that died before answering was most likely closed by
                    # the server while idle (the keep-alive race): once more, on a new one.
                    if conn.exchanges > 1 and not conn.received and not retried:
                        retried = True
                        continue
                    raise
                except BaseException:
                    self._finish(conn, reuse=False, counted=False)
                    raise
                return Response(self, conn, waited, timeouts.read)
        except BaseException:
            self._in_flight -= 1
            raise

    async def aclose(self) -> None:
        """Close idle connections; responses still open close theirs when they finish."""
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for origin in self._origins.values():
            while origin.idle:
                self._close_idle(origin.idle[-1])
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(TransportError("pool closed"))

    # Requests

    def _split(self, url: str) -> tuple[_Origin, str]:
        """The URL's origin and request target, remembered: the gateway repeats a few URLs."""
        split = self._urls.get(url)
        if split is None:
            split = self._split_new(url)
            if len(self._urls) >= _MAX_CACHED:
                self._urls.clear()
            self._urls[url] = split
        return split

    def _split_new(self, url: str) -> tuple[_Origin, str]:
        start = url.find("://")
        if start < 0:
            raise TransportError("the URL must be absolute (scheme://host/path)")
        end = len(url)
        for mark in "/?#":
            found = url.find(mark, start + 3, end)
            if found >= 0:
                end = found
        prefix = url[:end]
        origin = self._prefixes.get(prefix)
        if origin is None:
            origin = self._parse_origin(prefix)
        target = url[end:]
        if "#" in target:
            target = target[: target.index("#")]
        if not target.startswith("/"):
            target = "/" + target
        if not target.isascii():
            target = quote(target, safe="/?&=%:@!$'()*+,;~-._[]")
        if _BAD_TARGET.search(target) is not None:
            raise TransportError("the URL path or query contains whitespace or control characters")
        return origin, target

    def _parse_origin(self, prefix: str) -> _Origin:
        parts = urlsplit(prefix)
        scheme = parts.scheme.lower()
        if scheme not in _DEFAULT_PORTS:
            raise TransportError(f"unsupported URL scheme {scheme!r}")
        host = parts.hostname
        if not host:
            raise TransportError("the URL has no host")
        try:
            port = parts.port or _DEFAULT_PORTS[scheme]
            if ":" not in host:
                host = host.encode("idna").decode("ascii")
        except (ValueError, UnicodeError):
            raise TransportError("the URL has an invalid host or port") from None
        shown = f"[{host}]" if ":" in host else host
        if port != _DEFAULT_PORTS[scheme]:
            shown = f"{shown}:{port}"
        key = (scheme == "https", host, port)
        origin = self._origins.get(key)
        if origin is None:
            origin = self._origins[key] = _Origin(key[0], host, port, f"host: {shown}\r\n")
        if len(self._prefixes) >= _MAX_CACHED:
            self._prefixes.clear()
        self._prefixes[prefix] = origin
        return origin

    def _encode_new(self, key: _HeadKey, headers: Mapping[str, str]) -> _Encoded:
        """Check and encode a request's head, remembered: the gateway repeats a few heads."""
        method, url, _ = key
        origin, target = self._split(url)
        fields = self._encode_fields(method, target, origin, headers)
        bodyless = fields + (b"content-length: 0\r\n\r\n" if method in _NEEDS_LENGTH else b"\r\n")
        if len(self._heads) >= _MAX_CACHED:
            self._heads.clear()
        encoded = self._heads[key] = (origin, fields, bodyless)
        return encoded

    def _encode_fields(
        self, method: str, target: str, origin: _Origin, headers: Mapping[str, str]
    ) -> bytes:
        """The request line and header lines, without framing nor the blank line."""
        tokens = self._tokens
        if method not in tokens:
            self._check_token(method, "method")
        lines = [f"{method} {target} HTTP/1.1\r\n"]
        has_host = False
        for name, value in headers.items():
            if name not in tokens:  # new, or host, or framing
                lowered = self._check_token(name, "header name")
                if lowered == "host":
                    has_host = True
                elif lowered in _FRAMING:
                    continue
            lines.append(f"{name}: {value}\r\n")
        if not has_host:
            lines.append(origin.host_line)
        text = "".join(lines)
        # Each line ends in one CRLF, so any other CR or LF came from a value: header injection.
        count = len(lines)
        if text.count("\n") != count or text.count("\r") != count or "\0" in text:
            raise TransportError("a request header value contains CR, LF or NUL")
        try:
            return text.encode()
        except UnicodeEncodeError:
            raise TransportError("a request header value is not valid text") from None

    def _check_token(self, name: str, what: str) -> str:
        """Refuse a name that is not an HTTP token; remember the ordinary ones as checked."""
        if _TOKEN.fullmatch(name) is None:
            raise TransportError(f"invalid {what}: not an HTTP token")
        lowered = name.lower()
        if lowered != "host" and lowered not in _FRAMING and len(self._tokens) < _MAX_CACHED:
            self._tokens.add(name)
        return lowered

    # Connections

    async def _acquire(
        self, origin: _Origin, timeouts: Timeouts, *, fresh: bool
    ) -> tuple[_Connection, float]:
        if self._waiters or self._handoffs or not self._has_room(origin, fresh):
            await self._queue(origin, fresh, timeouts.pool)
        if not fresh:
            conn = self._take_idle(origin)
            if conn is not None:
                return conn, 0.0
        return await self._open_new(origin, timeouts)

    async def _open_new(self, origin: _Origin, timeouts: Timeouts) -> tuple[_Connection, float]:
        """Connect, taking a slot (an idle connection of another origin's if need be)."""
        if self._open >= self._max_connections:
            self._evict_idle()
        self._open += 1
        started = perf_counter()
        try:
            conn = await self._connect(origin, timeouts.connect)
        except BaseException:
            self._open -= 1
            self._pass_turn()
            raise
        return conn, perf_counter() - started

    async def _connect(self, origin: _Origin, timeout: float | None) -> _Connection:
        context = None
        if origin.tls:
            context = self._ssl_context
            if context is None:
                context = self._ssl_context = ssl.create_default_context()
                context.set_alpn_protocols(["http/1.1"])
        try:
            async with asyncio.timeout(timeout):
                _, conn = await asyncio.get_running_loop().create_connection(
                    lambda: _Connection(self, origin),
                    origin.host,
                    origin.port,
                    ssl=context,
                    server_hostname=origin.host if context is not None else None,
                )
        except TimeoutError:
            raise ConnectTimeout(f"timed out connecting to {origin.host}:{origin.port}") from None
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            raise ConnectError(
                f"could not connect to {origin.host}:{origin.port}: {reason}"
            ) from exc
        return conn

    def _has_room(self, origin: _Origin, fresh: bool) -> bool:
        if self._open < self._max_connections or (origin.idle and not fresh):
            return True
        return any(o.idle for o in self._origins.values())

    async def _queue(self, origin: _Origin, fresh: bool, timeout: float | None) -> None:
        """Wait, first come first served, until there is a connection or a slot for one."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        requeued = False
        while True:
            if self._closed:
                raise TransportError("pool closed")
            waiter: asyncio.Future[None] = loop.create_future()
            if requeued:
                self._waiters.appendleft(waiter)  # woken but beaten to it: keep its place
            else:
                self._waiters.append(waiter)
            timer = (
                None if deadline is None else loop.call_at(deadline, _expire, waiter, PoolTimeout)
            )
            try:
                await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                    self._handoffs -= 1  # handed a turn, then cancelled: pass it on
                    self._pass_turn()
                else:
                    with contextlib.suppress(ValueError):
                        self._waiters.remove(waiter)
                raise
            finally:
                if timer is not None:
                    timer.cancel()
            self._handoffs -= 1
            if self._closed:
                raise TransportError("pool closed")
            if self._has_room(origin, fresh):
                return
            requeued = True

    def _pass_turn(self) -> None:
        """Wake the longest waiter: a connection, or room for one, may have become free."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                self._handoffs += 1
                return

    def _take_idle(self, origin: _Origin) -> _Connection | None:
        idle = origin.idle
        if not idle:
            return None
        now = idle[-1].loop.time()
        while idle:
            conn = idle.pop()
            conn.idle = False
            transport = conn.transport
            if conn.expires_at > now and transport is not None and not transport.is_closing():
                return conn
            conn.abort()
            self._open -= 1
        return None

    def _finish(self, conn: _Connection, reuse: bool, *, counted: bool = True) -> None:
        """End an exchange: the connection goes idle if it is sound, else it is closed."""
        if counted:
            self._in_flight -= 1
        conn.active = False
        transport = conn.transport
        if (
            reuse
            and conn.phase is _DONE
            and conn.keep_alive
            and conn.error is None
            and not self._closed
            and self._keepalive_expiry > 0
            and transport is not None
            and not transport.is_closing()
            and not transport.get_write_buffer_size()  # a request body still unsent
        ):
            if conn.chunks:
                conn.take()  # drop an unread body and resume reading
            conn.idle = True
            conn.expires_at = conn.loop.time() + self._keepalive_expiry
            conn.origin.idle.append(conn)
            if self._sweeper is None:
                self._sweeper = conn.loop.call_at(conn.expires_at, self._sweep)
        else:
            conn.abort()
            self._open -= 1
        if self._waiters:
            self._pass_turn()

    def _close_idle(self, conn: _Connection) -> None:
        conn.origin.idle.remove(conn)
        conn.idle = False
        if conn.transport is not None:
            conn.transport.close()
        self._open -= 1

    def _forget_idle(self, conn: _Connection) -> None:
        """The server closed an idle connection."""
        conn.origin.idle.remove(conn)
        conn.idle = False
        self._open -= 1
        self._pass_turn()

    def _evict_idle(self) -> None:
        """Close the least recently used idle connection, to make room for another origin's."""
        oldest: _Connection | None = None
        for origin in self._origins.values():
            if origin.idle and (oldest is None or origin.idle[0].expires_at < oldest.expires_at):
                oldest = origin.idle[0]
        if oldest is not None:
            self._close_idle(oldest)

    def _sweep(self) -> None:
        """Close expired idle connections; runs once per expiry period while any are idle."""
        self._sweeper = None
        now = asyncio.get_running_loop().time()
        next_at: float | None = None
        for origin in self._origins.values():
            idle = origin.idle
            while idle and idle[0].expires_at <= now:
                self._close_idle(idle[0])
            if idle and (next_at is None or idle[0].expires_at < next_at):
                next_at = idle[0].expires_at
        if next_at is not None:
            self._sweeper = asyncio.get_running_loop().call_at(next_at, self._sweep)
