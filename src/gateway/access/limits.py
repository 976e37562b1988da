"""Requests- and tokens-per-minute limits: GCRA token buckets in memory or in Redis.

Each limit is a bucket that holds up to ``limit`` units and refills at ``limit`` per minute,
continuously (the generic cell rate algorithm: one number per bucket, the "theoretical arrival
time"). A request takes one unit from each requests bucket that applies to it, and is refused
unless every bucket has room, so a refusal never spends anything. Tokens are counted from the
real usage once the answer is complete: a request is admitted while its tokens buckets have
room, and the usage is charged afterwards, even past the limit (the next requests wait).

The in-memory backend serves one process. With ``server.redis_url`` the buckets live in Redis
and every replica shares them: each check is one Lua script (atomic on the server, using the
server's clock so replicas' clocks do not matter).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, Protocol

logger = logging.getLogger("gateway.access")

WINDOW: Final = 60.0  # seconds: limits are per minute
_EPSILON: Final = 1e-9

Kind = Literal["requests", "tokens"]


@dataclass(frozen=True)
class Bucket:
    """One limit that applies to a request: ``id`` is stable across reloads."""

    id: str
    kind: Kind
    limit: int
    label: str  # for messages: "key 'team-a'", "model 'fast'"

    @property
    def interval(self) -> float:
        return WINDOW / self.limit


@dataclass(frozen=True)
class BucketState:
    """A bucket as a check left it: ``debt`` is seconds of refill owed (0 = full)."""

    bucket: Bucket
    allowed: bool  # this bucket had room
    debt: float  # after this request's unit was taken, if it was
    taken: bool = False

    @property
    def remaining(self) -> int:
        return max(0, math.floor((WINDOW - self.debt) / self.bucket.interval + _EPSILON))

    @property
    def retry_after(self) -> float:
        """Seconds until one unit fits."""
        return max(0.0, self.debt + self.bucket.interval - WINDOW)


def _check(bucket: Bucket, debt: float) -> bool:
    return debt + bucket.interval <= WINDOW + _EPSILON


def _states(
    buckets: Sequence[Bucket], debts: Sequence[float], allowed: bool | None = None
) -> list[BucketState]:
    """All-or-nothing: requests buckets are taken from only when every bucket has room."""
    if allowed is None:
        allowed = all(_check(bucket, debt) for bucket, debt in zip(buckets, debts, strict=True))
    states: list[BucketState] = []
    for bucket, debt in zip(buckets, debts, strict=True):
        taken = allowed and bucket.kind == "requests"
        states.append(
            BucketState(
                bucket, _check(bucket, debt), debt + bucket.interval if taken else debt, taken
            )
        )
    return states


class RateLimiter(Protocol):
    async def acquire(self, buckets: Sequence[Bucket]) -> list[BucketState]:
        """Check every bucket; when all have room, take one unit from each requests bucket."""

    async def charge(self, buckets: Sequence[Bucket], units: int) -> None:
        """Take ``units`` from each bucket unconditionally (tokens used by a finished request)."""

    async def aclose(self) -> None: ...


class MemoryRateLimiter:
    """Buckets in this process; atomic because the event loop runs one check at a time."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._tat: dict[str, float] = {}

    def _debt(self, bucket: Bucket, now: float) -> float:
        return max(0.0, self._tat.get(bucket.id, now) - now)

    async def acquire(self, buckets: Sequence[Bucket]) -> list[BucketState]:
        now = self._clock()
        debts = [self._debt(bucket, now) for bucket in buckets]
        states = _states(buckets, debts)
        for state in states:
            if state.taken:
                self._tat[state.bucket.id] = now + state.debt
        if len(self._tat) > 10_000:
            self._forget(now)
        return states

    async def charge(self, buckets: Sequence[Bucket], units: int) -> None:
        now = self._clock()
        for bucket in buckets:
            self._tat[bucket.id] = now + self._debt(bucket, now) + units * bucket.interval

    def _forget(self, now: float) -> None:
        """Drop full buckets: they hold no information."""
        for key in [key for key, tat in self._tat.items() if tat <= now]:
            del self._tat[key]

    async def aclose(self) -> None:
        self._tat.clear()


# Every bucket is checked before any is taken from, so a refused request spends nothing.
# ARGV: window, then (interval, take) per key. Returns {allowed, debt before...} as strings.
_ACQUIRE: Final = """
if redis.replicate_commands then pcall(redis.replicate_commands) end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local window = tonumber(ARGV[1])
local debts = {}
local ok = 1
for i = 1, #KEYS do
  local interval = tonumber(ARGV[2 * i])
  local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
  local debt = math.max(0, tat - now)
  debts[i] = debt
  if debt + interval > window + 1e-9 then ok = 0 end
end
local out = {tostring(ok)}
for i = 1, #KEYS do
  local debt = debts[i]
  if ok == 1 and ARGV[2 * i + 1] == '1' then
    local taken = debt + tonumber(ARGV[2 * i])
    redis.call('SET', KEYS[i], string.format('%.6f', now + taken), 'PX', math.ceil(taken * 1000) + 1000)
  end
  out[#out + 1] = string.format('%.6f', debt)
end
return out
"""

# ARGV: units, then interval per key.
_CHARGE: Final = """
if redis.replicate_commands then pcall(redis.replicate_commands) end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local units = tonumber(ARGV[1])
for i = 1, #KEYS do
  local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
  local debt = math.max(0, tat - now) + units * tonumber(ARGV[i + 1])
  redis.call('SET', KEYS[i], string.format('%.6f', now + debt), 'PX', math.ceil(debt * 1000) + 1000)
end
return 1
"""


class RedisRateLimiter:
    """Buckets shared by every replica through Redis; fails open (and says so) when it is down."""

    prefix: Final = "gateway:ratelimit:"

    def __init__(self, url: str) -> None:
        from redis.asyncio import Redis

        self._redis: Any = Redis.from_url(url, socket_connect_timeout=1.0, socket_timeout=1.0)
        self._acquire = self._redis.register_script(_ACQUIRE)
        self._charge = self._redis.register_script(_CHARGE)
        self._warned_at = 0.0

    def _unavailable(self, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._warned_at > 30:
            self._warned_at = now
            logger.error(
                "rate limits are not enforced: Redis is unavailable (%s)", type(exc).__name__
            )

    async def acquire(self, buckets: Sequence[Bucket]) -> list[BucketState]:
        keys = [self.prefix + bucket.id for bucket in buckets]
        args: list[Any] = [WINDOW]
        for bucket in buckets:
            args += [repr(bucket.interval), "1" if bucket.kind == "requests" else "0"]
        try:
            result = await self._acquire(keys=keys, args=args)
        except Exception as exc:  # redis errors, timeouts: serve rather than refuse everyone
            self._unavailable(exc)
            return [BucketState(bucket, True, 0.0) for bucket in buckets]
        debts = [float(_text(raw)) for raw in result[1:]]
        return _states(buckets, debts, allowed=_text(result[0]) == "1")

    async def charge(self, buckets: Sequence[Bucket], units: int) -> None:
        if not buckets or units <= 0:
            return
        keys = [self.prefix + bucket.id for bucket in buckets]
        try:
            await self._charge(
                keys=keys, args=[units, *(repr(bucket.interval) for bucket in buckets)]
            )
        except Exception as exc:
            self._unavailable(exc)

    async def aclose(self) -> None:
        await self._redis.aclose()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def create_limiter(redis_url: str | None) -> RateLimiter:
    return RedisRateLimiter(redis_url) if redis_url else MemoryRateLimiter()


# --------------------------------------------------------------------------- headers


def _ms(seconds: float) -> int:
    """Whole milliseconds, rounded up (after dropping float noise: 0.56 s is 560 ms)."""
    return max(0, math.ceil(round(seconds * 1000, 6)))


def duration(seconds: float) -> str:
    """OpenAI's reset format: ``20ms``, ``1.5s``, ``6m0s``."""
    milliseconds = _ms(seconds)
    if milliseconds < 1000:
        return f"{milliseconds}ms"
    if milliseconds < 60_000:
        return f"{milliseconds / 1000:g}s"
    minutes, rest = divmod(math.ceil(milliseconds / 1000), 60)
    return f"{minutes}m{rest}s"


def rate_headers(states: Sequence[BucketState]) -> dict[str, str]:
    """``x-ratelimit-*`` for the tightest requests bucket and the tightest tokens bucket."""
    headers: dict[str, str] = {}
    for kind in ("requests", "tokens"):
        of_kind = [state for state in states if state.bucket.kind == kind]
        if not of_kind:
            continue
        tightest = min(of_kind, key=lambda state: (state.remaining, -state.debt))
        headers[f"x-ratelimit-limit-{kind}"] = str(tightest.bucket.limit)
        headers[f"x-ratelimit-remaining-{kind}"] = str(tightest.remaining)
        headers[f"x-ratelimit-reset-{kind}"] = duration(tightest.debt)
    return headers


def refusal_headers(refused: Sequence[BucketState]) -> dict[str, str]:
    wait = _ms(max(state.retry_after for state in refused))
    return {"retry-after": str(max(1, math.ceil(wait / 1000))), "retry-after-ms": str(max(1, wait))}


def settle_later(limiter: RateLimiter, buckets: Sequence[Bucket], units: int) -> None:
    """Charge from a place that may be cancelled (a stream's ``finally``): in its own task."""
    task = asyncio.get_running_loop().create_task(limiter.charge(buckets, units))
    _PENDING.add(task)
    task.add_done_callback(_PENDING.discard)


_PENDING: set[asyncio.Task[None]] = set()
