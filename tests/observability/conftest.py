"""A real gateway in front of a scripted upstream, with its logs captured and its spans kept
in memory; helpers to scrape ``/metrics`` and wait for what the server writes after the answer.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import orjson
import uvicorn
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from gateway.app import create_app
from gateway.observability.context import RequestContextFilter
from gateway.observability.hub import Observability
from gateway.observability.logs import JsonFormatter
from tests.support.fake_upstream import FakeUpstream, Reply, fake_upstream
from tests.support.server import free_port, wait_until_healthy, write_config

T = TypeVar("T")


def chat_completion(
    text: str = "Hello there", prompt: int = 10, completion: int = 5, cached: int = 4
) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached},
        },
    }


def chat_stream(
    words: tuple[str, ...] = ("Hel", "lo"), prompt: int = 7, completion: int = 2
) -> Reply:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            "id": "chatcmpl-2",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "gpt-4o",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }

    events: list[Any] = [chunk({"role": "assistant", "content": ""})]
    events += [chunk({"content": word}) for word in words]
    events.append(chunk({}, "stop"))
    events.append(
        {
            "id": "chatcmpl-2",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "gpt-4o",
            "choices": [],
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            },
        }
    )
    return Reply.sse(events, done=True)


def upstream_error(status: int, message: str = "upstream says no") -> Reply:
    return Reply.json({"error": {"message": message, "type": "server_error"}}, status=status)


class LogCapture(logging.Handler):
    """Every record under ``gateway``, formatted as the JSON the operator would see."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.addFilter(RequestContextFilter())
        self.setFormatter(JsonFormatter())
        self.lines: list[dict[str, Any]] = []
        self._lock_lines = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        line = orjson.loads(self.format(record))
        with self._lock_lines:
            self.lines.append(line)

    def requests(self, request_id: str) -> list[dict[str, Any]]:
        with self._lock_lines:
            return [
                line
                for line in self.lines
                if line.get("event") == "request" and line.get("request_id") == request_id
            ]

    def request_line(self, request_id: str) -> dict[str, Any]:
        return wait_for(lambda: (self.requests(request_id) or [None])[0])


def wait_for(probe: Callable[[], T | None], timeout: float = 3.0) -> T:
    """What the server writes after the client has its answer (log line, metrics) comes a
    moment later: poll for it."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the server")
        time.sleep(0.01)


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


_http = httpx.Client(timeout=5.0)  # one client: building an SSL context per call takes ~0.1 s


def scrape(base_url: str) -> Samples:
    text = _http.get(f"{base_url}/metrics").text
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@dataclass
class Gateway:
    url: str
    app: FastAPI
    upstream: FakeUpstream
    logs: LogCapture
    config_path: Path
    spans: Any = None  # an InMemorySpanExporter when tracing is on
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def observability(self) -> Observability:
        hub: Observability = self.app.state.observability
        return hub

    def scrape(self) -> Samples:
        return scrape(self.url)


@contextlib.contextmanager
def serve_app(app: FastAPI) -> Iterator[str]:
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="warning", lifespan="on", loop="asyncio"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(url)
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@contextlib.contextmanager
def observed_gateway(config: str, *, tracing: bool = False) -> Iterator[Gateway]:
    """``config`` may use ``{upstream}`` for the fake upstream's base URL."""
    logs = LogCapture()
    gateway_logger = logging.getLogger("gateway")
    saved_level = gateway_logger.level
    gateway_logger.setLevel(logging.INFO)
    gateway_logger.addHandler(logs)
    try:
        with fake_upstream() as upstream:
            path = write_config(config.replace("{upstream}", upstream.url))
            app = create_app(str(path), watch=False, tune_gc=False)
            spans = None
            if tracing:
                from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
                    InMemorySpanExporter,
                )

                spans = InMemorySpanExporter()
                app.state.observability.tracing.use_exporter(spans)
            with serve_app(app) as url:
                yield Gateway(url, app, upstream, logs, path, spans)
    finally:
        gateway_logger.removeHandler(logs)
        gateway_logger.setLevel(saved_level)
