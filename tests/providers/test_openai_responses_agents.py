"""The OpenAI Agents SDK through the ``openai`` preset (the Responses API as upstream):
``Runner.run`` and ``Runner.run_streamed`` with a function tool against a scripted upstream.

The SDK replays the first turn's items (with the gateway's ids) plus the tool output; the
upstream must receive them as Responses input items without those ids, which it never issued.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from openai import AsyncOpenAI

from agents import Agent, OpenAIResponsesModel, Runner, function_tool, set_tracing_disabled
from tests.providers.openai_responses_support import (
    function_call,
    gateway_config,
    message,
    reasoning,
    response_object,
    stream_events,
)
from tests.support.fake_upstream import FakeUpstream, Reply
from tests.support.server import running_gateway

set_tracing_disabled(True)

ANSWER = "It is 18C and cloudy in Paris."


@pytest.fixture(scope="module")
def gateway(upstream: FakeUpstream) -> Iterator[str]:
    with running_gateway(gateway_config(upstream.url)) as base_url:
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
        model=OpenAIResponsesModel(model="gpt-5", openai_client=client),
        tools=[get_weather],
    )


FIRST_TURN = [
    reasoning("Need the weather.", encrypted="gAAAA-state"),
    function_call("call_w1", "get_weather", '{"city":', '"Paris"}'),
]
SECOND_TURN = [message("It is 18C ", "and cloudy in Paris.")]


def check_round_trip(upstream: FakeUpstream, seen: list[str]) -> None:
    assert seen == ["Paris"]
    assert len(upstream.requests) == 2
    first, second = (request.json() for request in upstream.requests)
    for body in (first, second):
        assert body["model"] == "gpt-5"
        assert body["instructions"] == "Use the tool, then answer in one sentence."
        assert [tool["name"] for tool in body["tools"]] == ["get_weather"]
    replayed = second["input"]
    assert replayed[0] == {"role": "user", "content": "Weather in Paris?"}
    kinds = [item.get("type") for item in replayed[1:]]
    assert kinds == ["reasoning", "function_call", "function_call_output"]
    thought, call, output = replayed[1:]
    assert thought["encrypted_content"] == "gAAAA-state"
    assert (call["call_id"], call["name"]) == ("call_w1", "get_weather")
    assert json.loads(call["arguments"]) == {"city": "Paris"}
    assert output == {"type": "function_call_output", "call_id": "call_w1", "output": "18C, cloudy"}
    for item in replayed[1:]:
        assert "id" not in item  # the gateway's ids mean nothing upstream


async def test_runner_run_with_a_function_tool(gateway: str, upstream: FakeUpstream) -> None:
    upstream.reset()
    upstream.script(
        Reply.json(response_object(FIRST_TURN)), Reply.json(response_object(SECOND_TURN))
    )
    seen: list[str] = []
    result = await Runner.run(make_agent(gateway, seen), "Weather in Paris?")
    assert result.final_output == ANSWER
    check_round_trip(upstream, seen)
    assert result.context_wrapper.usage.input_tokens == 62  # both turns' usage, summed


async def test_runner_run_streamed_with_a_function_tool(
    gateway: str, upstream: FakeUpstream
) -> None:
    upstream.reset()
    upstream.script(
        Reply.sse(stream_events(FIRST_TURN), named=True),
        Reply.sse(stream_events(SECOND_TURN), named=True),
    )
    seen: list[str] = []
    result = Runner.run_streamed(make_agent(gateway, seen), "Weather in Paris?")
    raw: list[str] = []
    deltas: list[str] = []
    items: list[Any] = []
    async for event in result.stream_events():
        if event.type == "raw_response_event":
            raw.append(event.data.type)
            if event.data.type == "response.output_text.delta":
                deltas.append(event.data.delta)
        elif event.type == "run_item_stream_event":
            items.append(event.item.type)
    assert result.final_output == ANSWER
    assert "".join(deltas) == ANSWER
    assert raw.count("response.completed") == 2
    assert "response.reasoning_summary_text.delta" in raw
    assert items == [
        "reasoning_item",
        "tool_call_item",
        "tool_call_output_item",
        "message_output_item",
    ]
    check_round_trip(upstream, seen)
    assert [request.json()["stream"] for request in upstream.requests] == [True, True]
