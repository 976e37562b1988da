"""The garbage collector, set up for serving: full collections on a clock, none left to do."""

from __future__ import annotations

import asyncio
import gc
import weakref

import httpx
import pytest
import uvloop

from gateway import collector
from gateway.api.disconnect import CancelOnDisconnect
from tests.support.server import running_gateway


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def a_cycle() -> weakref.ref[Node]:
    first, second = Node(), Node()
    first.other, second.other = second, first
    return weakref.ref(first)


def test_settle_freezes_startup_and_stops_allocation_driven_full_collections(
    restored_gc: None,
) -> None:
    collector.settle()
    assert gc.get_threshold()[1:] == (2, 1 << 30)
    assert gc.get_freeze_count() > 1000  # the modules and config loaded so far


async def test_the_clock_collects_cycles_young_collections_left(restored_gc: None) -> None:
    gc.disable()  # only the clock collects
    cycle = a_cycle()
    assert cycle() is not None  # a cycle: reference counting cannot free it
    clock = asyncio.create_task(collector.collect_on_a_clock(interval=0.01))
    try:
        await asyncio.sleep(0.1)
        assert cycle() is None
    finally:
        clock.cancel()


async def test_a_due_collection_waits_for_an_idle_moment(restored_gc: None) -> None:
    gc.disable()
    busy = True
    cycle = a_cycle()
    clock = asyncio.create_task(
        collector.collect_on_a_clock(idle=lambda: not busy, interval=0.01, longest=60)
    )
    try:
        await asyncio.sleep(0.1)
        assert cycle() is not None  # due, but requests are in flight
        busy = False
        await asyncio.sleep(0.1)
        assert cycle() is None
    finally:
        clock.cancel()


async def test_a_worker_that_is_never_idle_still_collects_at_the_longest(
    restored_gc: None,
) -> None:
    gc.disable()
    cycle = a_cycle()
    clock = asyncio.create_task(
        collector.collect_on_a_clock(idle=lambda: False, interval=0.01, longest=0.05)
    )
    try:
        await asyncio.sleep(0.2)
        assert cycle() is None
    finally:
        clock.cancel()


@pytest.mark.parametrize("stream", [False, True])
def test_a_served_request_leaves_no_cyclic_garbage(restored_gc: None, stream: bool) -> None:
    config = "providers:\n  echo: {preset: echo}\n"
    with running_gateway(config) as base_url:
        body = {"model": "echo", "input": "one two three", "stream": stream}
        httpx.post(f"{base_url}/v1/responses", json=body).raise_for_status()  # warm
        gc.collect()
        gc.disable()
        gc.set_debug(gc.DEBUG_SAVEALL)  # what a collection finds is kept for inspection
        for _ in range(10):
            answer = httpx.post(f"{base_url}/v1/responses", json=body)
            assert answer.status_code == 200
        gc.collect()
        kinds = {type(thing).__name__ for thing in gc.garbage}
    # The request's own objects were all freed by reference counting as it ended.
    assert not kinds & {"RequestRecord", "Attempt", "CancelOnDisconnect", "CancelledError", "Flow"}


def test_the_disconnect_watcher_ends_without_leaving_garbage(restored_gc: None) -> None:
    """Under uvloop, as served: a cancelled watcher would leave its CancelledError and
    frames in a cycle on every request."""

    async def requests() -> None:
        for _ in range(5):
            response_complete = asyncio.Event()

            async def receive(event: asyncio.Event = response_complete) -> dict[str, str]:
                await event.wait()  # uvicorn wakes a pending receive when the response is done
                return {"type": "http.disconnect"}

            async with CancelOnDisconnect(receive, watch_after=0):  # watched from the start
                await asyncio.sleep(0)
            response_complete.set()
        await asyncio.sleep(0.01)  # the watchers see the end and return

    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    uvloop.run(requests())
    gc.collect()
    kinds = {type(thing).__name__ for thing in gc.garbage}
    assert not kinds & {"CancelOnDisconnect", "CancelledError", "Task", "frame"}
