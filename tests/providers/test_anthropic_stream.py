"""Recorded Anthropic streams replayed through the ``anthropic`` preset, read by the official SDK.

Every ``anthropic-*.sse`` fixture goes byte for byte through a fake Messages API; the gateway's
Responses stream is checked event by event (a syrupy snapshot of the whole normalized stream,
plus explicit assertions on what matters) and through the SDK's ``responses.stream()`` helper.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from syrupy.assertion import SnapshotAssertion

from tests.providers.anthropic_support import (
    API_KEY,
    MODEL,
    Setup,
    anthropic_gateway,
    fixture_reply,
    normalized,
)
from tests.support.fake_upstream import FIXTURES, Reply, split_body, sse_frame


@pytest.fixture(scope="module")
def setup() -> Iterator[Setup]:
    with anthropic_gateway() as value:
        yield value


@pytest.fixture(autouse=True)
def _fresh_upstream(setup: Setup) -> None:
    setup.upstream.reset()


def raw_events(setup: Setup, **kwargs: Any) -> list[dict[str, Any]]:
    stream = setup.client().responses.create(model=MODEL, input="hi", stream=True, **kwargs)
    return [event.model_dump(exclude_unset=True) for event in stream]


def events_until_error(setup: Setup) -> tuple[list[dict[str, Any]], openai.APIError]:
    """Raw events up to the ``error`` event, which the SDK raises as ``APIError``."""
    events: list[dict[str, Any]] = []
    with pytest.raises(openai.APIError) as caught:
        for event in setup.client().responses.create(model=MODEL, input="hi", stream=True):
            events.append(event.model_dump(exclude_unset=True))
    return events, caught.value


def types(events: list[dict[str, Any]]) -> list[str]:
    return [event["type"] for event in events]


def assert_wire_basics(events: list[dict[str, Any]]) -> None:
    assert [event["sequence_number"] for event in events] == list(range(len(events)))
    assert types(events)[:2] == ["response.created", "response.in_progress"]


# --------------------------------------------------------------------------- every fixture


FINISHED = {
    "anthropic-text.sse": "response.completed",
    "anthropic-tool.sse": "response.completed",
    "anthropic-tool-sdk.sse": "response.completed",
    "anthropic-thinking.sse": "response.completed",
    "anthropic-refusal.sse": "response.incomplete",
    "anthropic-max-tokens-mid-tool.sse": "response.incomplete",
}


@pytest.mark.parametrize("name", sorted(FINISHED))
def test_fixture_stream_is_wire_exact(setup: Setup, name: str, snapshot: SnapshotAssertion) -> None:
    setup.upstream.script(fixture_reply(name))
    events = raw_events(setup)
    assert_wire_basics(events)
    assert types(events)[-1] == FINISHED[name]
    assert normalized(events) == snapshot


def test_upstream_request_is_a_streaming_messages_call(setup: Setup) -> None:
    setup.upstream.script(fixture_reply("anthropic-text.sse"))
    raw_events(setup, instructions="Be brief.", max_output_tokens=64)
    request = setup.upstream.last
    assert (request.method, request.path) == ("POST", "/v1/messages")
    assert request.headers["x-api-key"] == API_KEY
    assert request.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in request.headers
    assert request.json() == {
        "model": "claude-sonnet-4-5",
        "max_tokens": 64,
        "stream": True,
        "system": "Be brief.",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
    }


def test_text_stream_final_response(setup: Setup) -> None:
    setup.upstream.script(fixture_reply("anthropic-text.sse"))
    with setup.client().responses.stream(model=MODEL, input="hi") as stream:
        deltas = [event.delta for event in stream if event.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert deltas == ["Hello", "!"]
    assert final.status == "completed"
    assert final.output_text == "Hello!"
    assert final.usage is not None
    assert (final.usage.input_tokens, final.usage.output_tokens) == (25, 15)
    assert final.usage.total_tokens == 40


def test_tool_stream_becomes_one_function_call(setup: Setup) -> None:
    setup.upstream.script(fixture_reply("anthropic-tool.sse"))
    with setup.client().responses.stream(model=MODEL, input="weather?") as stream:
        argument_deltas = [
            event.delta
            for event in stream
            if event.type == "response.function_call_arguments.delta"
        ]
        final = stream.get_final_response()
    assert final.status == "completed"
    message, call = final.output
    assert message.type == "message"
    assert final.output_text == "Okay, let's check the weather for San Francisco, CA:"
    assert call.type == "function_call"
    assert (
        call.call_id == "toolu_01T1x1fJ34qAmk2tNTrN7Up6"
    )  # the tool_use id, kept for the round trip
    assert call.name == "get_weather"
    assert json.loads(call.arguments) == {"location": "San Francisco, CA", "unit": "fahrenheit"}
    assert "" not in argument_deltas  # Anthropic's empty first fragment is not relayed
    assert "".join(argument_deltas) == call.arguments
    assert final.usage is not None
    assert (final.usage.input_tokens, final.usage.output_tokens) == (472, 89)


def test_sdk_tool_stream_with_cache_usage_and_caller(setup: Setup) -> None:
    setup.upstream.script(fixture_reply("anthropic-tool-sdk.sse"))
    final = _final(setup)
    call = final.output[-1]
    assert call.type == "function_call"
    assert call.call_id == "toolu_01NRLabsLyVHZPKxbKvkfSMn"
    assert json.loads(call.arguments) == {"location": "Paris"}
    assert final.usage is not None
    assert final.usage.input_tokens == 377
    assert final.usage.input_tokens_details.cached_tokens == 0


def test_thinking_stream_becomes_a_reasoning_item_with_its_signature(setup: Setup) -> None:
    setup.upstream.script(fixture_reply("anthropic-thinking.sse"))
    with setup.client().responses.stream(model=MODEL, input="27 * 453?") as stream:
        summary_deltas = [
            event.delta for event in stream if event.type == "response.reasoning_summary_text.delta"
        ]
        final = stream.get_final_response()
    reasoning, message = final.output
    assert reasoning.type == "reasoning"
    assert reasoning.summary[0].text == "".join(summary_deltas)
    assert reasoning.summary[0].text.startswith("Let me solve this step by step:")
    assert reasoning.encrypted_content == (
        "anthropic:thinking:EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds..."
    )
    assert message.type == "message"
    assert final.output_text == "27 * 453 = 12,231"


def test_refusal_is_incomplete_with_the_explanation(setup: Setup) -> None:
    setup.upstream.script(fixture_reply("anthropic-refusal.sse"))
    events = raw_events(setup)
    final = events[-1]["response"]
    assert final["status"] == "incomplete"
    assert final["incomplete_details"] == {"reason": "content_filter"}
    [message] = final["output"]
    assert message["content"] == [
        {"type": "refusal", "refusal": "This request was refused due to policy."}
    ]
    assert "response.output_text.delta" not in types(events)  # the empty text block adds nothing


def test_max_tokens_inside_a_tool_call_is_incomplete(setup: Setup) -> None:
    setup.upstream.script(fixture_reply("anthropic-max-tokens-mid-tool.sse"))
    events = raw_events(setup)
    final = events[-1]["response"]
    assert events[-1]["type"] == "response.incomplete"
    assert final["incomplete_details"] == {"reason": "max_output_tokens"}
    message, call = final["output"]
    assert message["status"] == "completed"  # closed before the limit hit
    assert call["status"] == "incomplete"  # cut short: its arguments are not valid JSON
    assert call["call_id"] == "toolu_01EKqbqmZrGRXy18eN7m9kvY"
    with pytest.raises(json.JSONDecodeError):
        json.loads(call["arguments"])
    assert final["usage"]["input_tokens"] == 450
    assert final["usage"]["output_tokens"] == 124
    # The SDK helper refuses to call an incomplete response final.
    setup.upstream.script(fixture_reply("anthropic-max-tokens-mid-tool.sse"))
    with (
        pytest.raises(RuntimeError, match=r"response\.completed"),
        setup.client().responses.stream(model=MODEL, input="hi") as stream,
    ):
        stream.get_final_response()


def test_chunk_boundaries_do_not_matter(setup: Setup) -> None:
    """The same body cut every 7 bytes (mid-line, mid-UTF-8) gives the same answer."""
    setup.upstream.script(fixture_reply("anthropic-tool.sse", split="bytes:7"))
    final = _final(setup)
    assert final.output_text == "Okay, let's check the weather for San Francisco, CA:"
    call = final.output[-1]
    assert call.type == "function_call"
    assert json.loads(call.arguments) == {"location": "San Francisco, CA", "unit": "fahrenheit"}


def _final(setup: Setup) -> Any:
    with setup.client().responses.stream(model=MODEL, input="hi") as stream:
        for _ in stream:
            pass
        return stream.get_final_response()


# --------------------------------------------------------------------------- errors in a 200


def test_error_event_before_any_content_is_a_plain_http_error(setup: Setup) -> None:
    """Nothing was sent to the client yet, so the gateway can still answer with a status."""
    setup.upstream.script(fixture_reply("anthropic-error-event.sse"))
    with pytest.raises(openai.APIStatusError) as caught:
        raw_events(setup)
    assert caught.value.status_code == 502
    assert "Overloaded" in caught.value.message
    assert "claude" in caught.value.message


def test_error_event_mid_stream_fails_the_response(setup: Setup) -> None:
    """After content went out: ``response.failed`` then the ``error`` event, and the body ends."""
    text = split_body((FIXTURES / "anthropic-text.sse").read_bytes())
    error = (FIXTURES / "anthropic-error-event.sse").read_bytes()
    setup.upstream.script(
        Reply.stream([*text[:5], error])
    )  # message_start … "Hello", "!", then error
    events, raised = events_until_error(setup)
    assert types(events)[-1] == "response.failed"
    failed = events[-1]["response"]
    assert failed["status"] == "failed"
    assert failed["error"] == {"code": "server_error", "message": "Overloaded"}
    assert failed["output"][0]["content"][0]["text"] == "Hello!"
    assert failed["output"][0]["status"] == "incomplete"
    assert raised.message == "Overloaded"
    assert raised.code == "server_error"


def test_rate_limit_error_event_mid_stream(setup: Setup) -> None:
    text = split_body((FIXTURES / "anthropic-text.sse").read_bytes())
    error = {"type": "error", "error": {"type": "rate_limit_error", "message": "Slow down"}}
    setup.upstream.script(Reply.stream([*text[:5], sse_frame(error, named=True)]))
    events, raised = events_until_error(setup)
    assert events[-1]["response"]["error"] == {
        "code": "rate_limit_exceeded",
        "message": "Slow down",
    }
    assert raised.code == "rate_limit_exceeded"


def test_connection_cut_mid_stream_fails_the_response(setup: Setup) -> None:
    text = split_body((FIXTURES / "anthropic-text.sse").read_bytes())
    setup.upstream.script(Reply.stream(text[:5], cut=True))
    events, raised = events_until_error(setup)
    assert types(events)[-1] == "response.failed"
    error = events[-1]["response"]["error"]
    assert error["code"] == "server_error"
    assert "failed mid-stream" in error["message"]
    assert events[-1]["response"]["output"][0]["content"][0]["text"] == "Hello!"
    assert "failed mid-stream" in raised.message


def test_stream_that_ends_without_message_stop_fails(setup: Setup) -> None:
    """A clean EOF after ``message_delta`` is still not a finished answer: no ``message_stop``."""
    text = split_body((FIXTURES / "anthropic-text.sse").read_bytes())
    assert b"message_stop" in text[-1]
    setup.upstream.script(Reply.stream(text[:-1]))
    events, _ = events_until_error(setup)
    assert types(events)[-1] == "response.failed"
    assert events[-1]["response"]["error"]["message"] == (
        "The upstream stream ended before the response was finished."
    )
    assert "response.completed" not in types(events)


# --------------------------------------------------------------------------- web search


def test_web_search_fixture_with_its_malformed_line_fails(setup: Setup) -> None:
    """The recorded body has a line that is not JSON (a documentation elision). What it held is
    unknown, so the answer cannot be called complete: ``response.failed`` after the text so far."""
    setup.upstream.script(fixture_reply("anthropic-web-search.sse"))
    events, raised = events_until_error(setup)
    failed = events[-1]["response"]
    assert failed["status"] == "failed"
    assert failed["error"] == {
        "code": "server_error",
        "message": "The upstream sent a malformed stream chunk.",
    }
    [message] = failed["output"]
    assert (
        message["content"][0]["text"] == "I'll check the current weather in New York City for you."
    )
    assert raised.message == "The upstream sent a malformed stream chunk."


def test_web_search_server_tool_blocks_are_not_client_function_calls(setup: Setup) -> None:
    """The same stream with the elided line repaired: server tool blocks run at Anthropic are
    not surfaced as function calls, the text blocks around them form the answer."""
    body = (FIXTURES / "anthropic-web-search.sse").read_text()
    repaired = body.replace(",...]}}", "]}}").replace("\n...\n", "\n")
    setup.upstream.script(Reply.stream(split_body(repaired.encode())))
    final = _final(setup)
    assert final.status == "completed"
    assert [item.type for item in final.output] == ["message"]
    assert final.output_text.startswith(
        "I'll check the current weather in New York City for you.Here's the current weather"
    )
    assert final.usage is not None
    assert (final.usage.input_tokens, final.usage.output_tokens) == (10682, 510)
