"""What the benchmark measures: scenarios, and the request each target gets for one."""

from __future__ import annotations

from dataclasses import dataclass, replace
from importlib import resources
from typing import Literal

import orjson

TARGETS = ("direct", "relay", "gateway")

# Content-delta and end-of-stream markers per wire format (one marker per content chunk).
CHAT_MARKER = b'"delta":{"content":"'
CHAT_END = b"data: [DONE]"
ANTHROPIC_MARKER = b'"text_delta"'
ANTHROPIC_END = b"message_stop"
# The gateway's Responses stream: the first candidate seen once per delta in a probe wins.
RESPONSES_MARKERS = (
    b"event: response.output_text.delta\n",
    b'"type":"response.output_text.delta"',
    b'"type": "response.output_text.delta"',
)
RESPONSES_END = b"response.completed"


@dataclass(frozen=True)
class Scenario:
    name: str
    kind: Literal["wrk", "streams", "soak"]
    api: Literal["chat", "anthropic"]
    stream: bool
    chunks: int  # content chunks per stream (words in a non-streaming answer)
    delay_ms: int  # upstream delay between chunks
    concurrency: int  # wrk connections, or streams for kind "streams"
    about: str
    ramp_s: float = 0.0  # streams: spread the starts over this long

    @property
    def model(self) -> str:
        """The model name that tells the fake upstream the answer's shape."""
        return f"bench-c{self.chunks}-d{self.delay_ms}"


ALL: tuple[Scenario, ...] = (
    Scenario("ns-c1", "wrk", "chat", False, 10, 0, 1, "non-streaming, one client: latency"),
    Scenario("ns-c32", "wrk", "chat", False, 10, 0, 32, "non-streaming, 32 clients: throughput"),
    Scenario("ns-c128", "wrk", "chat", False, 10, 0, 128, "non-streaming, 128 clients: overload"),
    Scenario("stream-c32", "wrk", "chat", True, 50, 0, 32, "50-chunk Chat streams, 32 clients"),
    Scenario(
        "anthropic-stream-c32", "wrk", "anthropic", True, 50, 0, 32, "50-chunk Anthropic streams"
    ),
    Scenario(
        "slow-streams",
        "streams",
        "chat",
        True,
        20,
        500,
        1000,
        "1,000 concurrent paced streams (20 chunks 500 ms apart, 5 s ramp), TTFB",
        ramp_s=5.0,
    ),
    Scenario("soak", "soak", "chat", True, 50, 0, 32, "gateway stream soak: RSS over time"),
)
NAMES = tuple(s.name for s in ALL)


def quick(s: Scenario) -> Scenario:
    """The same scenario at a tiny load, for the smoke run."""
    if s.kind == "streams":
        return replace(s, concurrency=20, chunks=5, delay_ms=20, ramp_s=0.02)
    return replace(s, concurrency=min(s.concurrency, 4))


@dataclass(frozen=True)
class Endpoint:
    """Where one target is hit for one scenario, with what, and how its stream is read."""

    target: str
    port: int
    path: str
    body: bytes
    marker: bytes | None = None  # one per content delta (streams only)
    end_marker: bytes | None = None


def upstream_body(s: Scenario) -> bytes:
    """The Chat Completions or Anthropic body a client would send the provider directly."""
    messages = [{"role": "user", "content": "hello"}]
    if s.api == "chat":
        body: dict[str, object] = {"model": s.model, "messages": messages, "stream": s.stream}
        if s.stream:
            body["stream_options"] = {"include_usage": True}
    else:
        body = {"model": s.model, "max_tokens": 1024, "messages": messages, "stream": s.stream}
    return orjson.dumps(body)


def responses_body(s: Scenario) -> bytes:
    provider = "fake" if s.api == "chat" else "fakeclaude"
    return orjson.dumps({"model": f"{provider}:{s.model}", "input": "hello", "stream": s.stream})


def endpoint(target: str, port: int, s: Scenario, responses_marker: bytes | None) -> Endpoint:
    if target == "gateway":
        return Endpoint(
            target,
            port,
            "/v1/responses",
            responses_body(s),
            responses_marker if s.stream else None,
            RESPONSES_END if s.stream else None,
        )
    path = "/v1/chat/completions" if s.api == "chat" else "/v1/messages"
    marker, end = (CHAT_MARKER, CHAT_END) if s.api == "chat" else (ANTHROPIC_MARKER, ANTHROPIC_END)
    return Endpoint(
        target,
        port,
        path,
        upstream_body(s),
        marker if s.stream else None,
        end if s.stream else None,
    )


def gateway_has_preset(name: str) -> bool:
    """Whether the installed gateway bundles preset ``name`` (the Anthropic one came later)."""
    try:
        return resources.files("gateway").joinpath(f"presets/{name}.yaml").is_file()
    except ModuleNotFoundError:
        return False


def gateway_yaml(upstream_port: int, *, anthropic: bool) -> str:
    base = f"http://127.0.0.1:{upstream_port}"
    text = (
        "# written by bench/run.py: every provider points at the local fake upstream\n"
        "default_provider: fake\n"
        "providers:\n"
        f'  fake: {{preset: openai-chat, base_url: "{base}/v1", api_key: "bench"}}\n'
    )
    if anthropic:
        text += f'  fakeclaude: {{preset: anthropic, base_url: "{base}", api_key: "bench"}}\n'
    return text
