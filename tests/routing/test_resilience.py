"""Retries, fallbacks, timeouts, breakers and cancellation against a fault-injecting upstream.

Each test states the client-visible outcome (status, error type, events) and the number and
timing of upstream attempts.
"""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import replace
from typing import Any

import httpx
import openai
import orjson
import pytest
from openai import OpenAI

from tests.support.fake_upstream import FakeUpstream, RecordedRequest, Reply, fake_upstream
from tests.support.server import refused_port, running_gateway


def chat_answer(text: str = "ok", finish: str = "stop") -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
    }


def chat_chunks(
    words: list[str], *, finish: bool = True, done: bool = True
) -> list[dict[str, Any]]:
    base = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    chunks = [{**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}]
    chunks += [{**base, "choices": [{"index": 0, "delta": {"content": word}}]} for word in words]
    if finish:
        chunks.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    return chunks


def answering(text: str) -> Any:
    def respond(request: RecordedRequest) -> Reply:
        if request.json().get("stream"):
            return Reply.sse(chat_chunks(re.findall(r"\S+\s*", text)), done=True)
        return Reply.json(chat_answer(text))

    return respond


def config(primary: str, backup: str, *, extra: str = "") -> str:
    return f"""
default_provider: primary
routing:
  retry: {{attempts: 3, backoff_initial: 0.1, backoff_max: 0.4, retry_after_max: 1}}
  breaker: {{failures: 100, window: 60, cooldown: 1}}
providers:
  primary: {{preset: openai-chat, base_url: "{primary}", api_key: k1, timeouts: {{read: 0.5}}}}
  backup: {{preset: openai-chat, base_url: "{backup}", api_key: k2}}
models:
  resilient:
    targets: [primary:m1, backup:m2]
  single: primary:m1
  impatient:
    target: primary:m1
    timeouts: {{first_token: 0.3}}
    retry: {{attempts: 2, backoff_initial: 0.05}}
{extra}
"""


@pytest.fixture(scope="module")
def upstreams() -> Iterator[tuple[FakeUpstream, FakeUpstream]]:
    with fake_upstream() as primary, fake_upstream() as backup:
        yield primary, backup


@pytest.fixture(scope="module")
def base_url(upstreams: tuple[FakeUpstream, FakeUpstream]) -> Iterator[str]:
    primary, backup = upstreams
    with running_gateway(config(primary.url, backup.url)) as url:
        yield url


@pytest.fixture
def primary(upstreams: tuple[FakeUpstream, FakeUpstream]) -> FakeUpstream:
    upstreams[0].reset()
    upstreams[0].responder = None
    return upstreams[0]


@pytest.fixture
def backup(upstreams: tuple[FakeUpstream, FakeUpstream]) -> FakeUpstream:
    upstreams[1].reset()
    upstreams[1].responder = answering("from backup")
    return upstreams[1]


@pytest.fixture
def client(base_url: str) -> OpenAI:
    return OpenAI(base_url=f"{base_url}/v1", api_key="x", max_retries=0)


def error(status: int, message: str = "boom", headers: dict[str, str] | None = None) -> Reply:
    return Reply.json(
        {"error": {"message": message, "type": "server_error"}}, status=status, headers=headers
    )


def slow(reply: Reply, seconds: float) -> Reply:
    return replace(reply, wait=seconds)


def gaps(upstream: FakeUpstream) -> list[float]:
    times = [request.at for request in upstream.requests]
    return [later - earlier for earlier, later in itertools.pairwise(times)]


def test_429_retry_after_is_honoured(
    client: OpenAI, primary: FakeUpstream, backup: FakeUpstream
) -> None:
    primary.script(
        error(429, headers={"retry-after": "0.4"}), Reply.json(chat_answer("second time"))
    )
    raw = client.responses.with_raw_response.create(model="single", input="hi")
    assert raw.parse().output_text == "second time"
    assert raw.headers["x-gateway-attempts"] == "2"
    assert len(primary.requests) == 2
    assert gaps(primary)[0] >= 0.38


def test_retry_after_beyond_the_cap_is_not_waited_for(
    client: OpenAI, primary: FakeUpstream, backup: FakeUpstream
) -> None:
    primary.script(error(429, headers={"retry-after": "120"}))
    started = time.monotonic()
    with pytest.raises(openai.RateLimitError) as caught:
        client.responses.create(model="single", input="hi")
    assert time.monotonic() - started < 0.5
    assert len(primary.requests) == 1
    assert caught.value.response.headers["retry-after"] == "120"
    assert caught.value.code == "rate_limit_exceeded"


def test_retry_after_ms_is_honoured(
    client: OpenAI, primary: FakeUpstream, backup: FakeUpstream
) -> None:
    primary.script(error(503, headers={"retry-after-ms": "300"}), Reply.json(chat_answer()))
    client.responses.create(model="single", input="hi")
    assert len(primary.requests) == 2
    assert gaps(primary)[0] >= 0.28


def test_server_errors_back_off_then_fall_back(
    client: OpenAI, primary: FakeUpstream, backup: FakeUpstream
) -> None:
    primary.script(error(500), error(502), error(500))
    raw = client.responses.with_raw_response.create(model="resilient", input="hi")
    assert raw.parse().output_text == "from backup"
    assert raw.headers["x-gateway-attempts"] == "4"
    assert raw.headers["x-gateway-provider"] == "backup"
    assert raw.headers["x-gateway-upstream-model"] == "m2"
    assert raw.headers["x-gateway-fallbacks"] == "1"
    assert len(primary.requests) == 3
    assert backup.last.json()["model"] == "m2"
    first, second = gaps(primary)
    assert 0.04 <= first <= 0.3  # 0.1 s ceiling with jitter in [0.05, 0.1]
    assert 0.09 <= second <= 0.5  # 0.2 s ceiling: the backoff grows


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_client_errors_are_never_retried_nor_fallen_back(
    client: OpenAI, primary: FakeUpstream, backup: FakeUpstream, status: int
) -> None:
    primary.script(error(status, "bad request"))
    with pytest.raises(openai.APIStatusError) as caught:
        client.responses.create(model="resilient", input="hi")
    assert caught.value.status_code == status
    assert len(primary.requests) == 1
    assert backup.requests == []


def test_connection_refused_falls_back_at_once(base_url: str, backup: FakeUpstream) -> None:
    dead = f"http://127.0.0.1:{refused_port()}"
    text = config(dead, backup.url).replace("attempts: 3", "attempts: 1")
    with running_gateway(text) as url:
        client = OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
        raw = client.responses.with_raw_response.create(model="resilient", input="hi")
        assert raw.parse().output_text == "from backup"
        assert raw.headers["x-gateway-attempts"] == "2"
        with pytest.raises(openai.APIStatusError) as caught:
            client.responses.create(model="single", input="hi")
        assert caught.value.status_code == 502
        assert caught.value.code == "upstream_unreachable"


def test_slow_first_byte_times_out_and_is_retried(
    client: OpenAI, primary: FakeUpstream, backup: FakeUpstream
) -> None:
    primary.script(slow(Reply.json(chat_answer()), 1.0), Reply.json(chat_answer("fast")))
    started = time.monotonic()
    response = client.responses.create(model="impatient", input="hi")
    assert response.output_text == "fast"
    assert time.monotonic() - started < 0.9
    assert len(primary.requests) == 2


def test_first_token_timeout_on_every_attempt_is_a_504(
    client: OpenAI, primary: FakeUpstream, backup: FakeUpstream
) -> None:
    stalled = slow(Reply.stream([b"data: {}\n\n"]), 1.0)
    primary.script(stalled, stalled)
    with pytest.raises(openai.APIStatusError) as caught:
        list(client.responses.create(model="impatient", input="hi", stream=True))
    assert caught.value.status_code == 504
    assert caught.value.type == "timeout_error"
    assert len(primary.requests) == 2


def read_sse(base_url: str, model: str) -> list[dict[str, Any]]:
    with httpx.stream(
        "POST",
        f"{base_url}/v1/responses",
        json={"model": model, "input": "hi", "stream": True},
        timeout=5,
    ) as response:
        assert response.status_code == 200
        data = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    return [orjson.loads(item) for item in data]


def assert_failed_stream(events: list[dict[str, Any]]) -> None:
    types = [event["type"] for event in events]
    assert types[-2:] == ["response.failed", "error"], types
    assert "response.completed" not in types
    assert events[-1]["error"]["message"] == events[-1]["message"]


def test_stall_mid_stream_fails_the_stream(
    base_url: str, primary: FakeUpstream, backup: FakeUpstream
) -> None:
    frames = [orjson.dumps(chunk) for chunk in chat_chunks(["partial", "answer"])]
    first = b"".join(b"data: " + frame + b"\n\n" for frame in frames[:2])
    primary.script(Reply.stream([first, b": stall\n\n"], delay=1.0))
    events = read_sse(base_url, "single")
    assert_failed_stream(events)
    assert [e["delta"] for e in events if e["type"] == "response.output_text.delta"] == ["partial"]
    assert len(primary.requests) == 1  # content had gone out: no retry


def test_dropped_connection_mid_stream_fails_the_stream(
    base_url: str, primary: FakeUpstream, backup: FakeUpstream
) -> None:
    primary.script(Reply.sse(chat_chunks(["partial"], finish=False), cut=True))
    assert_failed_stream(read_sse(base_url, "single"))


def test_dropped_connection_before_content_is_retried(
    client: OpenAI, primary: FakeUpstream, backup: FakeUpstream
) -> None:
    primary.script(
        Reply.sse(chat_chunks([], finish=False)[:1], cut=True),
        Reply.sse(chat_chunks(["whole"]), done=True),
    )
    with client.responses.stream(model="single", input="hi") as stream:
        final = stream.get_final_response()
    assert final.output_text == "whole"
    assert len(primary.requests) == 2


def test_malformed_chunk_after_content_fails_the_stream(
    base_url: str, primary: FakeUpstream, backup: FakeUpstream
) -> None:
    frames = [b"data: " + orjson.dumps(chunk) + b"\n\n" for chunk in chat_chunks(["a"])]
    primary.script(Reply.stream([*frames[:2], b"data: {not json\n\n"]))
    events = read_sse(base_url, "single")
    assert_failed_stream(events)
    assert "malformed" in events[-1]["message"]


def test_stream_without_finish_is_not_reported_completed(
    base_url: str, primary: FakeUpstream, backup: FakeUpstream
) -> None:
    primary.script(Reply.sse(chat_chunks(["half"], finish=False), done=False))
    assert_failed_stream(read_sse(base_url, "single"))


def test_upstream_error_event_before_content_falls_back(
    client: OpenAI, primary: FakeUpstream, backup: FakeUpstream
) -> None:
    overloaded = {
        "error": {"message": "overloaded", "type": "overloaded_error", "code": "overloaded"}
    }
    primary.script(*[Reply.sse([overloaded])] * 3)
    with client.responses.stream(model="resilient", input="hi") as stream:
        final = stream.get_final_response()
    assert final.output_text == "from backup"
    assert len(primary.requests) == 3


def test_breaker_opens_sends_traffic_to_fallbacks_and_probes(
    upstreams: tuple[FakeUpstream, FakeUpstream],
) -> None:
    primary, backup = upstreams
    primary.reset()
    backup.reset()
    backup.responder = answering("from backup")
    text = (
        config(primary.url, backup.url)
        .replace("failures: 100", "failures: 2")
        .replace("cooldown: 1", "cooldown: 0.5")
    )
    text = text.replace("attempts: 3", "attempts: 1")
    with running_gateway(text) as url:
        client = OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
        primary.script(error(500), error(500))
        for _ in range(2):
            client.responses.create(model="resilient", input="hi")
        assert len(primary.requests) == 2
        health = httpx.get(f"{url}/healthz").json()
        assert health["providers"]["primary"]["breaker"]["state"] == "open"
        started = time.monotonic()
        assert client.responses.create(model="resilient", input="hi").output_text == "from backup"
        assert time.monotonic() - started < 0.5
        assert len(primary.requests) == 2  # the open breaker skipped the dead upstream
        time.sleep(0.6)
        primary.script(Reply.json(chat_answer("recovered")))
        assert client.responses.create(model="resilient", input="hi").output_text == "recovered"
        assert (
            httpx.get(f"{url}/healthz").json()["providers"]["primary"]["breaker"]["state"]
            == "closed"
        )


def test_weighted_targets_converge_to_their_weights(
    upstreams: tuple[FakeUpstream, FakeUpstream],
) -> None:
    primary, backup = upstreams
    primary.reset()
    backup.reset()
    primary.responder = answering("a")
    backup.responder = answering("b")
    extra = "  balanced:\n    strategy: weighted\n    targets:\n      - {target: primary:m1, weight: 3}\n      - {target: backup:m2, weight: 1}\n"
    with (
        running_gateway(config(primary.url, backup.url, extra=extra)) as url,
        httpx.Client(timeout=5) as http,
    ):
        for _ in range(400):
            http.post(
                f"{url}/v1/responses", json={"model": "balanced", "input": "x"}
            ).raise_for_status()
    share = len(primary.requests) / 400
    assert 0.68 <= share <= 0.82, share


def test_client_disconnect_cancels_the_upstream_and_retries(
    base_url: str, primary: FakeUpstream, backup: FakeUpstream
) -> None:
    primary.script(slow(Reply.json(chat_answer()), 1.5))
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{base_url}/v1/responses", json={"model": "single", "input": "hi"}, timeout=0.3)
    time.sleep(1.8)
    assert len(primary.requests) == 1  # no retry after the client left
    deadline = time.monotonic() + 3
    while primary.open_connections and time.monotonic() < deadline:
        time.sleep(0.05)
    assert primary.open_connections == 0


def test_stream_disconnect_closes_the_upstream_connection(
    base_url: str, primary: FakeUpstream, backup: FakeUpstream
) -> None:
    frames = [b"data: " + orjson.dumps(chunk) + b"\n\n" for chunk in chat_chunks(["w"] * 40)]
    primary.script(Reply.stream(frames, delay=0.1))
    with ExitStack() as stack:
        response = stack.enter_context(
            httpx.stream(
                "POST",
                f"{base_url}/v1/responses",
                json={"model": "single", "input": "hi", "stream": True},
            )
        )
        for line in response.iter_lines():
            if "output_text.delta" in line:
                break
    deadline = time.monotonic() + 3
    while primary.open_connections and time.monotonic() < deadline:
        time.sleep(0.05)
    assert primary.open_connections == 0
