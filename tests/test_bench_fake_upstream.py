"""The benchmark's fake upstream frees what a connection allocates by reference counting.

It runs with full collections switched off (``python -m bench.fake_upstream`` settles its
collector like the gateway), so a reference cycle per connection would pile up for the whole
run; a full collection to clear them would stall every open stream and show up as the
latency of whichever target was being measured.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator

import pytest
from bench.fake_upstream import FakeUpstream


@pytest.fixture
def saved_garbage() -> Iterator[None]:
    """Collector off, and whatever a collection finds kept for inspection; restored after."""
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        yield
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        if enabled:
            gc.enable()


async def _exchange(port: int, body: bytes, *, close: bool) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nhost: fake\r\ncontent-length: {len(body)}\r\n"
        + ("connection: close\r\n" if close else "")
        + "\r\n"
    )
    writer.write(head.encode() + body)
    answer = b""
    while not answer.endswith(b"0\r\n\r\n") and b"[DONE]" not in answer[-64:]:
        data = await reader.read(65536)
        if not data:
            break
        answer += data
    writer.close()
    await writer.wait_closed()
    return answer


@pytest.mark.parametrize(
    "model", ["bench-c5-d0", "bench-c5-d1"], ids=["whole-write", "paced-on-timers"]
)
@pytest.mark.parametrize("close", [False, True], ids=["keep-alive", "connection-close"])
async def test_a_served_connection_leaves_no_cyclic_garbage(
    saved_garbage: None, model: str, close: bool
) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: FakeUpstream(10, 0), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    body = b'{"model": "%s", "stream": true}' % model.encode()
    try:
        for _ in range(3):
            answer = await _exchange(port, body, close=close)
            assert answer.startswith(b"HTTP/1.1 200") and b"data: [DONE]" in answer
        await asyncio.sleep(0.05)  # the server side sees each connection close
    finally:
        server.close()
        await server.wait_closed()
    gc.collect()
    kinds = {type(thing).__name__ for thing in gc.garbage}
    assert not kinds & {"FakeUpstream", "HttpRequestParser", "function", "cell"}
