"""The OpenAI Agents SDK runs unchanged against the gateway (echo provider)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from openai import AsyncOpenAI

from agents import Agent, OpenAIResponsesModel, Runner, set_tracing_disabled
from tests.support.server import running_gateway

set_tracing_disabled(True)


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    with running_gateway("default_provider: echo\nproviders:\n  echo: {preset: echo}\n") as url:
        yield url


def make_agent(base_url: str) -> Agent:
    client = AsyncOpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0)
    return Agent(
        name="Echoer",
        instructions="You are helpful.",
        model=OpenAIResponsesModel(model="echo", openai_client=client),
    )


async def test_runner_run(base_url: str) -> None:
    result = await Runner.run(make_agent(base_url), "hand this back")
    assert result.final_output == "hand this back"


async def test_runner_run_streamed(base_url: str) -> None:
    result = Runner.run_streamed(make_agent(base_url), "streamed back to me")
    deltas = []
    async for event in result.stream_events():
        if event.type == "raw_response_event" and event.data.type == "response.output_text.delta":
            deltas.append(event.data.delta)
    assert "".join(deltas) == "streamed back to me"
    assert result.final_output == "streamed back to me"
