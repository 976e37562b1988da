"""The OpenAI Agents SDK runs a function tool through the ``anthropic`` preset.

A scripted fake Messages API answers the first turn with a ``tool_use`` (with a signed thinking
block) and, once it sees the ``tool_result``, with text. The agent loop must close: the tool
runs with the model's arguments, its output goes back as a ``tool_result`` for the same
``tool_use`` id, and the thinking block is replayed verbatim before the ``tool_use``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from openai.types.shared import Reasoning

from agents import (
    Agent,
    ModelSettings,
    OpenAIResponsesModel,
    Runner,
    function_tool,
    set_tracing_disabled,
)
from tests.providers.anthropic_support import MODEL, Setup, anthropic_gateway, message
from tests.support.fake_upstream import RecordedRequest, Reply

set_tracing_disabled(True)

TOOL_ID = "toolu_01T1x1fJ34qAmk2tNTrN7Up6"
SIGNATURE = "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds"
THINKING = "The user wants the weather in Paris; call the tool."
ANSWER = "It is 18°C and cloudy in Paris."

calls: list[str] = []


@function_tool
def get_weather(city: str) -> str:
    """Current weather in a city."""
    calls.append(city)
    return f"18C and cloudy in {city}"


def _tool_turn_stream() -> Reply:
    events: list[dict[str, Any]] = [
        {
            "type": "message_start",
            "message": {
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "model": "claude-sonnet-4-5",
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": 80, "output_tokens": 1},
            },
        },
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "thinking", "thinking": ""},
        },
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "thinking_delta", "thinking": THINKING},
        },
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "signature_delta", "signature": SIGNATURE},
        },
        {"type": "content_block_stop", "index": 0},
        {
            "type": "content_block_start",
            "index": 1,
            "content_block": {
                "type": "tool_use",
                "id": TOOL_ID,
                "name": "get_weather",
                "input": {},
            },
        },
        {"type": "ping"},
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": ""},
        },
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": '{"city": "Pa'},
        },
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": 'ris"}'},
        },
        {"type": "content_block_stop", "index": 1},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use", "stop_sequence": None},
            "usage": {"output_tokens": 30},
        },
        {"type": "message_stop"},
    ]
    return Reply.sse(events, named=True)


def _answer_stream() -> Reply:
    events: list[dict[str, Any]] = [
        {
            "type": "message_start",
            "message": {
                "id": "msg_2",
                "type": "message",
                "role": "assistant",
                "model": "claude-sonnet-4-5",
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": 140, "output_tokens": 1},
            },
        },
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "text_delta", "text": ANSWER[:10]},
        },
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "text_delta", "text": ANSWER[10:]},
        },
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": 12},
        },
        {"type": "message_stop"},
    ]
    return Reply.sse(events, named=True)


def _has_tool_result(request: RecordedRequest) -> bool:
    last = request.json()["messages"][-1]
    return any(block.get("type") == "tool_result" for block in last["content"])


def scripted(request: RecordedRequest) -> Reply:
    """Tool call first; the answer once the tool's result comes back."""
    streaming = bool(request.json().get("stream"))
    if _has_tool_result(request):
        if streaming:
            return _answer_stream()
        return Reply.json(message([{"type": "text", "text": ANSWER}]))
    if streaming:
        return _tool_turn_stream()
    return Reply.json(
        message(
            [
                {"type": "thinking", "thinking": THINKING, "signature": SIGNATURE},
                {
                    "type": "tool_use",
                    "id": TOOL_ID,
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                },
            ],
            stop_reason="tool_use",
        )
    )


@pytest.fixture(scope="module")
def setup() -> Iterator[Setup]:
    with anthropic_gateway() as value:
        value.upstream.responder = scripted
        yield value


@pytest.fixture(autouse=True)
def _fresh(setup: Setup) -> None:
    setup.upstream.reset()
    calls.clear()


def make_agent(setup: Setup) -> Agent:
    return Agent(
        name="Forecaster",
        instructions="Answer weather questions with the tool.",
        tools=[get_weather],
        model=OpenAIResponsesModel(model=MODEL, openai_client=setup.async_client()),
        model_settings=ModelSettings(reasoning=Reasoning(effort="low")),
    )


def assert_round_trip(setup: Setup) -> None:
    assert calls == ["Paris"]
    first, second = setup.upstream.requests
    assert first.json()["system"] == "Answer weather questions with the tool."
    assert first.json()["tools"][0]["name"] == "get_weather"
    assert first.json()["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    user, assistant, results = second.json()["messages"]
    assert user == {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"}]}
    assert assistant["content"] == [
        {"type": "thinking", "thinking": THINKING, "signature": SIGNATURE},
        {"type": "tool_use", "id": TOOL_ID, "name": "get_weather", "input": {"city": "Paris"}},
    ]
    [result] = results["content"]
    assert result == {
        "type": "tool_result",
        "tool_use_id": TOOL_ID,
        "content": "18C and cloudy in Paris",
    }
    # The signed thinking came back, so thinking stays on for the tool loop's next turn.
    assert second.json()["thinking"] == {"type": "enabled", "budget_tokens": 1024}


async def test_runner_run_with_a_function_tool(setup: Setup) -> None:
    result = await Runner.run(make_agent(setup), "Weather in Paris?")
    assert result.final_output == ANSWER
    assert_round_trip(setup)
    assert not any(request.json().get("stream") for request in setup.upstream.requests)


async def test_runner_run_streamed_with_a_function_tool(setup: Setup) -> None:
    result = Runner.run_streamed(make_agent(setup), "Weather in Paris?")
    deltas: list[str] = []
    arguments: list[str] = []
    async for event in result.stream_events():
        if event.type != "raw_response_event":
            continue
        if event.data.type == "response.output_text.delta":
            deltas.append(event.data.delta)
        elif event.data.type == "response.function_call_arguments.done":
            arguments.append(event.data.arguments)
    assert result.final_output == ANSWER
    assert "".join(deltas) == ANSWER
    assert [json.loads(text) for text in arguments] == [{"city": "Paris"}]
    assert_round_trip(setup)
    assert all(request.json().get("stream") for request in setup.upstream.requests)
