"""What every agent bus backend guarantees: run against the memory bus and a real Redis."""

from __future__ import annotations

import asyncio
import time

from gateway.agents.bus import AgentBus
from gateway.agents.config import DEFAULT_RETENTION, AgentsConfig, Retention
from gateway.agents.messages import OutgoingMessage, Position, StoredMessage

CONFIG = AgentsConfig.from_dict(
    {
        "channels": {
            "review": {"members": ["planner", "coder", "reviewer"]},
            "tiny": {
                "members": ["planner", "coder"],
                "retention": {"max_messages": 3, "max_age_seconds": 3600},
            },
            "brief": {
                "members": ["planner", "coder"],
                "retention": {"max_messages": 100, "max_age_seconds": 0.3},
            },
        }
    }
)


def direct(sender: str, recipient: str, content: str = "hi") -> OutgoingMessage:
    return OutgoingMessage(sender=sender, recipient=recipient, channel=None, content=content)


def on_channel(sender: str, channel: str, content: str = "hi") -> OutgoingMessage:
    return OutgoingMessage(sender=sender, recipient=channel, channel=channel, content=content)


async def send_direct(bus: AgentBus, sender: str, recipient: str, content: str) -> StoredMessage:
    return await bus.send(
        direct(sender, recipient, content), recipients=[recipient], retention=DEFAULT_RETENTION
    )


async def send_channel(
    bus: AgentBus, sender: str, channel: str, content: str, recipients: list[str]
) -> StoredMessage:
    return await bus.send(
        on_channel(sender, channel, content),
        recipients=recipients,
        retention=CONFIG.retention_for(channel),
    )


def contents(messages: tuple[StoredMessage, ...]) -> list[object]:
    return [message.message.content for message in messages]


async def test_send_assigns_id_sequence_and_time(bus: AgentBus) -> None:
    before = int(time.time())
    first = await send_direct(bus, "planner", "coder", "one")
    second = await send_direct(bus, "planner", "coder", "two")

    assert first.id.startswith("amsg_")
    assert Position.from_message_id(first.id) == first.position
    assert second.sequence > first.sequence
    assert second.position > first.position
    assert before <= first.created_at <= int(time.time())
    assert first.to_dict() == {
        "id": first.id,
        "object": "agent.message",
        "created_at": first.created_at,
        "sequence": first.sequence,
        "sender": "planner",
        "recipient": "coder",
        "channel": None,
        "content": "one",
        "kind": "message",
        "thread_id": None,
        "reply_to": None,
        "metadata": {},
    }


async def test_direct_message_reaches_only_its_recipient(bus: AgentBus) -> None:
    sent = await send_direct(bus, "planner", "coder", "do it")

    coder = await bus.read("coder", config=CONFIG)
    reviewer = await bus.read("reviewer", config=CONFIG)

    assert [message.id for message in coder.messages] == [sent.id]
    assert coder.messages[0] == sent
    assert reviewer.messages == ()
    assert reviewer.next_cursor is None


async def test_channel_message_reaches_every_recipient_with_the_same_id(bus: AgentBus) -> None:
    sent = await send_channel(bus, "planner", "review", "plan", ["coder", "reviewer"])

    for agent in ("coder", "reviewer"):
        page = await bus.read(agent, config=CONFIG)
        assert [message.id for message in page.messages] == [sent.id]
        assert page.messages[0].message.channel == "review"
    assert (await bus.read("planner", config=CONFIG)).messages == ()


async def test_inbox_merges_direct_and_channel_messages_in_acceptance_order(
    bus: AgentBus,
) -> None:
    await send_direct(bus, "planner", "coder", "d1")
    await send_channel(bus, "planner", "review", "c1", ["coder"])
    await send_channel(bus, "planner", "tiny", "t1", ["coder"])
    await send_direct(bus, "reviewer", "coder", "d2")
    await send_channel(bus, "reviewer", "review", "c2", ["coder"])

    page = await bus.read("coder", config=CONFIG)

    assert contents(page.messages) == ["d1", "c1", "t1", "d2", "c2"]
    positions = [message.position for message in page.messages]
    assert positions == sorted(positions)
    assert page.has_more is False


async def test_cursor_pages_through_the_inbox_without_gaps_or_repeats(bus: AgentBus) -> None:
    for i in range(5):
        if i % 2:
            await send_direct(bus, "planner", "coder", f"m{i}")
        else:
            await send_channel(bus, "planner", "review", f"m{i}", ["coder"])

    first = await bus.read("coder", config=CONFIG, limit=2)
    second = await bus.read(
        "coder", config=CONFIG, after=Position.from_message_id(first.next_cursor or ""), limit=2
    )
    third = await bus.read(
        "coder", config=CONFIG, after=Position.from_message_id(second.next_cursor or ""), limit=2
    )
    cursor = Position.from_message_id(third.next_cursor or "")
    empty = await bus.read("coder", config=CONFIG, after=cursor, limit=2)

    assert contents(first.messages) == ["m0", "m1"]
    assert first.has_more is True
    assert first.next_cursor == first.messages[-1].id
    assert contents(second.messages) == ["m2", "m3"]
    assert second.has_more is True
    assert contents(third.messages) == ["m4"]
    assert third.has_more is False
    assert empty.messages == ()
    assert empty.has_more is False
    assert empty.next_cursor == third.next_cursor


async def test_long_poll_returns_as_soon_as_a_message_arrives(bus: AgentBus) -> None:
    await send_direct(bus, "planner", "coder", "old")
    cursor = (await bus.read("coder", config=CONFIG)).messages[-1].position

    async def send_later() -> None:
        await asyncio.sleep(0.2)
        await send_channel(bus, "planner", "review", "new", ["coder"])

    started = time.monotonic()
    sender = asyncio.create_task(send_later())
    page = await bus.read("coder", config=CONFIG, after=cursor, wait=5)
    elapsed = time.monotonic() - started
    await sender

    assert contents(page.messages) == ["new"]
    assert 0.15 < elapsed < 1.5


async def test_long_poll_ends_empty_after_wait(bus: AgentBus) -> None:
    started = time.monotonic()
    page = await bus.read("coder", config=CONFIG, wait=0.3)
    elapsed = time.monotonic() - started

    assert page.messages == ()
    assert 0.25 < elapsed < 1.5


async def test_long_poll_is_not_woken_by_another_agents_mail(bus: AgentBus) -> None:
    async def send_to_reviewer() -> None:
        await asyncio.sleep(0.1)
        await send_direct(bus, "planner", "reviewer", "not for coder")

    sender = asyncio.create_task(send_to_reviewer())
    page = await bus.read("coder", config=CONFIG, wait=0.4)
    await sender

    assert page.messages == ()


async def test_retention_keeps_only_the_newest_max_messages_per_channel(bus: AgentBus) -> None:
    for i in range(5):
        await send_channel(bus, "planner", "tiny", f"t{i}", ["coder"])
    await send_direct(bus, "planner", "coder", "direct survives")

    page = await bus.read("coder", config=CONFIG)

    assert contents(page.messages) == ["t2", "t3", "t4", "direct survives"]


async def test_retention_drops_messages_older_than_max_age(bus: AgentBus) -> None:
    await send_channel(bus, "planner", "brief", "short-lived", ["coder"])
    await send_direct(bus, "planner", "coder", "long-lived")
    assert len((await bus.read("coder", config=CONFIG)).messages) == 2

    await asyncio.sleep(0.4)

    page = await bus.read("coder", config=CONFIG)
    assert contents(page.messages) == ["long-lived"]


async def test_delivered_messages_survive_the_channel_leaving_the_config(bus: AgentBus) -> None:
    await send_channel(bus, "planner", "review", "before reload", ["coder"])
    reloaded = AgentsConfig.from_dict({"channels": {"other": {"members": ["planner"]}}})

    page = await bus.read("coder", config=reloaded)

    assert contents(page.messages) == ["before reload"]


async def test_concurrent_burst_from_many_senders_is_delivered_whole_and_ordered(
    bus: AgentBus,
) -> None:
    senders, per_sender = 20, 25

    async def sender(n: int) -> None:
        for i in range(per_sender):
            await send_channel(
                bus, f"sender{n}", "review", f"{n}:{i}", ["planner", "coder", "reviewer"]
            )

    await asyncio.gather(*(sender(n) for n in range(senders)))

    for agent in ("planner", "coder", "reviewer"):
        page = await bus.read(agent, config=CONFIG, limit=1000)
        assert len(page.messages) == senders * per_sender
        positions = [message.position for message in page.messages]
        assert positions == sorted(positions)
        assert len(set(positions)) == len(positions)
        for n in range(senders):
            mine = [c for c in contents(page.messages) if str(c).startswith(f"{n}:")]
            assert mine == [f"{n}:{i}" for i in range(per_sender)]


async def test_slow_consumer_with_small_pages_receives_everything_in_order(
    bus: AgentBus,
) -> None:
    total = 120

    async def producer() -> None:
        for i in range(total):
            await send_direct(bus, "planner", "coder", f"m{i}")
            if i % 10 == 0:
                await asyncio.sleep(0.005)

    received: list[object] = []
    cursor: Position | None = None
    producing = asyncio.create_task(producer())
    while len(received) < total:
        page = await bus.read("coder", config=CONFIG, after=cursor, limit=7, wait=1)
        assert page.messages, "a long poll returned empty while messages were still coming"
        received += contents(page.messages)
        cursor = page.messages[-1].position
        await asyncio.sleep(0.002)  # the consumer is slower than the producer
    await producing

    assert received == [f"m{i}" for i in range(total)]


async def test_close_wakes_waiting_readers(bus: AgentBus) -> None:
    reader = asyncio.create_task(bus.read("coder", config=CONFIG, wait=10))
    await asyncio.sleep(0.1)
    started = time.monotonic()

    await bus.close()
    page = await asyncio.wait_for(reader, 2)

    assert page.messages == ()
    assert time.monotonic() - started < 1.5


async def test_retention_argument_bounds_only_its_own_source(bus: AgentBus) -> None:
    small = Retention(max_messages=1, max_age_seconds=60)
    await bus.send(on_channel("planner", "tiny", "a"), recipients=["coder"], retention=small)
    await bus.send(on_channel("planner", "tiny", "b"), recipients=["coder"], retention=small)
    await bus.send(direct("planner", "coder", "c"), recipients=["coder"], retention=small)

    page = await bus.read("coder", config=CONFIG)

    assert contents(page.messages) == ["b", "c"]
