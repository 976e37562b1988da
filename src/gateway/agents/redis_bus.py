"""The Redis backend: inboxes as Redis Streams, shared by every gateway replica.

Keys (``prefix`` defaults to ``gateway:agents:``):

- ``{prefix}inbox:{agent}:d`` and ``{prefix}inbox:{agent}:c:{channel}``: one stream per agent
  and source. Entry ids are the message positions (``ms-sequence``), so an id is the same in
  every inbox and works as a cursor across all of an agent's streams.
- ``{prefix}sources:{agent}``: the set of sources (``""`` for direct, else channel names)
  that agent has streams for, so a reader finds messages of channels it has since left.
- ``{prefix}sequence`` / ``{prefix}clock``: the counter and last time that make positions.
- ``{prefix}bell``: one capped stream that names the recipients of each message. Every
  process keeps one blocking ``XREAD`` on it and wakes its local long polls, so a send on one
  replica wakes a reader on another without one Redis connection per waiting reader.

A send is one Lua script, so the position, every inbox append and the bell entry are atomic:
no reader can see a message with a smaller position appear after one with a larger position.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any, TypeVar

import orjson
from redis.asyncio import BlockingConnectionPool, Redis
from redis.exceptions import RedisError

from gateway.agents.bus import (
    MAX_WAIT_SECONDS,
    AgentBus,
    BusUnavailableError,
    InboxSignals,
    age_floor,
    merge_page,
    wait_for_signal,
)
from gateway.agents.config import AgentsConfig, Retention
from gateway.agents.messages import OutgoingMessage, Page, Position, StoredMessage

logger = logging.getLogger("gateway.agents")

DEFAULT_PREFIX = "gateway:agents:"
BELL_MAX_ENTRIES = 10_000
# A waiting reader reads its inbox again this often even without a wake-up, so a missed one
# (the listener reconnecting, the bell trimmed under it) delays a message, never loses it.
RECHECK_SECONDS = 5.0
# The listener's XREAD BLOCK must return before the client's socket timeout (redis-py's
# default is 5 s) or every idle round ends in a TimeoutError and a reconnect.
LISTEN_BLOCK_MS = 2_000

T = TypeVar("T")

# KEYS: sequence, clock, bell, then (inbox stream, sources set) per recipient.
# ARGV: payload, recipients (space separated), bell cap, source, max_messages, max_age_ms.
_SEND_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local last = tonumber(redis.call('GET', KEYS[2]) or '0')
if now < last then now = last end
redis.call('SET', KEYS[2], string.format('%d', now))
local sequence = redis.call('INCR', KEYS[1])
local id = string.format('%d-%d', now, sequence)
local age = tonumber(ARGV[6])
local floor = string.format('%d-0', math.max(now - age, 0))
for i = 4, #KEYS, 2 do
  redis.call('XADD', KEYS[i], 'MAXLEN', ARGV[5], id, 'm', ARGV[1])
  redis.call('XTRIM', KEYS[i], 'MINID', floor)
  redis.call('PEXPIRE', KEYS[i], age)
  redis.call('SADD', KEYS[i + 1], ARGV[4])
  if redis.call('PTTL', KEYS[i + 1]) < age then
    redis.call('PEXPIRE', KEYS[i + 1], age)
  end
end
if #KEYS > 3 then
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[3], id, 'to', ARGV[2])
end
return id
"""


class RedisBus(AgentBus):
    def __init__(self, client: Redis, *, prefix: str = DEFAULT_PREFIX) -> None:
        self._redis = client
        self._prefix = prefix
        self._send_script = client.register_script(_SEND_SCRIPT)
        self._signals = InboxSignals()
        self._listener: asyncio.Task[None] | None = None
        self._listener_lock = asyncio.Lock()
        self._listen_block_ms = _listen_block_ms(client)
        self._closed = False

    @classmethod
    def from_url(
        cls, url: str, *, prefix: str = DEFAULT_PREFIX, max_connections: int = 64
    ) -> RedisBus:
        """A bus on a pooled client; requests queue for a connection instead of failing
        when all are busy. Nothing connects until the first command."""
        pool = BlockingConnectionPool.from_url(
            url, max_connections=max_connections, timeout=10, protocol=2
        )
        return cls(Redis(connection_pool=pool), prefix=prefix)

    async def send(
        self, message: OutgoingMessage, *, recipients: Sequence[str], retention: Retention
    ) -> StoredMessage:
        source = message.channel or ""
        keys = [self._key("sequence"), self._key("clock"), self._key("bell")]
        for agent_id in recipients:
            keys += [self._inbox_key(agent_id, source), self._key(f"sources:{agent_id}")]
        args: list[bytes | str | int] = [
            orjson.dumps(message.to_payload()),
            " ".join(recipients),
            BELL_MAX_ENTRIES,
            source,
            retention.max_messages,
            max(int(retention.max_age_seconds * 1000), 1),
        ]
        raw_id = await _guard(lambda: self._send_script(keys=keys, args=args))
        self._signals.notify(recipients)
        return StoredMessage(Position.from_stream_id(_text(raw_id)), message)

    async def read(
        self,
        agent_id: str,
        *,
        config: AgentsConfig,
        after: Position | None = None,
        limit: int = 100,
        wait: float = 0.0,
    ) -> Page:
        wait = min(max(wait, 0.0), MAX_WAIT_SECONDS)
        if wait > 0:
            await self._ensure_listener()
        deadline = time.monotonic() + wait
        while True:
            signal = self._signals.watch(agent_id)
            page = await self._page(agent_id, config, after, limit)
            remaining = deadline - time.monotonic()
            if page.messages or remaining <= 0 or self._closed:
                return page
            await wait_for_signal(signal, min(remaining, RECHECK_SECONDS))

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        self._signals.notify_all()
        await self._redis.aclose(close_connection_pool=True)

    async def _page(
        self, agent_id: str, config: AgentsConfig, after: Position | None, limit: int
    ) -> Page:
        """Read every source stream of the inbox in one MULTI/EXEC snapshot.

        Reading the streams one by one could see a later message in one stream and miss an
        earlier one that landed in another stream in between, and the cursor would then
        skip it. The source set is re-read inside the same transaction; if it changed since
        it was fetched, the snapshot is retaken with the new set.
        """
        sources_key = self._key(f"sources:{agent_id}")
        raw_known = await _guard(lambda: self._redis.smembers(sources_key))
        known = sorted(_text(source) for source in raw_known)
        while True:
            snapshot = partial(self._snapshot, agent_id, known, config, after, limit)
            raw_sources, *slices = await _guard(snapshot)
            current = sorted(_text(source) for source in raw_sources)
            if current == known:
                return merge_page([_decode_entries(entries) for entries in slices], after, limit)
            known = current

    async def _snapshot(
        self,
        agent_id: str,
        sources: list[str],
        config: AgentsConfig,
        after: Position | None,
        limit: int,
    ) -> list[Any]:
        """``[source set, entries of each source]``, read atomically."""
        now_ms = time.time_ns() // 1_000_000
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.smembers(self._key(f"sources:{agent_id}"))
            for source in sources:
                floor = age_floor(now_ms, config.retention_for(source or None))
                if after is not None and after >= floor:
                    start = "(" + after.stream_id
                else:
                    start = floor.stream_id
                pipe.xrange(self._inbox_key(agent_id, source), start, "+", count=limit + 1)
            return await pipe.execute()

    async def _ensure_listener(self) -> None:
        """Start the bell listener, from the bell's current end, before the first long poll
        reads: any message accepted after that point then wakes the poll."""
        if self._listener is not None:
            return
        async with self._listener_lock:
            if self._listener is None and not self._closed:
                last = await _guard(lambda: self._redis.xrevrange(self._key("bell"), count=1))
                start = _text(last[0][0]) if last else "0-0"
                self._listener = asyncio.create_task(self._listen(start))

    async def _listen(self, last_id: str) -> None:
        bell = self._key("bell")
        while True:
            try:
                response = await self._redis.xread(
                    {bell: last_id}, count=512, block=self._listen_block_ms
                )
            except RedisError as exc:
                # Waiting readers re-read (and report the outage); listen again shortly.
                logger.warning("agent bus listener: %s", exc)
                self._signals.notify_all()
                await asyncio.sleep(0.5)
                continue
            for entry_id, fields in _stream_entries(response):
                last_id = _text(entry_id)
                recipients = fields.get(b"to") or fields.get("to") or b""
                self._signals.notify(_text(recipients).split())

    def _key(self, name: str) -> str:
        return self._prefix + name

    def _inbox_key(self, agent_id: str, source: str) -> str:
        suffix = "c:" + source if source else "d"
        return self._key(f"inbox:{agent_id}:{suffix}")


def _listen_block_ms(client: Redis) -> int:
    """How long one listener ``XREAD`` may block: under half the socket timeout, if any."""
    socket_timeout = client.connection_pool.connection_kwargs.get("socket_timeout")
    if not socket_timeout:
        return LISTEN_BLOCK_MS
    return max(50, min(LISTEN_BLOCK_MS, int(float(socket_timeout) * 500)))


async def _guard(call: Callable[[], Awaitable[T]]) -> T:
    """Run a Redis call, turning connection trouble into ``BusUnavailableError``."""
    try:
        return await call()
    except RedisError as exc:
        raise BusUnavailableError(f"agent bus backend unavailable: {exc}") from exc


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _decode_entries(entries: Any) -> list[StoredMessage]:
    messages = []
    for entry_id, fields in entries or []:
        payload = fields.get(b"m") or fields.get("m")
        position = Position.from_stream_id(_text(entry_id))
        messages.append(StoredMessage.from_payload(position, orjson.loads(payload)))
    return messages


def _stream_entries(response: Any) -> list[Any]:
    """The entries of an ``XREAD`` reply: RESP2 ``[[stream, entries]]`` or RESP3
    ``{stream: [entries]}``."""
    if not response:
        return []
    if isinstance(response, dict):
        return [entry for (entries,) in response.values() for entry in entries]
    return [entry for _name, entries in response for entry in entries]
