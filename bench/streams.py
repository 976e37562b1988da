"""A small raw-socket stream client: time to first byte and first token, which wrk can't see.

Each stream opens its own connection (``connection: close``), sends one POST, and records the
time from before ``connect`` to the first response byte and to the first content delta
(``marker``), then reads to the end, counting markers and checking the end marker. Streams
start on a ramp (``n`` starts spread over ``ramp_s``) and an optional cap on how many run at
once; the client also records how many were open at the same moment.
"""

from __future__ import annotations

import asyncio
import gc
import time
from dataclasses import dataclass, field

import httptools


@dataclass(slots=True)
class StreamResult:
    ok: bool
    error: str | None = None
    first_byte_ms: float | None = None
    first_token_ms: float | None = None
    total_ms: float | None = None
    markers: int = 0


@dataclass(slots=True)
class StreamsReport:
    streams: int
    completed: int
    errors: int
    error_kinds: dict[str, int]
    max_open: int
    wall_s: float
    markers: int
    first_byte_ms: list[float] = field(repr=False)
    first_token_ms: list[float] = field(repr=False)
    total_ms: list[float] = field(repr=False)


class _Response:
    """httptools callbacks for one response: status, body scan, completion."""

    def __init__(self, marker: bytes, t0: float) -> None:
        self.marker = marker
        self.t0 = t0
        self.status = 0
        self.tail = b""
        self.markers = 0
        self.first_token: float | None = None
        self.last = b""
        self.complete = False

    def on_status(self, _: bytes) -> None:
        pass

    def on_body(self, body: bytes) -> None:
        # Count markers across chunk boundaries: scan the tail of the previous piece too.
        data = self.tail + body
        found = data.count(self.marker)
        if found:
            self.markers += found
            if self.first_token is None:
                self.first_token = time.perf_counter()
        keep = len(self.marker) - 1  # too short to hold a counted marker again
        self.tail = data[-keep:] if keep else b""
        self.last = (self.last + body)[-4096:]

    def on_message_complete(self) -> None:
        self.complete = True


async def one_stream(
    host: str,
    port: int,
    request: bytes,
    marker: bytes,
    end_marker: bytes,
    timeout_s: float,
    opened: list[int],
) -> StreamResult:
    t0 = time.perf_counter()
    resp = _Response(marker, t0)
    parser = httptools.HttpResponseParser(resp)
    writer: asyncio.StreamWriter | None = None
    first_byte: float | None = None
    counted = False
    try:
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_connection(host, port)
            opened[0] += 1
            opened[1] = max(opened[1], opened[0])
            counted = True
            writer.write(request)
            while not resp.complete:
                data = await reader.read(65536)
                if not data:
                    break
                if first_byte is None:
                    first_byte = time.perf_counter()
                parser.feed_data(data)
    except TimeoutError:
        return StreamResult(False, "timeout")
    except OSError as exc:
        return StreamResult(False, f"socket:{type(exc).__name__}")
    except httptools.HttpParserError:
        return StreamResult(False, "bad-http")
    finally:
        if counted:
            opened[0] -= 1
        if writer is not None:
            writer.close()
    end = time.perf_counter()
    status = parser.get_status_code() if first_byte is not None else 0
    if status != 200:
        return StreamResult(False, f"status:{status}")
    if not resp.complete:
        return StreamResult(False, "truncated")
    if end_marker not in resp.last:
        return StreamResult(False, "no-end-marker")
    assert first_byte is not None
    return StreamResult(
        True,
        first_byte_ms=(first_byte - t0) * 1000,
        first_token_ms=None if resp.first_token is None else (resp.first_token - t0) * 1000,
        total_ms=(end - t0) * 1000,
        markers=resp.markers,
    )


def http_request(host: str, port: int, path: str, body: bytes) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nhost: {host}:{port}\r\ncontent-type: application/json\r\n"
        f"accept: text/event-stream\r\nconnection: close\r\ncontent-length: {len(body)}\r\n\r\n"
    ).encode() + body


async def run_streams(
    host: str,
    port: int,
    path: str,
    body: bytes,
    *,
    n: int,
    ramp_s: float,
    marker: bytes,
    end_marker: bytes,
    concurrency: int | None = None,
    timeout_s: float = 60.0,
) -> StreamsReport:
    """Start ``n`` streams spread over ``ramp_s`` (at most ``concurrency`` at once)."""
    request = http_request(host, port, path, body)
    opened = [0, 0]  # open now, most open at once
    gate = asyncio.Semaphore(concurrency or n)
    # A collector pause in this client would show up as the server's latency: none here.
    gc.collect()
    gc.disable()

    async def launch(i: int) -> StreamResult:
        delay = start + (ramp_s * i / n) - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        async with gate:
            return await one_stream(host, port, request, marker, end_marker, timeout_s, opened)

    # The ramp's clock starts once every task exists: creating 1,000 of them takes a few ms,
    # and the streams due meanwhile would otherwise all start at once, as a burst.
    tasks = [asyncio.ensure_future(launch(i)) for i in range(n)]
    start = time.perf_counter()
    try:
        results = await asyncio.gather(*tasks)
    finally:
        gc.enable()
    wall = time.perf_counter() - start
    kinds: dict[str, int] = {}
    for r in results:
        if not r.ok:
            kinds[r.error or "?"] = kinds.get(r.error or "?", 0) + 1
    good = [r for r in results if r.ok]
    return StreamsReport(
        streams=n,
        completed=len(good),
        errors=n - len(good),
        error_kinds=kinds,
        max_open=opened[1],
        wall_s=wall,
        markers=sum(r.markers for r in good),
        first_byte_ms=[r.first_byte_ms for r in good if r.first_byte_ms is not None],
        first_token_ms=[r.first_token_ms for r in good if r.first_token_ms is not None],
        total_ms=[r.total_ms for r in good if r.total_ms is not None],
    )
