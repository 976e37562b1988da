"""The agent bus: the store behind agent inboxes, in memory or on Redis.

The bus fans a message out at send time: a channel message is appended to the inbox of each
agent that is a member when it is accepted. Inboxes are kept per agent and per source (direct
messages, and one per channel), so retention applies per channel, and a message accepted for an
agent stays in its inbox whatever later config reloads do to the channel. Routing policy (who
may send where, who the members are) is decided by the caller from the current config; the bus
only stores, orders and wakes readers.
"""

from __future__ import annotations

import abc
import asyncio
import heapq
import time
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence

from gateway.agents.config import AgentsConfig, Retention
from gateway.agents.messages import OutgoingMessage, Page, Position, StoredMessage

MAX_WAIT_SECONDS = 30.0


class BusUnavailableError(Exception):
    """The backend cannot be reached; the request may be retried."""


class AgentBus(abc.ABC):
    @abc.abstractmethod
    async def send(
        self, message: OutgoingMessage, *, recipients: Sequence[str], retention: Retention
    ) -> StoredMessage:
        """Accept ``message`` and append it to each recipient's inbox, atomically.

        ``retention`` bounds the inbox source the message lands in (its channel, or direct).
        """

    @abc.abstractmethod
    async def read(
        self,
        agent_id: str,
        *,
        config: AgentsConfig,
        after: Position | None = None,
        limit: int = 100,
        wait: float = 0.0,
    ) -> Page:
        """The messages of ``agent_id``'s inbox after ``after``, oldest first.

        When there are none, wait up to ``wait`` seconds (capped at ``MAX_WAIT_SECONDS``) for
        one to arrive. ``config`` supplies each channel's retention, so an age limit applies
        at read time, not only when the inbox is next written.
        """

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections and wake every waiting reader."""


class InboxSignals:
    """Wakes the readers of one process that wait on an inbox.

    A reader calls ``watch`` *before* it reads, then waits on the event if the read was empty;
    ``notify`` sets and drops the events, so a message accepted between the read and the wait
    still wakes the reader.
    """

    def __init__(self) -> None:
        self._events: dict[str, asyncio.Event] = {}

    def watch(self, agent_id: str) -> asyncio.Event:
        event = self._events.get(agent_id)
        if event is None:
            event = self._events[agent_id] = asyncio.Event()
        return event

    def notify(self, agent_ids: Iterable[str]) -> None:
        for agent_id in agent_ids:
            event = self._events.pop(agent_id, None)
            if event is not None:
                event.set()

    def notify_all(self) -> None:
        self.notify(list(self._events))


async def wait_for_signal(event: asyncio.Event, timeout: float) -> None:
    """Wait until ``event`` is set or ``timeout`` passes, whichever comes first."""
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        pass


def merge_page(
    sources: Iterable[Sequence[StoredMessage]], after: Position | None, limit: int
) -> Page:
    """Merge per-source slices (each sorted, each holding up to ``limit + 1`` messages after
    the cursor) into one page in position order."""
    merged = list(heapq.merge(*sources, key=lambda message: message.position))
    page = tuple(merged[:limit])
    if page:
        next_cursor: str | None = page[-1].id
    else:
        next_cursor = after.message_id if after is not None else None
    return Page(page, next_cursor, has_more=len(merged) > limit)


def age_floor(now_ms: int, retention: Retention) -> Position:
    """The oldest position ``retention`` still keeps at ``now_ms``."""
    return Position(max(now_ms - int(retention.max_age_seconds * 1000), 0), 0)


class MemoryBus(AgentBus):
    """The embedded backend: one process, nothing to install, nothing kept over a restart."""

    def __init__(self) -> None:
        # agent id -> source ("" for direct messages, else the channel name) -> messages
        self._inboxes: dict[str, dict[str, list[StoredMessage]]] = {}
        self._signals = InboxSignals()
        self._last = Position(0, 0)
        self._closed = False

    async def send(
        self, message: OutgoingMessage, *, recipients: Sequence[str], retention: Retention
    ) -> StoredMessage:
        now_ms = max(time.time_ns() // 1_000_000, self._last.ms)
        self._last = Position(now_ms, self._last.sequence + 1)
        stored = StoredMessage(self._last, message)
        floor = age_floor(now_ms, retention)
        source = message.channel or ""
        for agent_id in recipients:
            inbox = self._inboxes.setdefault(agent_id, {}).setdefault(source, [])
            inbox.append(stored)
            keep_from = max(
                len(inbox) - retention.max_messages,
                bisect_left(inbox, floor, key=_position),
            )
            if keep_from > 0:
                del inbox[:keep_from]
        self._signals.notify(recipients)
        return stored

    async def read(
        self,
        agent_id: str,
        *,
        config: AgentsConfig,
        after: Position | None = None,
        limit: int = 100,
        wait: float = 0.0,
    ) -> Page:
        deadline = time.monotonic() + min(max(wait, 0.0), MAX_WAIT_SECONDS)
        while True:
            signal = self._signals.watch(agent_id)
            page = self._page(agent_id, config, after, limit)
            remaining = deadline - time.monotonic()
            if page.messages or remaining <= 0 or self._closed:
                return page
            await wait_for_signal(signal, remaining)

    async def close(self) -> None:
        self._closed = True
        self._signals.notify_all()

    def _page(
        self, agent_id: str, config: AgentsConfig, after: Position | None, limit: int
    ) -> Page:
        now_ms = time.time_ns() // 1_000_000
        slices = []
        for source, inbox in self._inboxes.get(agent_id, {}).items():
            floor = age_floor(now_ms, config.retention_for(source or None))
            start = bisect_left(inbox, floor, key=_position)
            if after is not None:
                start = max(start, bisect_right(inbox, after, key=_position))
            slices.append(inbox[start : start + limit + 1])
        return merge_page(slices, after, limit)


def _position(message: StoredMessage) -> Position:
    return message.position


def create_bus(backend_url: str) -> AgentBus:
    """The bus for ``agents.backend``: ``memory``, or a ``redis://``/``rediss://``/``unix://``
    URL."""
    if backend_url == "memory":
        return MemoryBus()
    # Imported here so the memory backend never loads the Redis client.
    from gateway.agents.redis_bus import RedisBus

    return RedisBus.from_url(backend_url)
