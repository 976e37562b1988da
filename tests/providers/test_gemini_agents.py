"""The OpenAI Agents SDK runs a function-tool loop through the gemini preset.

A scripted fake Gemini answers the first turn with a thought summary and a signed functionCall
and the second (which carries the functionResponse) with text, in the framing the request asked
for (``generateContent`` JSON or ``streamGenerateContent?alt=sse``). The Agents SDK replays the
items the gateway returned, so this also proves the thoughtSignature round trip with a real
agent loop.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from openai import AsyncOpenAI

from agents import Agent, OpenAIResponsesModel, Runner, function_tool, set_tracing_disabled
from tests.support.fake_upstream import FakeUpstream, RecordedRequest, Reply, fake_upstream
from tests.support.server import running_gateway

set_tracing_disabled(True)

SIGNATURE = "c2lnbmVkLWJ5LWdlbWluaQ=="
CONFIG = """
default_provider: gemini
providers:
  gemini:
    preset: gemini
    base_url: "{url}"
    api_key: gemini-agents-key
    retry: {{attempts: 1}}
"""


def scripted_gemini(request: RecordedRequest) -> Reply:
    """Turn 1: a thought and a signed call; turn 2 (with the function's answer): text."""
    body = request.json()
    answered = any("functionResponse" in part for c in body["contents"] for part in c["parts"])
    if answered:
        answers = [
            {"candidates": [{"content": {"role": "model", "parts": [{"text": "It is sunny "}]}}]},
            {
                "candidates": [
                    {
                        "content": {"role": "model", "parts": [{"text": "in Paris."}]},
                        "finishReason": "STOP",
                    }
                ],
                "usageMetadata": {
                    "promptTokenCount": 30,
                    "candidatesTokenCount": 6,
                    "totalTokenCount": 36,
                },
            },
        ]
    else:
        call = {"name": "get_weather", "args": {"city": "Paris"}}
        answers = [
            {
                "candidates": [
                    {
                        "content": {
                            "role": "model",
                            "parts": [{"text": "**Weather lookup**", "thought": True}],
                        }
                    }
                ]
            },
            {
                "candidates": [
                    {
                        "content": {
                            "role": "model",
                            "parts": [{"functionCall": call, "thoughtSignature": SIGNATURE}],
                        },
                        "finishReason": "STOP",
                    }
                ],
                "usageMetadata": {
                    "promptTokenCount": 20,
                    "candidatesTokenCount": 5,
                    "thoughtsTokenCount": 12,
                    "totalTokenCount": 37,
                },
            },
        ]
    if request.path.endswith(":streamGenerateContent"):
        return Reply.stream([f"data: {json.dumps(a)}\r\n\r\n".encode() for a in answers])
    parts = [part for answer in answers for part in answer["candidates"][0]["content"]["parts"]]
    whole = answers[-1]
    whole["candidates"][0]["content"]["parts"] = parts
    return Reply.json(whole)


@pytest.fixture(scope="module")
def gateway() -> Iterator[tuple[str, FakeUpstream]]:
    with fake_upstream() as upstream, running_gateway(CONFIG.format(url=upstream.url)) as url:
        upstream.responder = scripted_gemini
        yield url, upstream


@function_tool
def get_weather(city: str) -> str:
    """The current weather in a city."""
    return f"Sunny in {city}"


def make_agent(base_url: str) -> Agent[Any]:
    client = AsyncOpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0)
    return Agent(
        name="Forecaster",
        instructions="Use the tool.",
        tools=[get_weather],
        model=OpenAIResponsesModel(model="gemini:gemini-2.5-flash", openai_client=client),
    )


def assert_tool_round_trip(upstream: FakeUpstream, streaming: bool) -> None:
    first, second = upstream.requests
    suffix = ":streamGenerateContent" if streaming else ":generateContent"
    assert first.path == second.path == f"/v1beta/models/gemini-2.5-flash{suffix}"
    assert first.json()["systemInstruction"] == {"parts": [{"text": "Use the tool."}]}
    [declaration] = first.json()["tools"][0]["functionDeclarations"]
    assert declaration["name"] == "get_weather"
    assert declaration["parametersJsonSchema"]["properties"] == {
        "city": {"title": "City", "type": "string"}
    }
    assert second.json()["contents"][1:] == [
        {
            "role": "model",
            "parts": [
                {
                    "functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
                    "thoughtSignature": SIGNATURE,
                }
            ],
        },
        {
            "role": "user",
            "parts": [
                {
                    "functionResponse": {
                        "name": "get_weather",
                        "response": {"output": "Sunny in Paris"},
                    }
                }
            ],
        },
    ]


async def test_runner_run_with_a_function_tool(gateway: tuple[str, FakeUpstream]) -> None:
    base_url, upstream = gateway
    upstream.requests.clear()
    result = await Runner.run(make_agent(base_url), "What's the weather in Paris?")
    assert result.final_output == "It is sunny in Paris."
    assert_tool_round_trip(upstream, streaming=False)
    kinds = [item.type for item in result.new_items]
    assert kinds == [
        "reasoning_item",
        "tool_call_item",
        "tool_call_output_item",
        "message_output_item",
    ]


async def test_runner_run_streamed_with_a_function_tool(
    gateway: tuple[str, FakeUpstream],
) -> None:
    base_url, upstream = gateway
    upstream.requests.clear()
    result = Runner.run_streamed(make_agent(base_url), "What's the weather in Paris?")
    deltas: list[str] = []
    async for event in result.stream_events():
        if event.type == "raw_response_event" and event.data.type == "response.output_text.delta":
            deltas.append(event.data.delta)
    assert "".join(deltas) == "It is sunny in Paris."
    assert result.final_output == "It is sunny in Paris."
    assert_tool_round_trip(upstream, streaming=True)
