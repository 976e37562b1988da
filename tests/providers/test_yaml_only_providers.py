"""Providers that are not presets, added in YAML alone: ``examples/vllm.yaml`` (extends
``openai-chat`` and overrides a few parts) and ``examples/ollama.yaml`` (Ollama's native NDJSON
API written from scratch, plus its OpenAI-compatible endpoint in one line).

The example files are served as shipped; only their environment variables point them at a
local fake upstream. Clients are the official SDK and the Agents SDK.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import openai
import pytest
from openai import AsyncOpenAI, OpenAI

from agents import Agent, OpenAIResponsesModel, Runner, function_tool, set_tracing_disabled
from gateway.config.build import load_runtime
from tests.providers.requests import PNG_DATA_URL, render_upstream, request_body
from tests.support.fake_upstream import FIXTURES, FakeUpstream, Reply, fake_upstream
from tests.support.server import running_gateway

set_tracing_disabled(True)

ROOT: Final = Path(__file__).resolve().parents[2]
VLLM: Final = ROOT / "examples" / "vllm.yaml"
OLLAMA: Final = ROOT / "examples" / "ollama.yaml"


def test_no_python_module_names_these_providers() -> None:
    pattern = re.compile(r"ollama|vllm", re.IGNORECASE)
    offenders = [
        str(path.relative_to(ROOT))
        for path in (ROOT / "src" / "gateway").rglob("*.py")
        if pattern.search(path.read_text(encoding="utf-8"))
    ]
    assert offenders == []


def test_examples_pass_the_config_check() -> None:
    vllm = load_runtime(VLLM, environ={})
    assert set(vllm.providers) == {"vllm"}
    assert vllm.missing_keys == {"vllm": "VLLM_KEY"}  # the gateway still starts
    ollama = load_runtime(OLLAMA, environ={})
    assert set(ollama.providers) == {"ollama", "ollama-openai"}
    assert ollama.missing_keys == {}


# --------------------------------------------------------------------------- vLLM

VLLM_ENV: Final = {"VLLM_KEY": "vllm-secret"}


def render_vllm(name: str, model: str = "qwen", **overrides: Any) -> dict[str, Any]:
    return render_upstream(VLLM.read_text(), request_body(name, model, **overrides), VLLM_ENV)


def test_vllm_request_overrides() -> None:
    rendered = render_vllm("sampling_parameters")
    assert rendered["url"] == "https://gpu.example.internal/vllm/v1/chat/completions"
    assert rendered["headers"]["x-tenant"] == "research"
    assert rendered["headers"]["authorization"] == "<redacted>"
    body = rendered["body"]
    assert body["model"] == "Qwen/Qwen3-8B"
    assert body["max_tokens"] == 100
    assert "max_completion_tokens" not in body
    assert "chat_template_kwargs" not in body
    assert body["messages"] == [{"role": "user", "content": "Write a haiku."}]


@pytest.mark.parametrize(("effort", "thinking"), [("medium", True), ("minimal", False)])
def test_vllm_reasoning_becomes_the_chat_template_switch(effort: str, thinking: bool) -> None:
    body = render_vllm("text_string_input", reasoning={"effort": effort})["body"]
    assert body["chat_template_kwargs"] == {"enable_thinking": thinking}
    assert "reasoning_effort" not in body
    alias = render_vllm("text_string_input", model="qwen-think")["body"]
    assert alias["chat_template_kwargs"] == {"enable_thinking": True}


@pytest.fixture(scope="module")
def vllm() -> Iterator[tuple[OpenAI, FakeUpstream]]:
    with fake_upstream() as upstream:
        env = {**VLLM_ENV, "VLLM_URL": f"{upstream.url}/vllm/v1"}
        with running_gateway(VLLM.read_text(), env=env) as base_url:
            yield OpenAI(base_url=f"{base_url}/v1", api_key="x", max_retries=0), upstream


def _chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def test_vllm_streamed_answer(vllm: tuple[OpenAI, FakeUpstream]) -> None:
    client, upstream = vllm
    upstream.script(Reply.sse_file(FIXTURES / "chat-text.sse"))
    with client.responses.stream(model="qwen", input="Weather?") as stream:
        final = stream.get_final_response()
    assert final.output_text.startswith("I'm unable to provide real-time weather")
    assert final.model == "qwen"
    request = upstream.last
    assert request.path == "/vllm/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer vllm-secret"
    assert request.headers["x-tenant"] == "research"


def test_vllm_error_rule_override_classifies_the_error(
    vllm: tuple[OpenAI, FakeUpstream],
) -> None:
    client, upstream = vllm
    error = {"object": "error", "message": "Server overloaded.", "type": "Busy", "code": 503}
    upstream.script(Reply.sse([_chunk({"content": "Hal"}), error]))
    events: list[Any] = []
    with pytest.raises(openai.APIError):
        for event in client.responses.create(model="qwen", input="Hi", stream=True):
            events.append(event)
    assert events[-1].type == "response.failed"
    assert events[-1].response.error.code == "overloaded"
    assert events[-1].response.error.message.endswith("Server overloaded.")


def test_vllm_abort_finish_reason_fails(vllm: tuple[OpenAI, FakeUpstream]) -> None:
    client, upstream = vllm
    upstream.script(Reply.sse([_chunk({"content": "Par"}), _chunk({}, "abort")], done=True))
    events: list[Any] = []
    with pytest.raises(openai.APIError) as caught:
        for event in client.responses.create(model="qwen", input="Hi", stream=True):
            events.append(event)
    assert "aborted" in caught.value.message
    assert events[-1].type == "response.failed"


# --------------------------------------------------------------------------- Ollama (native)


def render_ollama(body: dict[str, Any]) -> dict[str, Any]:
    return render_upstream(OLLAMA.read_text(), body)


def test_ollama_request_body() -> None:
    body = request_body(
        "parallel_calls_round_trip",
        "ollama:qwen3",
        instructions="Be brief.",
        temperature=0.2,
        max_output_tokens=64,
        reasoning={"effort": "low"},
        text={"format": {"type": "json_object"}},
    )
    rendered = render_ollama(body)
    assert rendered["url"] == "http://127.0.0.1:11434/api/chat"
    assert "authorization" not in rendered["headers"]
    sent = rendered["body"]
    assert sent["model"] == "qwen3"
    assert sent["stream"] is False
    assert sent["keep_alive"] == "10m"
    assert sent["think"] is True
    assert sent["format"] == "json"
    assert sent["options"] == {"temperature": 0.2, "num_predict": 64}
    assert sent["tools"][0]["function"]["name"] == "get_weather"
    assert sent["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {
            "role": "assistant",
            "content": "Checking both.",
            "tool_calls": [
                {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
                {"function": {"name": "get_weather", "arguments": {"city": "Rome"}}},
            ],
        },
        {"role": "tool", "tool_name": "get_weather", "content": "18C"},
        {"role": "tool", "tool_name": "get_weather", "content": "24C"},
        {"role": "user", "content": "Which is warmer?"},
    ]


def test_ollama_images_and_schema() -> None:
    sent = render_ollama(request_body("image_data_url", "ollama:llama3.2"))["body"]
    assert sent["messages"][0]["images"] == [PNG_DATA_URL.split(",", 1)[1]]
    assert sent["messages"][0]["content"] == "What is in this image?"
    schema = render_ollama(request_body("json_schema", "ollama:llama3.2"))["body"]["format"]
    assert schema["properties"] == {"city": {"type": "string"}}
    assert "tools" not in render_ollama(request_body("tool_choice_none", "ollama:x"))["body"]


def test_ollama_refuses_image_urls_it_would_have_to_fetch() -> None:
    rendered = render_ollama(request_body("image_https_url", "ollama:llama3.2"))
    assert rendered["error"]["status"] == 400
    assert "data: URL" in rendered["error"]["message"]


@pytest.fixture(scope="module")
def ollama() -> Iterator[tuple[str, FakeUpstream]]:
    with (
        fake_upstream() as upstream,
        running_gateway(OLLAMA.read_text(), env={"OLLAMA_URL": upstream.url}) as base_url,
    ):
        yield base_url, upstream


@pytest.fixture
def ollama_client(ollama: tuple[str, FakeUpstream]) -> tuple[OpenAI, FakeUpstream]:
    base_url, upstream = ollama
    upstream.reset()
    return OpenAI(base_url=f"{base_url}/v1", api_key="x", max_retries=0), upstream


def line(
    content: str = "",
    thinking: str | None = None,
    tool_calls: list[dict[str, Any]] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """One line of Ollama's /api/chat answer (a whole answer is its last line alone)."""
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if thinking is not None:
        message["thinking"] = thinking
    if tool_calls is not None:
        message["tool_calls"] = tool_calls
    return {"model": "qwen3", "created_at": "2025-01-01T00:00:00Z", "message": message, **extra}


def last_line(reason: str = "stop", **message: Any) -> dict[str, Any]:
    return {
        **line(**message),
        "done": True,
        "done_reason": reason,
        "prompt_eval_count": 26,
        "eval_count": 9,
    }


def test_ollama_streamed_thinking_and_text(ollama_client: tuple[OpenAI, FakeUpstream]) -> None:
    client, upstream = ollama_client
    upstream.script(
        Reply.ndjson(
            [
                line(thinking="The user greets; ", done=False),
                line(thinking="answer kindly.", done=False),
                line("Hello", done=False),
                line(" there!", done=False),
                last_line(),
            ]
        )
    )
    events = list(client.responses.create(model="qwen3", input="Hi", stream=True))
    assert events[-1].type == "response.completed"
    final = events[-1].response
    assert [item.type for item in final.output] == ["reasoning", "message"]
    assert final.output[0].summary[0].text == "The user greets; answer kindly."
    assert final.output_text == "Hello there!"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (26, 9)
    sent = upstream.last
    assert sent.path == "/api/chat"
    assert sent.json()["stream"] is True


def test_ollama_streamed_tool_call(ollama_client: tuple[OpenAI, FakeUpstream]) -> None:
    client, upstream = ollama_client
    call = {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
    upstream.script(
        Reply.ndjson([line(tool_calls=[call], done=False), last_line()]),
    )
    events = list(client.responses.create(model="qwen3", input="Weather?", stream=True))
    final = events[-1].response
    assert [(item.type, item.name) for item in final.output] == [("function_call", "get_weather")]
    assert json.loads(final.output[0].arguments) == {"city": "Paris"}
    assert final.output[0].call_id.startswith("call_")


def test_ollama_whole_tool_call(ollama_client: tuple[OpenAI, FakeUpstream]) -> None:
    client, upstream = ollama_client
    calls = [
        {"id": "call_x1", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
        {"function": {"name": "get_weather", "arguments": {"city": "Rome"}}},
    ]
    upstream.script(Reply.json(last_line(tool_calls=calls)))
    response = client.responses.create(model="qwen3", input="Weather in Paris and Rome?")
    assert response.status == "completed"
    first, second = response.output
    assert (first.type, first.call_id) == ("function_call", "call_x1")  # type: ignore[union-attr]
    assert json.loads(second.arguments) == {"city": "Rome"}  # type: ignore[union-attr]
    assert first.call_id != second.call_id  # type: ignore[union-attr]


def test_ollama_whole_length_is_incomplete(ollama_client: tuple[OpenAI, FakeUpstream]) -> None:
    client, upstream = ollama_client
    upstream.script(Reply.json(last_line("length", content="Once upon")))
    response = client.responses.create(model="qwen3", input="Story", max_output_tokens=2)
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"
    assert upstream.last.json()["options"] == {"num_predict": 2}


@pytest.mark.parametrize("ending", ["error_line", "no_done_line", "cut"])
def test_ollama_broken_streams_fail(
    ollama_client: tuple[OpenAI, FakeUpstream], ending: str
) -> None:
    client, upstream = ollama_client
    lines = [line("Part", done=False)]
    if ending == "error_line":
        lines.append({"error": "an unexpected error occurred"})
    upstream.script(Reply.ndjson(lines, cut=ending == "cut"))
    events: list[Any] = []
    with pytest.raises(openai.APIError) as caught:
        for event in client.responses.create(model="qwen3", input="Hi", stream=True):
            events.append(event)
    assert events[-1].type == "response.failed"
    assert events[-1].response.output[0].content[0].text == "Part"
    if ending == "error_line":
        assert "an unexpected error occurred" in caught.value.message


def test_ollama_http_error(ollama_client: tuple[OpenAI, FakeUpstream]) -> None:
    client, upstream = ollama_client
    upstream.script(
        Reply.json({"error": 'model "nope" not found, try pulling it first'}, status=404)
    )
    with pytest.raises(openai.NotFoundError) as caught:
        client.responses.create(model="ollama:nope", input="Hi")
    assert 'model "nope" not found' in caught.value.message


def test_ollama_openai_compatible_endpoint(ollama_client: tuple[OpenAI, FakeUpstream]) -> None:
    client, upstream = ollama_client
    upstream.script(Reply.sse_file(FIXTURES / "chat-tool.sse"))
    events = list(client.responses.create(model="ollama-openai:llama3.2", input="W?", stream=True))
    assert events[-1].response.output[0].type == "function_call"
    assert upstream.last.path == "/v1/chat/completions"
    assert upstream.last.json()["model"] == "llama3.2"


@pytest.mark.parametrize("streamed", [False, True], ids=["run", "run_streamed"])
async def test_agents_sdk_through_the_yaml_only_provider(
    ollama: tuple[str, FakeUpstream], streamed: bool
) -> None:
    base_url, upstream = ollama
    upstream.reset()
    call = {"function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}
    if streamed:
        upstream.script(
            Reply.ndjson([line(tool_calls=[call], done=False), last_line()]),
            Reply.ndjson([line("Cold in ", done=False), line("Oslo.", done=False), last_line()]),
        )
    else:
        upstream.script(
            Reply.json(last_line(tool_calls=[call])), Reply.json(last_line(content="Cold in Oslo."))
        )
    seen: list[str] = []

    @function_tool
    def get_weather(city: str) -> str:
        """Current weather in a city."""
        seen.append(city)
        return "-5C"

    agent = Agent(
        name="Local",
        instructions="Use the tool.",
        model=OpenAIResponsesModel(
            model="local",
            openai_client=AsyncOpenAI(base_url=f"{base_url}/v1", api_key="x", max_retries=0),
        ),
        tools=[get_weather],
    )
    if streamed:
        result: Any = Runner.run_streamed(agent, "Weather in Oslo?")
        async for _ in result.stream_events():
            pass
    else:
        result = await Runner.run(agent, "Weather in Oslo?")
    assert result.final_output == "Cold in Oslo."
    assert seen == ["Oslo"]
    replay = upstream.requests[1].json()["messages"]
    assert [message["role"] for message in replay] == ["system", "user", "assistant", "tool"]
    assert replay[2]["tool_calls"] == [call]
    assert replay[3] == {"role": "tool", "tool_name": "get_weather", "content": "-5C"}
