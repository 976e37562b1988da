"""OpenTelemetry spans: the tree per request, GenAI attributes, traceparent continued; and no
OpenTelemetry at all when tracing is off."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from openai import OpenAI

from gateway.app import create_app
from tests.observability.conftest import (
    Gateway,
    chat_completion,
    chat_stream,
    observed_gateway,
    upstream_error,
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
  echo: {preset: echo}
models:
  smart:
    targets: [up:gpt-4o, echo:echo]
prices:
  up:gpt-4o: {input: 2.5, output: 10.0}
"""

PARENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_SPAN = "00f067aa0ba902b7"


@pytest.fixture(scope="module")
def gateway() -> Iterator[Gateway]:
    with observed_gateway(CONFIG, tracing=True) as running:
        yield running


@pytest.fixture
def client(gateway: Gateway) -> OpenAI:
    gateway.upstream.reset()
    gateway.spans.clear()
    return OpenAI(base_url=f"{gateway.url}/v1", api_key="unused", max_retries=0)


def _spans(gateway: Gateway, count: int) -> list[Any]:
    """The finished spans, once the server span (ended after the last byte) is among them."""
    return wait_for(
        lambda: (
            (spans := list(gateway.spans.get_finished_spans())) and len(spans) >= count and spans
        )
    )


def _by_kind(spans: list[Any]) -> tuple[Any, list[Any]]:
    from opentelemetry.trace import SpanKind

    [server] = [span for span in spans if span.kind == SpanKind.SERVER]
    attempts = sorted(
        (span for span in spans if span.kind == SpanKind.CLIENT),
        key=lambda span: span.attributes["gateway.attempt"],
    )
    return server, attempts


def test_span_tree_continues_the_client_trace(gateway: Gateway, client: OpenAI) -> None:
    gateway.upstream.script(Reply.json(chat_completion(prompt=12, completion=3)))
    raw = client.responses.with_raw_response.create(
        model="gpt-4o",
        input="hi",
        temperature=0.5,
        max_output_tokens=50,
        extra_headers={
            "traceparent": f"00-{PARENT_TRACE}-{PARENT_SPAN}-01",
            "x-request-id": "req_span",
        },
    )
    server, [attempt] = _by_kind(_spans(gateway, 2))

    assert f"{server.context.trace_id:032x}" == PARENT_TRACE
    assert f"{server.parent.span_id:016x}" == PARENT_SPAN
    assert attempt.parent.span_id == server.context.span_id
    assert attempt.context.trace_id == server.context.trace_id
    assert raw.headers["x-trace-id"] == PARENT_TRACE
    assert raw.headers["traceparent"] == f"00-{PARENT_TRACE}-{server.context.span_id:016x}-01"

    assert server.name == "POST /v1/responses"
    version = gateway.app.state.gateway.store.current.version
    assert dict(server.attributes) == {
        "http.request.method": "POST",
        "url.path": "/v1/responses",
        "http.response.status_code": 200,
        "gateway.request_id": "req_span",
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "gpt-4o",
        "gen_ai.response.model": "gpt-4o",
        "gen_ai.usage.input_tokens": 12,
        "gen_ai.usage.output_tokens": 3,
        "gateway.provider": "up",
        "gateway.attempts": 1,
        "gateway.cost_usd": pytest.approx((12 * 2.5 + 3 * 10.0) / 1e6),
        "gateway.config_version": version,
        "gateway.stream": False,
    }

    assert attempt.name == "chat gpt-4o"
    attributes = dict(attempt.attributes)
    port = int(gateway.upstream.url.rsplit(":", 1)[1])
    assert attributes == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai-chat",
        "gen_ai.system": "openai-chat",
        "gen_ai.request.model": "gpt-4o",
        "gateway.provider": "up",
        "gateway.attempt": 1,
        "server.address": "127.0.0.1",
        "server.port": port,
        "http.response.status_code": 200,
        "gen_ai.response.model": "gpt-4o",
        "gen_ai.usage.input_tokens": 12,
        "gen_ai.usage.output_tokens": 3,
        "gen_ai.response.finish_reasons": ("stop",),
        "gen_ai.response.id": raw.parse().id,
        "gateway.cost_usd": pytest.approx((12 * 2.5 + 3 * 10.0) / 1e6),
    }
    # The request's log line carries the same trace id.
    assert gateway.logs.request_line("req_span")["trace_id"] == PARENT_TRACE


def test_a_failed_attempt_and_a_fallback_are_sibling_spans(
    gateway: Gateway, client: OpenAI
) -> None:
    from opentelemetry.trace import StatusCode

    gateway.upstream.script(upstream_error(503), upstream_error(503))
    client.responses.create(model="smart", input="fall back")
    server, attempts = _by_kind(_spans(gateway, 4))
    assert [span.name for span in attempts] == ["chat gpt-4o", "chat gpt-4o", "chat echo"]
    assert all(span.parent.span_id == server.context.span_id for span in attempts)
    for failed in attempts[:2]:
        assert failed.status.status_code == StatusCode.ERROR
        assert failed.attributes["error.type"] == "overloaded"
        assert failed.attributes["http.response.status_code"] == 503
    assert attempts[2].status.status_code == StatusCode.UNSET
    assert attempts[2].attributes["gen_ai.provider.name"] == "echo"
    assert "server.address" not in attempts[2].attributes  # builtin://, no network
    assert server.attributes["gateway.alias"] == "smart"
    assert server.attributes["gateway.attempts"] == 3
    assert server.status.status_code == StatusCode.UNSET


def test_a_stream_span_ends_with_its_last_byte(gateway: Gateway, client: OpenAI) -> None:
    gateway.upstream.script(chat_stream(prompt=7, completion=2))
    with client.responses.stream(model="gpt-4o", input="hi") as stream:
        final = stream.get_final_response()
    server, [attempt] = _by_kind(_spans(gateway, 2))
    assert server.attributes["gateway.stream"] is True
    assert attempt.attributes["gen_ai.usage.output_tokens"] == 2
    assert attempt.attributes["gen_ai.response.finish_reasons"] == ("stop",)
    assert attempt.attributes["gen_ai.response.id"] == final.id
    assert attempt.end_time <= server.end_time


def test_an_upstream_failure_marks_the_server_span(gateway: Gateway, client: OpenAI) -> None:
    from opentelemetry.trace import StatusCode

    gateway.upstream.script(upstream_error(500), upstream_error(500))
    response = httpx.post(f"{gateway.url}/v1/responses", json={"model": "gpt-4o", "input": "x"})
    assert response.status_code == 500
    server, attempts = _by_kind(_spans(gateway, 3))
    assert len(attempts) == 2
    assert server.status.status_code == StatusCode.ERROR
    assert server.attributes["http.response.status_code"] == 500


async def test_tracing_off_never_loads_the_sdk(tmp_path: Path) -> None:
    """FastAPI itself imports the OpenTelemetry *API* when it is installed; the SDK and the
    exporter are the gateway's to load, and it loads them only when tracing is on."""
    config = tmp_path / "gateway.yaml"
    config.write_text("providers: {echo: {preset: echo}}\ndefault_provider: echo\n")
    prefixes = ("opentelemetry.sdk", "opentelemetry.exporter")
    saved = {name: sys.modules.pop(name) for name in list(sys.modules) if name.startswith(prefixes)}
    try:
        app = create_app(str(config), watch=False, tune_gc=False)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
                response = await http.post(
                    "/v1/responses",
                    json={"model": "echo", "input": "hi"},
                    headers={"traceparent": f"00-{PARENT_TRACE}-{PARENT_SPAN}-01"},
                )
        loaded = sorted(name for name in sys.modules if name.startswith(prefixes))
    finally:
        for name in [name for name in sys.modules if name.startswith(prefixes)]:
            del sys.modules[name]
        sys.modules.update(saved)
    assert response.status_code == 200, response.text
    assert response.headers["x-trace-id"] == PARENT_TRACE  # correlation without tracing
    assert loaded == []
    assert not app.state.observability.tracing.enabled


def test_tracing_follows_the_config(monkeypatch: pytest.MonkeyPatch) -> None:
    """A reload that turns tracing on builds an OTLP pipeline, one that changes nothing
    keeps it, one that turns it off drops it. (Nothing is exported: no span is made.)"""
    from gateway.observability.settings import TracingSettings
    from gateway.observability.tracing import Tracing

    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    tracing = Tracing()
    tracing.configure(TracingSettings())
    assert not tracing.enabled
    on = TracingSettings(enabled=True, endpoint="http://127.0.0.1:9/", service_name="edge")
    tracing.configure(on)
    tracer = tracing.tracer
    assert tracer is not None
    provider = tracing._provider
    assert provider is not None and provider.resource.attributes["service.name"] == "edge"
    [processor] = provider._active_span_processor._span_processors
    assert processor.span_exporter._endpoint == "http://127.0.0.1:9/v1/traces"
    tracing.configure(
        TracingSettings(enabled=True, endpoint="http://127.0.0.1:9/", service_name="edge")
    )
    assert tracing.tracer is tracer  # unchanged settings keep the pipeline
    tracing.configure(TracingSettings())
    assert not tracing.enabled
