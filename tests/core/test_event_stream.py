"""``EventStream`` sends its body's chunks in order and closes the body however it ends."""

from __future__ import annotations

import asyncio

import pytest
from starlette.types import Message

from gateway.api.event_stream import EventStream


class Body:
    """A stream body: ``chunks`` in order (waiting forever once ``stall`` is set), then the
    end; it records what the stream asked of it."""

    def __init__(self, *chunks: bytes, stall: bool = False) -> None:
        self.chunks = list(chunks)
        self.stall = stall
        self.reads = 0
        self.closes = 0

    async def next_chunk(self) -> bytes | None:
        self.reads += 1
        if self.chunks:
            return self.chunks.pop(0)
        if self.stall:
            await asyncio.Event().wait()
        return None

    async def aclose(self) -> None:
        self.closes += 1


async def stays() -> Message:
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


async def test_chunks_go_out_in_order_then_the_end_and_the_body_is_closed_once() -> None:
    body = Body(b"one", b"two")
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    await EventStream(body, {"content-type": "text/event-stream"})({}, stays, send)

    assert sent[0] == {
        "type": "http.response.start",
        "status": 200,
        "headers": [(b"content-type", b"text/event-stream")],
    }
    assert [(m["body"], m["more_body"]) for m in sent[1:]] == [
        (b"one", True),
        (b"two", True),
        (b"", False),
    ]
    assert body.closes == 1


async def test_a_client_gone_before_the_first_chunk_still_closes_the_body() -> None:
    body = Body(b"never sent")

    async def send(message: Message) -> None:
        raise OSError("the connection is gone")

    with pytest.raises(OSError):
        await EventStream(body, {})({}, stays, send)

    assert body.reads == 0
    assert body.closes == 1  # the upstream and the record are released all the same


async def test_a_client_that_leaves_mid_stream_cancels_the_read_and_closes_the_body() -> None:
    body = Body(b"first", stall=True)
    left = asyncio.Event()
    sent: list[bytes] = []

    async def receive() -> Message:
        await left.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message.get("body", b""))
        if message.get("body") == b"first":
            asyncio.get_running_loop().call_later(0.01, left.set)

    await asyncio.wait_for(EventStream(body, {})({}, receive, send), 5)

    assert sent == [b"", b"first"]  # the head, the first chunk; no end for a client gone
    assert body.reads == 2
    assert body.closes == 1
