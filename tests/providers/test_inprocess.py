"""``InProcessClient``: a builtin:// upstream answers like one across the network."""

from __future__ import annotations

import asyncio
from collections.abc import MutableMapping
from typing import Any

import orjson
import pytest

from gateway.providers.builtin import Receive, Send, echo_app
from gateway.providers.http1 import ProtocolError, ReadTimeout, Timeouts
from gateway.providers.inprocess import InProcessClient
from tests.support.pieces import read_pieces

Scope = MutableMapping[str, Any]


async def test_a_whole_answer_has_status_headers_and_body() -> None:
    client = InProcessClient(echo_app)
    body = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "hi there"}]})
    response = await client.request(
        "POST", "builtin://echo/v1/chat/completions", headers={}, body=body
    )
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/json"
    answer = orjson.loads(await response.read())
    assert answer["choices"][0]["message"]["content"] == "hi there"
    assert client.in_flight == 0


async def test_a_streamed_answer_arrives_piece_by_piece() -> None:
    client = InProcessClient(echo_app)
    body = orjson.dumps(
        {"model": "m", "stream": True, "messages": [{"role": "user", "content": "a b c"}]}
    )
    response = await client.request("POST", "builtin://echo/v1/chat", headers={}, body=body)
    assert client.in_flight == 1  # until the body is read or closed
    pieces = await read_pieces(response)
    assert len(pieces) > 3 and pieces[-1] == b"data: [DONE]\n\n"
    assert client.in_flight == 0


async def test_an_app_that_fails_before_answering_is_a_protocol_error() -> None:
    async def broken(scope: Scope, receive: Receive, send: Send) -> None:
        raise RuntimeError("bug")

    with pytest.raises(ProtocolError, match="RuntimeError"):
        await InProcessClient(broken).request("POST", "builtin://x/", headers={})


async def test_an_app_that_never_answers_is_a_protocol_error() -> None:
    async def silent(scope: Scope, receive: Receive, send: Send) -> None:
        return None

    with pytest.raises(ProtocolError, match="no response"):
        await InProcessClient(silent).request("POST", "builtin://x/", headers={})


async def test_a_stalled_body_is_a_read_timeout_and_the_app_is_cancelled() -> None:
    cancelled = asyncio.Event()

    async def stalls(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"first", "more_body": True})
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    client = InProcessClient(stalls)
    response = await client.request(
        "POST", "builtin://x/", headers={}, timeouts=Timeouts(read=0.05)
    )
    received: list[bytes] = []
    with pytest.raises(ReadTimeout):
        await read_pieces(response, received)
    assert received == [b"first"]
    await asyncio.wait_for(cancelled.wait(), 1)
    assert client.in_flight == 0
