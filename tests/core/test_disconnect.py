"""A client that leaves cancels the work done for it; quick work is never watched at all."""

from __future__ import annotations

import asyncio

import pytest
from starlette.types import Message

from gateway.api.disconnect import CancelOnDisconnect, ClientDisconnected


class Client:
    """An ASGI ``receive`` whose client leaves when told to (or when the answer is done)."""

    def __init__(self) -> None:
        self.left = asyncio.Event()
        self.receives = 0

    async def receive(self) -> Message:
        self.receives += 1
        await self.left.wait()
        return {"type": "http.disconnect"}


async def test_work_for_a_client_that_leaves_is_cancelled() -> None:
    client = Client()
    asyncio.get_running_loop().call_later(0.05, client.left.set)
    with pytest.raises(ClientDisconnected):
        async with CancelOnDisconnect(client.receive, watch_after=0.01):
            await asyncio.sleep(5)
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0  # the cancellation was taken back


async def test_a_client_leaving_before_the_watch_starts_is_noticed_when_it_starts() -> None:
    client = Client()
    client.left.set()
    started = asyncio.get_running_loop().time()
    with pytest.raises(ClientDisconnected):
        async with CancelOnDisconnect(client.receive, watch_after=0.05):
            await asyncio.sleep(5)
    assert 0.04 <= asyncio.get_running_loop().time() - started < 1


async def test_quick_work_is_never_watched() -> None:
    client = Client()
    async with CancelOnDisconnect(client.receive, watch_after=0.05) as watch:
        await asyncio.sleep(0.001)
    await asyncio.sleep(0.1)  # past the watch time: the timer was cancelled with the block
    assert client.receives == 0
    assert not watch.disconnected


async def test_a_disconnect_after_the_work_is_nobodys_business() -> None:
    client = Client()
    async with CancelOnDisconnect(client.receive, watch_after=0) as watch:
        await asyncio.sleep(0.01)
    client.left.set()  # as uvicorn does once the answer is complete
    await asyncio.sleep(0.01)
    assert client.receives == 1
    assert not watch.disconnected
