"""Whole (non-streaming) Messages answers and upstream HTTP errors through the ``anthropic`` preset.

Bodies are written after the reference (§A.5, §A.7): the fake Messages API returns them, the
official SDK reads the gateway's answer.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from tests.providers.anthropic_support import (
    API_KEY,
    MODEL,
    Setup,
    anthropic_gateway,
    message,
)
from tests.support.fake_upstream import Reply
from tests.support.server import running_gateway

SIGNATURE = "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds"
WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather in a city.",
    "parameters": {"type": "object", "properties": {"location": {"type": "string"}}},
}


@pytest.fixture(scope="module")
def setup() -> Iterator[Setup]:
    with anthropic_gateway() as value:
        yield value


@pytest.fixture(autouse=True)
def _fresh_upstream(setup: Setup) -> None:
    setup.upstream.reset()


def create(setup: Setup, reply: Reply, **kwargs: Any) -> Any:
    setup.upstream.script(reply)
    kwargs.setdefault("input", "hi")
    return setup.client().responses.create(model=MODEL, **kwargs)


# --------------------------------------------------------------------------- answers


def test_text_answer_and_usage_with_cache(setup: Setup) -> None:
    usage = {
        "input_tokens": 12,
        "cache_creation_input_tokens": 50,
        "cache_read_input_tokens": 100,
        "output_tokens": 6,
        "service_tier": "standard",
    }
    body = message([{"type": "text", "text": "Hello there."}], usage=usage)
    response = create(setup, Reply.json(body))
    assert response.status == "completed"
    assert response.model == MODEL
    assert response.output_text == "Hello there."
    assert response.usage is not None
    assert response.usage.input_tokens == 162  # input + cache reads + cache writes
    assert response.usage.input_tokens_details.cached_tokens == 100
    assert response.usage.output_tokens == 6
    assert response.usage.total_tokens == 168
    assert response.model_dump()["usage"]["input_tokens_details"]["cache_write_tokens"] == 50
    request = setup.upstream.last
    assert request.headers["x-api-key"] == API_KEY
    assert request.headers["anthropic-version"] == "2023-06-01"
    assert "stream" not in request.json()


def test_thinking_text_and_tool_use(setup: Setup) -> None:
    body = message(
        [
            {"type": "thinking", "thinking": "The user wants the weather.", "signature": SIGNATURE},
            {"type": "text", "text": "I'll check the weather."},
            {
                "type": "tool_use",
                "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
                "name": "get_weather",
                "input": {"location": "Paris"},
            },
        ],
        stop_reason="tool_use",
        usage={
            "input_tokens": 472,
            "output_tokens": 89,
            "output_tokens_details": {"thinking_tokens": 40},
        },
    )
    response = create(setup, Reply.json(body), tools=[WEATHER_TOOL], reasoning={"effort": "low"})
    assert response.status == "completed"
    reasoning, text, call = response.output
    assert reasoning.type == "reasoning"
    assert reasoning.summary[0].text == "The user wants the weather."
    assert reasoning.encrypted_content == f"anthropic:thinking:{SIGNATURE}"
    assert text.type == "message"
    assert response.output_text == "I'll check the weather."
    assert call.type == "function_call"
    assert call.call_id == "toolu_01T1x1fJ34qAmk2tNTrN7Up6"
    assert json.loads(call.arguments) == {"location": "Paris"}
    assert response.usage is not None
    assert response.usage.output_tokens_details.reasoning_tokens == 40


def test_consecutive_text_blocks_form_one_message(setup: Setup) -> None:
    body = message(
        [
            {"type": "text", "text": "Paris is "},
            {
                "type": "server_tool_use",
                "id": "srvtoolu_1",
                "name": "web_search",
                "input": {"query": "x"},
            },
            {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": []},
            {
                "type": "text",
                "text": "sunny",
                "citations": [{"type": "web_search_result_location"}],
            },
            {"type": "text", "text": " today."},
        ]
    )
    response = create(setup, Reply.json(body))
    assert [item.type for item in response.output] == ["message"]
    assert response.output_text == "Paris is sunny today."


def test_redacted_thinking_is_kept_opaque(setup: Setup) -> None:
    body = message(
        [
            {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix/LafPsn4aDFIT"},
            {"type": "text", "text": "Done."},
        ]
    )
    response = create(setup, Reply.json(body))
    reasoning, _ = response.output
    assert reasoning.type == "reasoning"
    assert reasoning.summary == []
    assert reasoning.encrypted_content == "anthropic:redacted:EmwKAhgBEgy3va3pzix/LafPsn4aDFIT"


def test_tool_without_parameters_gets_empty_object_arguments(setup: Setup) -> None:
    body = message(
        [{"type": "tool_use", "id": "toolu_now", "name": "get_time", "input": {}}],
        stop_reason="tool_use",
    )
    [call] = create(setup, Reply.json(body)).output
    assert call.arguments == "{}"


@pytest.mark.parametrize(
    ("stop_reason", "status", "reason"),
    [
        ("end_turn", "completed", None),
        ("stop_sequence", "completed", None),
        ("max_tokens", "incomplete", "max_output_tokens"),
        ("model_context_window_exceeded", "incomplete", "max_output_tokens"),
        ("pause_turn", "incomplete", "max_output_tokens"),
        ("refusal", "incomplete", "content_filter"),
    ],
)
def test_stop_reasons(setup: Setup, stop_reason: str, status: str, reason: str | None) -> None:
    body = message([{"type": "text", "text": "Partial"}], stop_reason=stop_reason)
    response = create(setup, Reply.json(body))
    assert response.status == status
    if reason is None:
        assert response.incomplete_details is None
    else:
        assert response.incomplete_details is not None
        assert response.incomplete_details.reason == reason
        assert response.output[0].status == "incomplete"


def test_refusal_explanation_becomes_a_refusal_part(setup: Setup) -> None:
    body = message(
        [],
        stop_reason="refusal",
        stop_details={"type": "refusal", "category": "cyber", "explanation": "Refused by policy."},
    )
    response = create(setup, Reply.json(body))
    assert response.status == "incomplete"
    [item] = response.output
    assert item.content[0].type == "refusal"
    assert item.content[0].refusal == "Refused by policy."


# --------------------------------------------------------------------------- HTTP errors


def anthropic_error(kind: str, text: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": kind, "message": text}, "request_id": "req_011CSHoE"}


@pytest.mark.parametrize("stream", [False, True])
def test_401_is_an_authentication_error(setup: Setup, stream: bool) -> None:
    reply = Reply.json(anthropic_error("authentication_error", "invalid x-api-key"), status=401)
    with pytest.raises(openai.AuthenticationError) as caught:
        create(setup, reply, stream=stream)
    error = caught.value
    assert error.status_code == 401
    assert "invalid x-api-key" in error.message
    assert API_KEY not in error.message
    assert isinstance(error.body, dict)
    assert error.body["type"] == "authentication_error"


def test_400_keeps_the_upstream_message_and_type(setup: Setup) -> None:
    text = "messages.1.content.0.type: Expected `thinking` or `redacted_thinking`"
    reply = Reply.json(anthropic_error("invalid_request_error", text), status=400)
    with pytest.raises(openai.BadRequestError) as caught:
        create(setup, reply)
    assert caught.value.status_code == 400
    assert text in caught.value.message
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["type"] == "invalid_request_error"


def test_prompt_too_long_is_context_length_exceeded(setup: Setup) -> None:
    text = "prompt is too long: 210000 tokens > 200000 maximum"
    reply = Reply.json(anthropic_error("invalid_request_error", text), status=400)
    with pytest.raises(openai.BadRequestError) as caught:
        create(setup, reply)
    assert caught.value.code == "context_length_exceeded"


@pytest.mark.parametrize("stream", [False, True])
def test_429_passes_retry_after_on(setup: Setup, stream: bool) -> None:
    reply = Reply.json(
        anthropic_error(
            "rate_limit_error", "Number of request tokens has exceeded your rate limit"
        ),
        status=429,
        headers={"retry-after": "7"},
    )
    with pytest.raises(openai.RateLimitError) as caught:
        create(setup, reply, stream=stream)
    assert caught.value.status_code == 429
    assert caught.value.response.headers["retry-after"] == "7"
    assert "rate limit" in caught.value.message
    assert len(setup.upstream.requests) == 1


def test_529_overloaded_is_a_retryable_503(setup: Setup) -> None:
    reply = Reply.json(anthropic_error("overloaded_error", "Overloaded"), status=529)
    with pytest.raises(openai.InternalServerError) as caught:
        create(setup, reply)
    assert caught.value.status_code == 503
    assert caught.value.code == "overloaded"
    assert "Overloaded" in caught.value.message


def test_500_api_error(setup: Setup) -> None:
    reply = Reply.json(anthropic_error("api_error", "Internal server error"), status=500)
    with pytest.raises(openai.InternalServerError) as caught:
        create(setup, reply)
    assert caught.value.status_code == 500
    assert "Internal server error" in caught.value.message


def test_error_body_that_is_not_json(setup: Setup) -> None:
    reply = Reply(
        status=502, headers={"content-type": "text/html"}, body=b"<html>Bad Gateway</html>"
    )
    with pytest.raises(openai.InternalServerError) as caught:
        create(setup, reply)
    assert caught.value.status_code == 502
    assert "Bad Gateway" in caught.value.message


def test_missing_key_names_the_variable() -> None:
    config = """
default_provider: claude
providers:
  claude: {preset: anthropic, api_key: "${ANTHROPIC_KEY_NOT_SET_IN_TESTS}"}
"""
    with running_gateway(config) as base_url:
        client = openai.OpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0)
        with pytest.raises(openai.APIStatusError) as caught:
            client.responses.create(model="claude-sonnet-4-5", input="hi")
    assert caught.value.status_code == 503
    assert "ANTHROPIC_KEY_NOT_SET_IN_TESTS" in caught.value.message
