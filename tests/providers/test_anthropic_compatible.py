"""``examples/anthropic-compatible.yaml``: a provider that is not a preset, added in YAML alone.

The example file is served as shipped (only its environment variables point it at a fake
upstream); requests through it must reach the proxy with the proxy's own auth header, extra
headers, settings and body override, and come back wire-exact like any Anthropic answer.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from gateway.config.build import load_runtime
from tests.providers.anthropic_support import fixture_reply, message
from tests.support.fake_upstream import FakeUpstream, Reply, fake_upstream
from tests.support.server import running_gateway

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "anthropic-compatible.yaml"
TOKEN = "proxy-token-123"


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[openai.OpenAI, FakeUpstream]]:
    with (
        fake_upstream() as upstream,
        running_gateway(
            EXAMPLE.read_text(),
            env={
                "CLAUDE_PROXY_URL": f"{upstream.url}/anthropic",
                "CLAUDE_PROXY_TOKEN": TOKEN,
                "CLAUDE_KEY": "",  # never the real API from a test, whatever the shell has
            },
        ) as base_url,
    ):
        client = openai.OpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0)
        yield client, upstream


def test_example_passes_the_config_check() -> None:
    runtime = load_runtime(EXAMPLE, environ={"CLAUDE_PROXY_TOKEN": TOKEN, "CLAUDE_KEY": ""})
    assert set(runtime.providers) == {"claude", "claude-proxy"}
    assert runtime.missing_keys == {"claude": "CLAUDE_KEY"}  # the gateway still starts


def test_whole_request_reaches_the_proxy_its_way(
    served: tuple[openai.OpenAI, FakeUpstream],
) -> None:
    client, upstream = served
    upstream.script(Reply.json(message([{"type": "text", "text": "Hi from the proxy."}])))
    response = client.responses.create(model="smart", input="hello", user="ada")
    assert response.output_text == "Hi from the proxy."
    request = upstream.last
    assert request.path == "/anthropic/v1/messages"
    assert request.headers["x-proxy-token"] == TOKEN
    assert "x-api-key" not in request.headers
    assert request.headers["anthropic-version"] == "2023-06-01"
    assert request.headers["anthropic-beta"] == "interleaved-thinking-2025-05-14"
    assert request.headers["x-proxy-team"] == "research"
    body = request.json()
    assert body["model"] == "claude-opus-4-1"
    assert body["max_tokens"] == 8192  # the proxy's own default
    assert body["metadata"] == {"user_id": "research:ada"}


def test_streamed_request_through_the_proxy(served: tuple[openai.OpenAI, FakeUpstream]) -> None:
    client, upstream = served
    upstream.script(fixture_reply("anthropic-tool.sse"))
    with client.responses.stream(model="fast", input="weather?") as stream:
        final = stream.get_final_response()
    assert final.status == "completed"
    assert final.output[-1].type == "function_call"
    body = upstream.last.json()
    assert body["stream"] is True
    assert body["model"] == "claude-sonnet-4-5"
    assert body["max_tokens"] == 1024  # the alias's params
    assert body["metadata"] == {"user_id": "research:anonymous"}


def test_the_real_provider_without_a_key_answers_clearly(
    served: tuple[openai.OpenAI, FakeUpstream],
) -> None:
    client, _ = served
    with pytest.raises(openai.APIStatusError) as caught:
        client.responses.create(model="claude:claude-sonnet-4-5", input="hi")
    assert caught.value.status_code == 503
    assert "CLAUDE_KEY" in caught.value.message
