"""Fixtures for the agent bus tests: a real ``redis-server`` and buses on both backends."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from gateway.agents.bus import AgentBus, MemoryBus
from gateway.agents.redis_bus import RedisBus
from tests.support.redis import redis_server, redis_url

__all__ = ["redis_server", "redis_url"]  # a real redis-server: tests/support/redis.py


@pytest.fixture(params=["memory", "redis"])
async def bus(request: pytest.FixtureRequest) -> AsyncIterator[AgentBus]:
    """The same behaviour is required of both backends."""
    if request.param == "memory":
        instance: AgentBus = MemoryBus()
    else:
        instance = RedisBus.from_url(request.getfixturevalue("redis_url"))
    try:
        yield instance
    finally:
        await instance.close()
