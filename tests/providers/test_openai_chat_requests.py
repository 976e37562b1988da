"""Snapshots of the Chat Completions request the ``openai-chat`` preset renders for each
Responses request in the shared matrix, plus explicit assertions for the rules Chat servers
enforce with a 400, so a careless ``--snapshot-update`` cannot hide a regression.
"""

from __future__ import annotations

from typing import Any, Final

import pytest
from syrupy.assertion import SnapshotAssertion

from tests.providers.requests import PNG_DATA_URL, REQUESTS, render_upstream, request_body

CONFIG: Final = """
default_provider: chat
providers:
  chat: {preset: openai-chat, api_key: sk-test}
"""


def render(name: str, **overrides: Any) -> dict[str, Any]:
    return render_upstream(CONFIG, request_body(name, "gpt-4o", **overrides))


@pytest.mark.parametrize("name", sorted(REQUESTS))
def test_rendered_request(name: str, snapshot: SnapshotAssertion) -> None:
    assert render(name) == snapshot


def test_request_line_and_auth() -> None:
    rendered = render("text_string_input")
    assert rendered["method"] == "POST"
    assert rendered["url"] == "https://api.openai.com/v1/chat/completions"
    assert rendered["headers"]["authorization"] == "<redacted>"
    assert rendered["headers"]["content-type"] == "application/json"


def test_system_text_is_one_leading_system_message() -> None:
    messages = render("instructions_and_system_messages")["body"]["messages"]
    assert messages[0] == {
        "role": "system",
        "content": "You are terse.\n\nAnswer in French.\n\nOne word only.",
    }
    assert [message["role"] for message in messages] == ["system", "user"]


def test_tool_round_trip_keeps_call_ids_and_order() -> None:
    messages = render("parallel_calls_round_trip")["body"]["messages"]
    assert [message["role"] for message in messages] == [
        "user",
        "assistant",
        "tool",
        "tool",
        "user",
    ]
    assistant = messages[1]
    assert assistant["content"] == "Checking both."
    assert [call["id"] for call in assistant["tool_calls"]] == ["call_paris", "call_rome"]
    assert assistant["tool_calls"][0]["function"] == {
        "name": "get_weather",
        "arguments": '{"city":"Paris"}',
    }
    assert [(m["tool_call_id"], m["content"]) for m in messages[2:4]] == [
        ("call_paris", "18C"),
        ("call_rome", "24C"),
    ]


def test_tool_choice_shapes() -> None:
    assert render("tool_choice_none")["body"]["tool_choice"] == "none"
    required = render("tool_choice_required")["body"]
    assert required["tool_choice"] == "required"
    assert required["parallel_tool_calls"] is False
    assert render("tool_choice_named")["body"]["tool_choice"] == {
        "type": "function",
        "function": {"name": "get_weather"},
    }
    # Without tools a tool_choice is dropped: Chat servers reject one on its own.
    assert "tool_choice" not in render("text_string_input", tool_choice="required")["body"]


def test_output_formats() -> None:
    assert render("json_object")["body"]["response_format"] == {"type": "json_object"}
    schema = render("json_schema")["body"]["response_format"]
    assert schema["type"] == "json_schema"
    assert schema["json_schema"]["name"] == "answer"
    assert schema["json_schema"]["strict"] is True


def test_images_pass_as_urls() -> None:
    content = render("image_data_url")["body"]["messages"][0]["content"]
    assert content[1] == {"type": "image_url", "image_url": {"url": PNG_DATA_URL, "detail": "low"}}
    https = render("image_https_url")["body"]["messages"][0]["content"][1]
    assert https["image_url"]["url"] == "https://example.com/cat.png"


def test_generation_parameters() -> None:
    body = render("sampling_parameters")["body"]
    assert body["max_completion_tokens"] == 100
    assert body["temperature"] == 0.5
    assert body["top_p"] == 0.9
    assert body["stop"] == ["\n\n"]
    assert body["user"] == "user-1234"
    assert render("reasoning_effort_high")["body"]["reasoning_effort"] == "high"


def test_streaming_asks_for_usage() -> None:
    body = render("streaming_text")["body"]
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    whole = render("text_string_input")["body"]
    assert "stream" not in whole
    assert "stream_options" not in whole
