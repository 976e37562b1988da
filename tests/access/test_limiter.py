"""The RPM/TPM buckets themselves: the same behaviour in memory and in a real Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from gateway.access.guard import used_tokens
from gateway.access.limits import (
    Bucket,
    MemoryRateLimiter,
    RateLimiter,
    RedisRateLimiter,
    duration,
    rate_headers,
    refusal_headers,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def requests(limit: int, name: str = "key:a:rpm") -> Bucket:
    return Bucket(name, "requests", limit, "key 'a'")


def tokens(limit: int, name: str = "key:a:tpm") -> Bucket:
    return Bucket(name, "tokens", limit, "key 'a'")


@pytest.fixture(params=["memory", "redis"])
async def limiter(request: pytest.FixtureRequest) -> AsyncIterator[RateLimiter]:
    instance: RateLimiter
    if request.param == "memory":
        instance = MemoryRateLimiter()
    else:
        instance = RedisRateLimiter(request.getfixturevalue("redis_url"))
    try:
        yield instance
    finally:
        await instance.aclose()


async def test_a_bucket_holds_its_limit_then_refuses_and_says_when(limiter: RateLimiter) -> None:
    bucket = requests(3)
    remaining = []
    for _ in range(3):
        [state] = await limiter.acquire([bucket])
        assert state.allowed
        remaining.append(state.remaining)
    assert remaining == [2, 1, 0]
    [refused] = await limiter.acquire([bucket])
    assert not refused.allowed
    assert refused.remaining == 0
    assert 19.5 < refused.retry_after <= 20.0  # one request back every 60/3 seconds
    assert 59.5 < refused.debt <= 60.0  # and full again after a minute


async def test_a_refusal_spends_nothing_from_any_bucket(limiter: RateLimiter) -> None:
    key, model = requests(10, "key:a:rpm"), requests(1, "model:fast:rpm")
    assert all(state.allowed for state in await limiter.acquire([key, model]))
    states = await limiter.acquire([key, model])
    assert [state.allowed for state in states] == [True, False]
    [key_state] = await limiter.acquire([key])
    assert key_state.remaining == 8  # only the admitted request was taken


async def test_tokens_are_charged_after_the_fact_and_hold_the_next_request(
    limiter: RateLimiter,
) -> None:
    bucket = tokens(600)  # 10 tokens a second
    [state] = await limiter.acquire([bucket])
    assert state.allowed and state.remaining == 600  # checked, not taken
    await limiter.charge([bucket], 605)  # a request may use more than what is left
    [state] = await limiter.acquire([bucket])
    assert not state.allowed
    assert 0.5 < state.retry_after <= 0.6  # 5 tokens over, plus one to fit: 0.6 s at 10/s


async def test_concurrent_requests_never_exceed_the_limit(limiter: RateLimiter) -> None:
    bucket = requests(10)
    states = await asyncio.gather(*(limiter.acquire([bucket]) for _ in range(40)))
    assert sum(state.allowed for [state] in states) == 10


async def test_memory_buckets_refill_continuously() -> None:
    clock = Clock()
    limiter = MemoryRateLimiter(clock)
    bucket = requests(60)  # one a second
    for _ in range(60):
        [state] = await limiter.acquire([bucket])
        assert state.allowed
    [state] = await limiter.acquire([bucket])
    assert not state.allowed and state.retry_after == pytest.approx(1.0)
    clock.now += 1.0
    [state] = await limiter.acquire([bucket])
    assert state.allowed and state.remaining == 0
    clock.now += 30.0
    [state] = await limiter.acquire([bucket])
    assert state.remaining == 29
    clock.now += 3600
    [state] = await limiter.acquire([bucket])
    assert state.remaining == 59  # a full bucket holds no more than its limit


async def test_redis_unavailable_serves_instead_of_refusing_everyone(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from tests.support.server import free_port

    limiter = RedisRateLimiter(f"redis://127.0.0.1:{free_port()}/0")
    try:
        [state] = await limiter.acquire([requests(1)])
        assert state.allowed
        await limiter.charge([tokens(1)], 100)
    finally:
        await limiter.aclose()
    assert "rate limits are not enforced: Redis is unavailable" in caplog.text


def test_headers_follow_openai() -> None:
    assert [duration(s) for s in (0, 0.02, 0.5, 1, 1.5, 20, 59.5, 60, 360, 3661)] == [
        "0ms",
        "20ms",
        "500ms",
        "1s",
        "1.5s",
        "20s",
        "59.5s",
        "1m0s",
        "6m0s",
        "61m1s",
    ]
    from gateway.access.limits import BucketState

    states = [
        BucketState(requests(100), True, 30.0),
        BucketState(requests(10, "model:fast:rpm"), True, 12.0),
        BucketState(tokens(1000), False, 60.5),
    ]
    assert rate_headers(states) == {
        "x-ratelimit-limit-requests": "10",  # the tightest requests bucket
        "x-ratelimit-remaining-requests": "8",
        "x-ratelimit-reset-requests": "12s",
        "x-ratelimit-limit-tokens": "1000",
        "x-ratelimit-remaining-tokens": "0",
        "x-ratelimit-reset-tokens": "1m1s",
    }
    assert refusal_headers([states[2]]) == {"retry-after": "1", "retry-after-ms": "560"}


def test_used_tokens_counts_input_and_output() -> None:
    assert used_tokens({"input_tokens": 3, "output_tokens": 4, "total_tokens": 7}) == 7
    assert used_tokens({"input_tokens": 3, "output_tokens": 4}) == 7
    assert used_tokens(None) == 0
    assert used_tokens({}) == 0
