"""RPM and TPM end to end with the official SDK: headers, 429s, recovery, streams, models."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import openai
import pytest
from openai import OpenAI

from tests.access.conftest import KEY_A, KEY_B, KEYS_ENV, client
from tests.support.server import running_gateway

# team-a: 120 requests a minute (one back every 0.5 s); team-b: 6000 tokens a minute
# (100 a second). The echo upstream counts one token per word, in and out.
CONFIG = """
default_provider: echo
providers:
  echo: {preset: echo}
models:
  fast: echo:echo
keys:
  - {name: team-a, key: "${ACCESS_TEST_KEY_A}", limits: {rpm: 120}}
  - {name: team-b, key: "${ACCESS_TEST_KEY_B}", limits: {tpm: 6000}}
"""

# Limits on models: 'slow' is shared by every key, 'metered' is team-b's own.
MODELS_CONFIG = """
default_provider: echo
providers:
  echo: {preset: echo}
models:
  fast: echo:echo
  slow: echo:slow
  metered: echo:metered
limits:
  models:
    slow: {rpm: 2}
keys:
  - {name: team-a, key: "${ACCESS_TEST_KEY_A}"}
  - {name: team-b, key: "${ACCESS_TEST_KEY_B}", limits: {models: {metered: {rpm: 1}}}}
"""


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    with running_gateway(CONFIG, env=KEYS_ENV) as url:
        yield url


@pytest.fixture(scope="module")
def models_url() -> Iterator[str]:
    with running_gateway(MODELS_CONFIG, env=KEYS_ENV) as url:
        yield url


@pytest.fixture(scope="module")
def team_a(base_url: str) -> OpenAI:
    sdk = client(base_url, KEY_A)
    sdk.responses.create(model="fast", input="warm up")  # the SDK imports lazily
    return sdk


@pytest.fixture(scope="module")
def team_b(base_url: str) -> OpenAI:
    return client(base_url, KEY_B)


def words(count: int) -> str:
    return " ".join(["w"] * count)


async def exhaust(base_url: str, key: str, count: int) -> list[httpx.Response]:
    """``count`` requests at once, the way a busy client would send them."""
    keyed = {"authorization": f"Bearer {key}"}
    body = {"model": "fast", "input": "hi"}
    async with httpx.AsyncClient(base_url=base_url, headers=keyed, timeout=10) as http:
        return list(
            await asyncio.gather(*(http.post("/v1/responses", json=body) for _ in range(count)))
        )


async def test_requests_per_minute_are_reached_then_recovered(
    base_url: str, team_a: OpenAI
) -> None:
    started = time.monotonic()
    responses = await exhaust(base_url, KEY_A, 140)
    refill = (time.monotonic() - started) * 2  # one request back every 0.5 s
    admitted = sum(response.status_code == 200 for response in responses)
    assert 119 <= admitted <= 119 + refill + 1  # 120 minus the warm-up
    response = next(response for response in responses if response.status_code != 200)
    assert response.status_code == 429
    assert response.json()["error"] == {
        "message": response.json()["error"]["message"],
        "type": "requests",
        "param": None,
        "code": "rate_limit_exceeded",
    }
    assert response.json()["error"]["message"].startswith(
        "Rate limit reached for key 'team-a' on requests per min (RPM): Limit 120. Please try again in"
    )
    headers = response.headers
    assert headers["x-ratelimit-limit-requests"] == "120"
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert headers["retry-after"] == "1"
    assert 0 < int(headers["retry-after-ms"]) / 1000 <= 0.5
    # Requests after a refusal may have taken the slot it announced (answers come back in any
    # order), so wait one whole refill interval: no refusal may ask for more than that.
    refused = [response for response in responses if response.status_code == 429]
    assert max(int(response.headers["retry-after-ms"]) for response in refused) <= 500
    waited_from = time.monotonic()
    time.sleep(0.55)
    recovered = team_a.responses.with_raw_response.create(model="fast", input="again")
    assert recovered.parse().output_text == "again"
    # The bucket refills one request per 0.5 s; it never jumps back to the full 120.
    refilled = (time.monotonic() - waited_from) * 2
    assert 0 <= int(recovered.headers["x-ratelimit-remaining-requests"]) <= refilled


async def test_the_sdk_waits_out_a_429_by_itself(base_url: str) -> None:
    patient = client(base_url, KEY_A, max_retries=3)
    assert any(response.status_code == 429 for response in await exhaust(base_url, KEY_A, 5))
    started = time.monotonic()
    assert patient.responses.create(model="fast", input="patient").output_text == "patient"
    assert time.monotonic() - started < 5  # retry-after-ms (half a second), not a minute


def test_tokens_per_minute_count_real_usage_then_recover(team_b: OpenAI) -> None:
    first = team_b.responses.with_raw_response.create(model="fast", input=words(3020))
    usage = first.parse().usage
    assert usage is not None and usage.total_tokens == 6040  # 40 tokens over the limit
    assert first.headers["x-ratelimit-limit-tokens"] == "6000"
    assert first.headers["x-ratelimit-remaining-tokens"] == "6000"  # usage is charged after
    with pytest.raises(openai.RateLimitError) as caught:
        team_b.responses.create(model="fast", input="one more")
    error = caught.value
    assert error.body["type"] == "tokens"  # type: ignore[index]
    assert "tokens per min (TPM): Limit 6000" in error.message
    assert error.response.headers["x-ratelimit-remaining-tokens"] == "0"
    wait = int(error.response.headers["retry-after-ms"]) / 1000
    assert 0 < wait <= 0.41  # at most 41 tokens at 100 a second
    time.sleep(wait)
    assert team_b.responses.create(model="fast", input="back").output_text == "back"


def test_a_stream_is_charged_when_it_ends(team_b: OpenAI) -> None:
    time.sleep(0.2)  # the previous test left the bucket about empty: 20 tokens refill
    events = list(team_b.responses.create(model="fast", input=words(400), stream=True))
    final = events[-1]
    assert final.type == "response.completed"
    assert final.response.usage is not None and final.response.usage.total_tokens == 800
    with pytest.raises(openai.RateLimitError) as caught:
        team_b.responses.create(model="fast", input="after the stream", stream=True)
    assert 5 < int(caught.value.response.headers["retry-after-ms"]) / 1000 <= 8


def test_a_model_limit_is_shared_by_every_key(models_url: str) -> None:
    team_a, team_b = client(models_url, KEY_A), client(models_url, KEY_B)
    assert team_a.responses.create(model="slow", input="a").output_text == "a"
    assert team_b.responses.create(model="slow", input="b").output_text == "b"
    with pytest.raises(openai.RateLimitError) as caught:
        team_a.responses.create(model="slow", input="a again")
    assert (
        "Rate limit reached for model 'slow' on requests per min (RPM): Limit 2."
        in caught.value.message
    )
    assert caught.value.response.headers["retry-after"] == "30"


def test_a_key_limit_on_one_model_leaves_its_other_models_alone(models_url: str) -> None:
    team_b = client(models_url, KEY_B)
    assert team_b.responses.create(model="metered", input="m").output_text == "m"
    with pytest.raises(openai.RateLimitError) as caught:
        team_b.responses.create(model="metered", input="m")
    assert "key 'team-b' on model 'metered'" in caught.value.message
    assert team_b.responses.create(model="fast", input="other model").output_text == "other model"


def test_no_limits_no_headers() -> None:
    with running_gateway("providers:\n  echo: {preset: echo}\n") as url:
        response = httpx.post(f"{url}/v1/responses", json={"model": "echo", "input": "hi"})
    assert response.status_code == 200
    assert not [name for name in response.headers if name.startswith("x-ratelimit")]
