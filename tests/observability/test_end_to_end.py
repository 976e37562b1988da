"""Scripted traffic against a real gateway: success, upstream error, retry, fallback, stream,
breaker; then the metrics scraped from ``/metrics``, the request log lines and the headers."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from openai import BadRequestError, OpenAI

from tests.observability.conftest import (
    Gateway,
    chat_completion,
    chat_stream,
    observed_gateway,
    upstream_error,
    value,
    wait_for,
)
from tests.support.fake_upstream import Reply

CONFIG = """
default_provider: up
providers:
  up:
    preset: openai-chat
    base_url: "{upstream}/v1"
    api_key: test-key
    retry: {attempts: 2, backoff_initial: 0.001, backoff_max: 0.001}
    breaker: {failures: 100}
  flaky:
    preset: openai-chat
    base_url: "{upstream}/v1"
    api_key: test-key
    retry: {attempts: 1}
    breaker: {failures: 1, cooldown: 60}
  echo: {preset: echo}
models:
  smart:
    targets: [up:gpt-4o, echo:echo]
agents:
  channels:
    review: {members: [planner, coder]}
prices:
  smart: {input: 1.0, output: 1.0}
  up:gpt-4o: {input: 2.5, cached_input: 1.25, output: 10.0}
  echo: {input: 0.5, output: 1.5}
"""


@pytest.fixture(scope="module")
def gateway() -> Iterator[Gateway]:
    with observed_gateway(CONFIG) as running:
        # The SDK builds its response models on first use (about a second): not under test.
        warm = OpenAI(base_url=f"{running.url}/v1", api_key="unused", max_retries=0)
        with warm.responses.stream(model="echo:echo", input="warm up") as stream:
            stream.get_final_response()
        yield running


@pytest.fixture
def client(gateway: Gateway) -> OpenAI:
    gateway.upstream.reset()
    return OpenAI(base_url=f"{gateway.url}/v1", api_key="unused", max_retries=0)


def _after(gateway: Gateway, request_id: str) -> dict[str, object]:
    """The request's log line, once written (the metrics are counted just before it)."""
    return gateway.logs.request_line(request_id)


def test_success_is_counted_logged_and_priced(gateway: Gateway, client: OpenAI) -> None:
    gateway.upstream.script(Reply.json(chat_completion()))
    before = gateway.scrape()
    raw = client.responses.with_raw_response.create(
        model="gpt-4o", input="hi", extra_headers={"x-request-id": "req_success"}
    )
    response = raw.parse()
    assert response.output_text == "Hello there"
    line = _after(gateway, "req_success")
    after = gateway.scrape()

    # 10 input (4 cached) at 2.5 / 1.25, 5 output at 10 per million.
    cost = (6 * 2.5 + 4 * 1.25 + 5 * 10.0) / 1e6
    assert float(raw.headers["x-gateway-cost-usd"]) == pytest.approx(cost)
    assert raw.headers["x-request-id"] == "req_success"
    trace_id = raw.headers["x-trace-id"]
    assert len(trace_id) == 32
    assert raw.headers["traceparent"].startswith(f"00-{trace_id}-")

    labels = {"provider": "up", "model": "gpt-4o"}
    assert (
        value(after, "gateway_requests_total", **labels, status="200")
        - value(before, "gateway_requests_total", **labels, status="200")
        == 1
    )
    for kind, count in (("input", 10), ("output", 5), ("cached_input", 4)):
        assert (
            value(after, "gateway_tokens_total", **labels, kind=kind)
            - value(before, "gateway_tokens_total", **labels, kind=kind)
            == count
        )
    assert value(after, "gateway_cost_usd_total", **labels) - value(
        before, "gateway_cost_usd_total", **labels
    ) == pytest.approx(cost)
    assert (
        value(after, "gateway_overhead_seconds_count", stream="false")
        - value(before, "gateway_overhead_seconds_count", stream="false")
        == 1
    )
    assert value(after, "gateway_requests_in_flight") == 0

    assert line["trace_id"] == trace_id
    assert {
        key: line[key]
        for key in (
            "method",
            "path",
            "status",
            "model",
            "alias",
            "provider",
            "upstream_model",
            "stream",
            "attempts",
            "input_tokens",
            "output_tokens",
            "cached_tokens",
            "outcome",
            "finish_reason",
            "error_type",
            "error_class",
        )
    } == {
        "method": "POST",
        "path": "/v1/responses",
        "status": 200,
        "model": "gpt-4o",
        "alias": None,
        "provider": "up",
        "upstream_model": "gpt-4o",
        "stream": False,
        "attempts": 1,
        "input_tokens": 10,
        "output_tokens": 5,
        "cached_tokens": 4,
        "outcome": "completed",
        "finish_reason": "stop",
        "error_type": None,
        "error_class": None,
    }
    assert line["cost_usd"] == pytest.approx(cost)
    assert line["config_version"] == gateway.app.state.gateway.store.current.version
    assert 0 <= line["overhead_ms"] < line["latency_ms"]
    assert line["ttft_ms"] is None  # not a stream
    # Neither content nor the upstream key is ever in a log line by default.
    text = repr(gateway.logs.lines)
    assert "Hello there" not in text and "test-key" not in text and "'input'" not in text


def _delta(before: dict, after: dict, name: str, **labels: str) -> float:  # type: ignore[type-arg]
    return value(after, name, **labels) - value(before, name, **labels)


def test_upstream_error_is_counted_by_class(gateway: Gateway, client: OpenAI) -> None:
    gateway.upstream.script(upstream_error(400, "bad thing"))
    before = gateway.scrape()
    with pytest.raises(BadRequestError) as caught:
        client.responses.create(
            model="gpt-4o", input="hi", extra_headers={"x-request-id": "req_400"}
        )
    line = _after(gateway, "req_400")
    after = gateway.scrape()
    assert len(gateway.upstream.requests) == 1  # a client error is not retried
    assert (
        _delta(before, after, "gateway_requests_total", provider="up", model="gpt-4o", status="400")
        == 1
    )
    assert (
        _delta(
            before,
            after,
            "gateway_upstream_errors_total",
            provider="up",
            **{"class": "client_error"},
        )
        == 1
    )
    assert _delta(before, after, "gateway_retries_total", provider="up") == 0
    assert line["status"] == 400
    assert isinstance(caught.value.body, dict)
    assert line["error_type"] == caught.value.body["type"] == "server_error"  # as upstream said
    assert line["error_class"] == "client_error"
    assert line["attempts"] == 1
    assert line["cost_usd"] is None


def test_retry_is_counted_and_logged(gateway: Gateway, client: OpenAI) -> None:
    gateway.upstream.script(upstream_error(503), Reply.json(chat_completion()))
    before = gateway.scrape()
    response = client.responses.create(
        model="gpt-4o", input="hi", extra_headers={"x-request-id": "req_retry"}
    )
    assert response.status == "completed"
    line = _after(gateway, "req_retry")
    after = gateway.scrape()
    assert _delta(before, after, "gateway_retries_total", provider="up") == 1
    assert (
        _delta(
            before, after, "gateway_upstream_errors_total", provider="up", **{"class": "overloaded"}
        )
        == 1
    )
    assert (
        _delta(before, after, "gateway_requests_total", provider="up", model="gpt-4o", status="200")
        == 1
    )
    assert (line["attempts"], line["status"], line["error_class"]) == (2, 200, "overloaded")
    # The retry's own log line was written while the request was handled: it has its ids.
    retry_lines = [
        entry
        for entry in gateway.logs.lines
        if entry["logger"] == "gateway.responses" and entry.get("request_id") == "req_retry"
    ]
    assert retry_lines and all(entry["trace_id"] == line["trace_id"] for entry in retry_lines)


def test_fallback_to_the_next_target_of_an_alias(gateway: Gateway, client: OpenAI) -> None:
    gateway.upstream.script(upstream_error(500), upstream_error(500))
    before = gateway.scrape()
    response = client.responses.create(
        model="smart", input="one two three", extra_headers={"x-request-id": "req_fallback"}
    )
    assert response.output_text == "one two three"
    line = _after(gateway, "req_fallback")
    after = gateway.scrape()
    assert (
        _delta(
            before,
            after,
            "gateway_fallbacks_total",
            alias="smart",
            from_provider="up",
            to_provider="echo",
        )
        == 1
    )
    assert _delta(before, after, "gateway_retries_total", provider="echo") == 0
    assert (
        _delta(
            before,
            after,
            "gateway_upstream_errors_total",
            provider="up",
            **{"class": "server_error"},
        )
        == 2
    )
    assert (
        _delta(before, after, "gateway_requests_total", provider="echo", model="echo", status="200")
        == 1
    )
    assert (line["alias"], line["provider"], line["upstream_model"], line["attempts"]) == (
        "smart",
        "echo",
        "echo",
        3,
    )
    # The alias has a price of its own, and it wins over the model's.
    assert line["cost_usd"] == pytest.approx((line["input_tokens"] + line["output_tokens"]) / 1e6)


def test_stream_measures_time_to_first_token_and_overhead(gateway: Gateway, client: OpenAI) -> None:
    gateway.upstream.script(chat_stream())
    before = gateway.scrape()
    with client.responses.stream(
        model="gpt-4o", input="hi", extra_headers={"x-request-id": "req_stream"}
    ) as stream:
        text = "".join(
            event.delta for event in stream if event.type == "response.output_text.delta"
        )
        final = stream.get_final_response()
    assert text == "Hello" and final.usage is not None and final.usage.output_tokens == 2
    line = _after(gateway, "req_stream")
    after = gateway.scrape()
    assert (
        _delta(
            before,
            after,
            "gateway_time_to_first_token_seconds_count",
            provider="up",
            model="gpt-4o",
        )
        == 1
    )
    assert _delta(before, after, "gateway_overhead_seconds_count", stream="true") == 1
    assert (
        _delta(
            before,
            after,
            "gateway_request_duration_seconds_count",
            provider="up",
            model="gpt-4o",
            stream="true",
        )
        == 1
    )
    assert (
        _delta(before, after, "gateway_tokens_total", provider="up", model="gpt-4o", kind="output")
        == 2
    )
    assert line["stream"] is True and line["outcome"] == "completed"
    assert 0 < line["ttft_ms"] <= line["latency_ms"]
    assert 0 <= line["overhead_ms"] < line["latency_ms"]
    assert line["cost_usd"] == pytest.approx((7 * 2.5 + 2 * 10.0) / 1e6)


@pytest.mark.parametrize("stream", [False, True])
def test_time_blocked_on_a_slow_upstream_is_not_gateway_overhead(
    gateway: Gateway, client: OpenAI, stream: bool
) -> None:
    slow = chat_stream() if stream else Reply.json(chat_completion())
    slow.wait = 0.3  # a slow first byte; streams also pause between chunks
    slow.delay = 0.05
    gateway.upstream.script(slow)
    request_id = f"req_slow_{stream}"
    raw = client.responses.with_raw_response.create(
        model="gpt-4o", input="hi", stream=stream, extra_headers={"x-request-id": request_id}
    )
    if stream:
        list(raw.parse())  # read the stream to its end
    line = _after(gateway, request_id)
    assert line["latency_ms"] >= 300
    # The gateway's own time is a few milliseconds; the upstream's 300+ ms are not in it.
    assert line["overhead_ms"] < 100
    assert float(raw.headers["x-gateway-overhead-ms"]) < 100


def test_breaker_state_gauge_and_event(gateway: Gateway, client: OpenAI) -> None:
    gateway.upstream.script(upstream_error(500))
    with pytest.raises(Exception):  # noqa: B017 - any 5xx the SDK raises
        client.responses.create(
            model="flaky:m", input="hi", extra_headers={"x-request-id": "req_b"}
        )
    _after(gateway, "req_b")
    samples = gateway.scrape()
    assert value(samples, "gateway_breaker_state", provider="flaky") == 2
    events = [line for line in gateway.logs.lines if line.get("event") == "breaker"]
    assert events[-1]["provider"] == "flaky" and events[-1]["state"] == "open"
    assert events[-1]["level"] == "warning"


def test_bad_requests_are_counted_without_a_provider(gateway: Gateway) -> None:
    before = gateway.scrape()
    response = httpx.post(
        f"{gateway.url}/v1/responses",
        content=b"{not json",
        headers={"x-request-id": "req_bad", "content-type": "application/json"},
    )
    assert response.status_code == 400
    assert response.headers["x-request-id"] == "req_bad"
    assert len(response.headers["x-trace-id"]) == 32
    line = _after(gateway, "req_bad")
    after = gateway.scrape()
    assert (
        _delta(before, after, "gateway_requests_total", provider="none", model="none", status="400")
        == 1
    )
    assert line["error_type"] == "invalid_request_error" and line["provider"] is None


def test_incoming_traceparent_is_continued_without_tracing(gateway: Gateway) -> None:
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    gateway.upstream.script(Reply.json(chat_completion()))
    response = httpx.post(
        f"{gateway.url}/v1/responses",
        json={"model": "gpt-4o", "input": "hi"},
        headers={
            "traceparent": f"00-{trace_id}-00f067aa0ba902b7-01",
            "x-request-id": "req_traced",
        },
    )
    assert response.status_code == 200
    assert response.headers["x-trace-id"] == trace_id
    version, returned_trace, span_id, flags = response.headers["traceparent"].split("-")
    assert (version, returned_trace, flags) == ("00", trace_id, "01")
    assert span_id != "00f067aa0ba902b7"
    assert _after(gateway, "req_traced")["trace_id"] == trace_id


def test_openmetrics_scrape_has_exemplars(gateway: Gateway, client: OpenAI) -> None:
    gateway.upstream.script(Reply.json(chat_completion()))
    raw = client.responses.with_raw_response.create(
        model="gpt-4o", input="hi", extra_headers={"x-request-id": "req_exemplar"}
    )
    _after(gateway, "req_exemplar")
    scraped = httpx.get(
        f"{gateway.url}/metrics", headers={"accept": "application/openmetrics-text"}
    )
    assert scraped.headers["content-type"].startswith("application/openmetrics-text")
    trace_id = raw.headers["x-trace-id"]
    assert f'trace_id="{trace_id}"' in scraped.text
    assert 'request_id="req_exemplar"' in scraped.text


def test_agent_messages_sent_delivered_and_inbox_depth(gateway: Gateway) -> None:
    before = gateway.scrape()
    sent = httpx.post(
        f"{gateway.url}/v1/agents/messages",
        json={"sender": "planner", "channel": "review", "content": "please review"},
    )
    assert sent.status_code == 201, sent.text
    middle = gateway.scrape()
    assert _delta(before, middle, "gateway_agent_messages_sent_total", channel="review") == 1
    assert _delta(before, middle, "gateway_agent_inbox_depth", agent="coder") == 1
    page = httpx.get(f"{gateway.url}/v1/agents/coder/messages").json()
    assert [message["content"] for message in page["data"]][-1] == "please review"
    after = gateway.scrape()
    assert _delta(before, after, "gateway_agent_messages_delivered_total", channel="review") == 1
    assert value(after, "gateway_agent_inbox_depth", agent="coder") == 0


def test_config_reloads_and_the_active_version(gateway: Gateway) -> None:
    store = gateway.app.state.gateway.store
    old_version = store.current.version
    before = gateway.scrape()
    assert value(before, "gateway_config_info", version=old_version) == 1
    original = gateway.config_path.read_text()
    try:
        gateway.config_path.write_text(
            original.replace("breaker: {failures: 100}", "breaker: {failures: 99}")
        )
        assert store.reload() is True
        new_version = store.current.version
        gateway.config_path.write_text("providers: [this is not valid\n")
        assert store.reload() is False
    finally:
        gateway.config_path.write_text(original)
        assert store.reload() is True
    after = gateway.scrape()
    assert _delta(before, after, "gateway_config_reloads_total", result="ok") == 2
    assert _delta(before, after, "gateway_config_reloads_total", result="failed") == 1
    assert new_version != old_version
    assert value(after, "gateway_config_info", version=new_version) == 0
    assert value(after, "gateway_config_info", version=old_version) == 1
    failures = [line for line in gateway.logs.lines if line["logger"] == "gateway.config"]
    assert any(line["level"] == "error" for line in failures)


def test_content_logging_is_an_explicit_opt_in() -> None:
    config = CONFIG + "observability: {logs: {content: true}}\n"
    with observed_gateway(config) as running:
        client = OpenAI(base_url=f"{running.url}/v1", api_key="unused", max_retries=0)
        client.responses.create(
            model="echo:echo",
            input="secret plans",
            instructions="be terse",
            extra_headers={"x-request-id": "req_content"},
        )
        line = running.logs.request_line("req_content")
    assert line["input"] == {"instructions": "be terse", "input": "secret plans"}
    assert line["output"][0]["content"][0]["text"] == "secret plans"


def test_probes_and_scrapes_are_not_logged(gateway: Gateway) -> None:
    count = len(gateway.logs.lines)
    httpx.get(f"{gateway.url}/healthz")
    httpx.get(f"{gateway.url}/metrics")
    models = httpx.get(f"{gateway.url}/v1/models", headers={"x-request-id": "req_models"})
    line = _after(gateway, "req_models")
    assert models.status_code == 200 and line["path"] == "/v1/models"
    assert "provider" not in line  # not a model request: the common fields only
    paths = [entry.get("path") for entry in gateway.logs.lines[count:]]
    assert "/healthz" not in paths and "/metrics" not in paths
    wait_for(lambda: True)
