"""The OpenAI Agents SDK through the ``openai-chat`` preset: a function-tool round trip with
``Runner.run`` and ``Runner.run_streamed`` against a scripted Chat Completions upstream.

Turn one the upstream asks for ``get_weather``; the SDK runs the tool and sends its output back
through the gateway; turn two the upstream answers. The second upstream request must carry the
call and its result in Chat's shape (assistant ``tool_calls`` then a ``tool`` message).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from openai import AsyncOpenAI

from agents import Agent, OpenAIResponsesModel, Runner, function_tool, set_tracing_disabled
from tests.support.fake_upstream import FakeUpstream, Reply
from tests.support.server import running_gateway

set_tracing_disabled(True)

CALL_ID = "call_weather_1"
ANSWER = "It is 18C and cloudy in Paris."


@pytest.fixture(scope="module")
def gateway(upstream: FakeUpstream) -> Iterator[str]:
    config = f"""
default_provider: chat
providers:
  chat:
    preset: openai-chat
    base_url: {upstream.url}/v1
    api_key: sk-agents
    retry: {{attempts: 1}}
"""
    with running_gateway(config) as base_url:
        yield base_url


def make_agent(gateway: str, seen: list[str]) -> Agent:
    @function_tool
    def get_weather(city: str) -> str:
        """Current weather in a city."""
        seen.append(city)
        return "18C, cloudy"

    client = AsyncOpenAI(base_url=f"{gateway}/v1", api_key="client-key", max_retries=0)
    return Agent(
        name="Forecaster",
        instructions="Use the tool, then answer in one sentence.",
        model=OpenAIResponsesModel(model="gpt-4o", openai_client=client),
        tools=[get_weather],
    )


def _completion(message: dict[str, Any], finish: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o",
        "choices": [
            {"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish}
        ],
        "usage": {"prompt_tokens": 20, "completion_tokens": 5, "total_tokens": 25},
    }


def _chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-4o",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def _tool_call(arguments: str, first: bool) -> dict[str, Any]:
    call: dict[str, Any] = {"index": 0, "function": {"arguments": arguments}}
    if first:
        call.update(id=CALL_ID, type="function")
        call["function"]["name"] = "get_weather"
    return {"tool_calls": [call]}


def check_round_trip(upstream: FakeUpstream, seen: list[str]) -> None:
    assert seen == ["Paris"]
    assert len(upstream.requests) == 2
    first, second = (request.json() for request in upstream.requests)
    assert first["messages"][0] == {
        "role": "system",
        "content": "Use the tool, then answer in one sentence.",
    }
    assert [tool["function"]["name"] for tool in first["tools"]] == ["get_weather"]
    messages = second["messages"]
    assert [message["role"] for message in messages] == ["system", "user", "assistant", "tool"]
    call = messages[2]["tool_calls"][0]
    assert call["id"] == CALL_ID
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "Paris"}
    assert messages[3] == {"role": "tool", "tool_call_id": CALL_ID, "content": "18C, cloudy"}


async def test_runner_run_with_a_function_tool(gateway: str, upstream: FakeUpstream) -> None:
    upstream.reset()
    call = {
        "id": CALL_ID,
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
    }
    upstream.script(
        Reply.json(_completion({"content": None, "tool_calls": [call]}, "tool_calls")),
        Reply.json(_completion({"content": ANSWER}, "stop")),
    )
    seen: list[str] = []
    result = await Runner.run(make_agent(gateway, seen), "Weather in Paris?")
    assert result.final_output == ANSWER
    check_round_trip(upstream, seen)
    assert [request.json().get("stream") for request in upstream.requests] == [None, None]


async def test_runner_run_streamed_with_a_function_tool(
    gateway: str, upstream: FakeUpstream
) -> None:
    upstream.reset()
    upstream.script(
        Reply.sse(
            [
                _chunk({"role": "assistant", "content": None, **_tool_call("", first=True)}),
                _chunk(_tool_call('{"city":', first=False)),
                _chunk(_tool_call('"Paris"}', first=False)),
                _chunk({}, "tool_calls"),
            ],
            done=True,
        ),
        Reply.sse(
            [
                _chunk({"role": "assistant", "content": ""}),
                _chunk({"content": ANSWER[:10]}),
                _chunk({"content": ANSWER[10:]}),
                _chunk({}, "stop"),
            ],
            done=True,
        ),
    )
    seen: list[str] = []
    result = Runner.run_streamed(make_agent(gateway, seen), "Weather in Paris?")
    raw: list[str] = []
    deltas: list[str] = []
    items: list[str] = []
    async for event in result.stream_events():
        if event.type == "raw_response_event":
            raw.append(event.data.type)
            if event.data.type == "response.output_text.delta":
                deltas.append(event.data.delta)
        elif event.type == "run_item_stream_event":
            items.append(event.item.type)
    assert result.final_output == ANSWER
    assert "".join(deltas) == ANSWER
    assert "response.function_call_arguments.delta" in raw
    assert raw.count("response.completed") == 2
    assert items[:2] == ["tool_call_item", "tool_call_output_item"]
    assert items[-1] == "message_output_item"
    check_round_trip(upstream, seen)
    assert [request.json()["stream"] for request in upstream.requests] == [True, True]
