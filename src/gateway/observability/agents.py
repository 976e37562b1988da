"""Agent bus metrics, counted by wrapping whichever bus the config chose.

Sent: one per accepted message. Delivered: each message the first time this process hands it
to a reader of an inbox (a page, a long poll or the SSE push). Inbox depth: accepted for an
agent and not yet delivered, kept as increments and decrements, so the sum over workers and
replicas is right even when one process accepts a message and another delivers it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from gateway.agents.bus import AgentBus
from gateway.agents.config import AgentsConfig, Retention
from gateway.agents.messages import OutgoingMessage, Page, Position, StoredMessage
from gateway.observability.metrics import GatewayMetrics


class InstrumentedBus(AgentBus):
    def __init__(self, inner: AgentBus, metrics: GatewayMetrics) -> None:
        self.inner = inner
        self._metrics = metrics
        self._delivered: dict[str, Position] = {}  # agent id → newest position handed out

    async def send(
        self, message: OutgoingMessage, *, recipients: Sequence[str], retention: Retention
    ) -> StoredMessage:
        stored = await self.inner.send(message, recipients=recipients, retention=retention)
        self._metrics.agent_message_sent(message.channel, recipients)
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
        page = await self.inner.read(agent_id, config=config, after=after, limit=limit, wait=wait)
        if page.messages:
            newest = self._delivered.get(agent_id)
            fresh = Counter(
                message.message.channel
                for message in page.messages
                if newest is None or message.position > newest
            )
            if fresh:
                last = max(message.position for message in page.messages)
                self._delivered[agent_id] = last if newest is None else max(last, newest)
                self._metrics.agent_messages_delivered(agent_id, fresh)
        return page

    async def close(self) -> None:
        await self.inner.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)  # backend extras (a Redis client, test hooks)
