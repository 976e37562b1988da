"""What only the Redis backend promises: sharing across replicas and surviving restarts."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio

from gateway.agents.bus import BusUnavailableError
from gateway.agents.config import DEFAULT_RETENTION, AgentsConfig, Retention
from gateway.agents.messages import OutgoingMessage
from gateway.agents.redis_bus import RedisBus

CONFIG = AgentsConfig.from_dict({"channels": {"review": {"members": ["planner", "coder"]}}})


SEND_FROM_CHILD = """
import asyncio, sys
from gateway.agents.bus import create_bus
from gateway.agents.config import DEFAULT_RETENTION
from gateway.agents.messages import OutgoingMessage

async def main():
    bus = create_bus(sys.argv[1])
    await asyncio.sleep(0.3)
    message = OutgoingMessage("planner", "coder", None, "from a process")
    await bus.send(message, recipients=["coder"], retention=DEFAULT_RETENTION)
    await bus.close()

asyncio.run(main())
"""


def direct(sender: str, recipient: str, content: str) -> OutgoingMessage:
    return OutgoingMessage(sender=sender, recipient=recipient, channel=None, content=content)


@pytest.fixture
async def two_buses(redis_url: str) -> AsyncIterator[tuple[RedisBus, RedisBus]]:
    """Two buses with their own connection pools, as two gateway replicas have."""
    first, second = RedisBus.from_url(redis_url), RedisBus.from_url(redis_url)
    try:
        yield first, second
    finally:
        await first.close()
        await second.close()


async def test_a_send_on_one_replica_wakes_a_long_poll_on_another(
    two_buses: tuple[RedisBus, RedisBus],
) -> None:
    sender_side, reader_side = two_buses

    async def send_later() -> None:
        await asyncio.sleep(0.2)
        await sender_side.send(
            direct("planner", "coder", "across"), recipients=["coder"], retention=DEFAULT_RETENTION
        )

    started = time.monotonic()
    sending = asyncio.create_task(send_later())
    page = await reader_side.read("coder", config=CONFIG, wait=5)
    elapsed = time.monotonic() - started
    await sending

    assert [m.message.content for m in page.messages] == ["across"]
    assert elapsed < 1.5


async def test_a_send_from_another_os_process_wakes_a_long_poll(redis_url: str) -> None:
    bus = RedisBus.from_url(redis_url)
    child = subprocess.Popen([sys.executable, "-c", SEND_FROM_CHILD, redis_url])
    try:
        page = await bus.read("coder", config=CONFIG, wait=10)
    finally:
        assert child.wait(timeout=10) == 0
        await bus.close()

    assert [m.message.content for m in page.messages] == ["from a process"]


async def test_replicas_agree_on_one_order(two_buses: tuple[RedisBus, RedisBus]) -> None:
    first, second = two_buses

    async def burst(bus: RedisBus, name: str) -> None:
        for i in range(40):
            await bus.send(
                direct(name, "coder", f"{name}{i}"),
                recipients=["coder"],
                retention=DEFAULT_RETENTION,
            )

    await asyncio.gather(burst(first, "a"), burst(second, "b"))

    seen_by_first = await first.read("coder", config=CONFIG, limit=1000)
    seen_by_second = await second.read("coder", config=CONFIG, limit=1000)
    assert [m.id for m in seen_by_first.messages] == [m.id for m in seen_by_second.messages]
    sequences = [m.sequence for m in seen_by_first.messages]
    assert sequences == sorted(sequences) and len(set(sequences)) == 80


async def test_messages_survive_a_gateway_restart(redis_url: str) -> None:
    before = RedisBus.from_url(redis_url)
    sent = await before.send(
        direct("planner", "coder", "kept"), recipients=["coder"], retention=DEFAULT_RETENTION
    )
    await before.close()

    after = RedisBus.from_url(redis_url)
    try:
        page = await after.read("coder", config=CONFIG)
        later = await after.send(
            direct("planner", "coder", "next"), recipients=["coder"], retention=DEFAULT_RETENTION
        )
    finally:
        await after.close()

    assert [m.id for m in page.messages] == [sent.id]
    assert later.position > sent.position


async def test_many_long_polls_share_a_small_connection_pool(redis_url: str) -> None:
    bus = RedisBus.from_url(redis_url, max_connections=3)
    agents = [f"agent{i}" for i in range(20)]
    try:
        readers = [asyncio.create_task(bus.read(agent, config=CONFIG, wait=5)) for agent in agents]
        await asyncio.sleep(0.2)
        started = time.monotonic()
        for agent in agents:
            await bus.send(
                direct("planner", agent, agent), recipients=[agent], retention=DEFAULT_RETENTION
            )
        pages = await asyncio.wait_for(asyncio.gather(*readers), 3)
    finally:
        await bus.close()

    assert [page.messages[0].message.content for page in pages] == agents
    assert time.monotonic() - started < 2


async def test_positions_stay_increasing_when_the_clock_goes_back(redis_url: str) -> None:
    bus = RedisBus.from_url(redis_url)
    client = redis.asyncio.Redis.from_url(redis_url)
    ahead_ms = int(time.time() * 1000) + 60_000
    try:
        first = await bus.send(
            direct("planner", "coder", "one"), recipients=["coder"], retention=DEFAULT_RETENTION
        )
        await client.set("gateway:agents:clock", ahead_ms)  # as if the clock had stepped back
        second = await bus.send(
            direct("planner", "coder", "two"), recipients=["coder"], retention=DEFAULT_RETENTION
        )
        third = await bus.send(
            direct("planner", "coder", "three"), recipients=["coder"], retention=DEFAULT_RETENTION
        )
    finally:
        await client.aclose()
        await bus.close()

    assert first.position < second.position < third.position
    assert second.position.ms == ahead_ms


async def test_inbox_keys_expire_with_their_retention(redis_url: str) -> None:
    bus = RedisBus.from_url(redis_url)
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        await bus.send(
            OutgoingMessage("planner", "review", "review", "x"),
            recipients=["coder"],
            retention=Retention(max_messages=10, max_age_seconds=2),
        )
        stream_ttl = await client.pttl("gateway:agents:inbox:coder:c:review")
        sources_ttl = await client.pttl("gateway:agents:sources:coder")
    finally:
        await client.aclose()
        await bus.close()

    assert 0 < stream_ttl <= 2000
    assert 0 < sources_ttl <= 2000


async def test_an_unreachable_redis_is_reported_as_unavailable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    bus = RedisBus.from_url(f"redis://127.0.0.1:{closed_port}/0")
    try:
        with pytest.raises(BusUnavailableError):
            await bus.send(
                direct("planner", "coder", "x"), recipients=["coder"], retention=DEFAULT_RETENTION
            )
        with pytest.raises(BusUnavailableError):
            await bus.read("coder", config=CONFIG, wait=0.2)
    finally:
        await bus.close()


async def test_an_idle_listener_outlasting_the_socket_timeout_stays_connected(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    bus = RedisBus.from_url(redis_url + "?socket_timeout=0.3")

    async def send_late() -> float:
        await asyncio.sleep(1.0)  # several socket timeouts of idle listening
        await bus.send(
            direct("planner", "coder", "late"), recipients=["coder"], retention=DEFAULT_RETENTION
        )
        return time.monotonic()

    try:
        with caplog.at_level("WARNING", logger="gateway.agents"):
            sending = asyncio.create_task(send_late())
            page = await bus.read("coder", config=CONFIG, wait=3)
            woke = time.monotonic()
            sent_at = await sending
    finally:
        await bus.close()

    assert [m.message.content for m in page.messages] == ["late"]
    assert woke - sent_at < 0.3
    assert [r.getMessage() for r in caplog.records if r.name == "gateway.agents"] == []


async def test_a_channel_stream_created_during_a_read_is_not_skipped(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read that saw only the direct stream must not return a later direct message while
    an earlier channel message sits in a stream it has not read: the cursor would skip it."""
    bus = RedisBus.from_url(redis_url)
    first = await bus.send(
        direct("planner", "coder", "first"), recipients=["coder"], retention=DEFAULT_RETENTION
    )
    take_snapshot = bus._snapshot
    raced = False

    async def snapshot_after_a_race(*args: Any) -> list[Any]:
        nonlocal raced
        if not raced:
            raced = True
            await bus.send(
                OutgoingMessage("planner", "review", "review", "on a new channel"),
                recipients=["coder"],
                retention=DEFAULT_RETENTION,
            )
            await bus.send(
                direct("planner", "coder", "direct, later"),
                recipients=["coder"],
                retention=DEFAULT_RETENTION,
            )
        return await take_snapshot(*args)

    monkeypatch.setattr(bus, "_snapshot", snapshot_after_a_race)
    try:
        page = await bus.read("coder", config=CONFIG, after=first.position)
    finally:
        await bus.close()

    assert raced
    assert [m.message.content for m in page.messages] == ["on a new channel", "direct, later"]
