"""Snapshots of the Messages API request the ``anthropic`` preset renders for each Responses request.

The provider-neutral matrix (``tests/providers/requests.py``) plus Anthropic's own hard cases
(thinking state replay, thinking constraints, tool results with images, documents). The
snapshots are what an operator reviews when a mapping changes; the explicit assertions pin the
rules the Messages API enforces with a 400, so a careless ``--snapshot-update`` cannot hide them.
"""

from __future__ import annotations

import copy
import itertools
from typing import Any, Final

import pytest
from syrupy.assertion import SnapshotAssertion

from tests.providers.anthropic_support import anthropic_gateway
from tests.providers.requests import (
    PDF_DATA_URL,
    PNG_DATA_URL,
    REQUESTS,
    WEATHER_TOOL,
    render_upstream,
    request_body,
)

MODEL: Final = "claude-sonnet-4-5"
CONFIG: Final = """
default_provider: claude
providers:
  claude: {preset: anthropic, api_key: test-key}
"""
SIGNATURE: Final = "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds"

_CALL: Final = {
    "type": "function_call",
    "id": "fc_1",
    "call_id": "toolu_01A",
    "name": "get_weather",
    "arguments": '{"city":"Paris"}',
    "status": "completed",
}
_RESULT: Final = {"type": "function_call_output", "call_id": "toolu_01A", "output": "18C"}


def _thinking(text: str, encrypted: str) -> dict[str, Any]:
    return {
        "type": "reasoning",
        "id": "rs_1",
        "summary": [{"type": "summary_text", "text": text}] if text else [],
        "encrypted_content": encrypted,
    }


#: Anthropic's own hard cases, on top of the shared matrix.
ANTHROPIC_REQUESTS: Final[dict[str, dict[str, Any]]] = {
    "thinking_replayed_before_tool_use": {
        "input": [
            {"role": "user", "content": "Weather in Paris?"},
            _thinking("I need the tool.", f"anthropic:thinking:{SIGNATURE}"),
            _thinking("", "anthropic:redacted:EmwKAhgBEgy3va3p"),
            _CALL,
            _RESULT,
        ],
        "tools": [WEATHER_TOOL],
        "reasoning": {"effort": "low"},
    },
    "foreign_reasoning_is_dropped_and_thinking_left_off": {
        "input": [
            {"role": "user", "content": "Weather in Paris?"},
            _thinking("I need the tool.", "gAAAAABopaque-openai-state"),
            _CALL,
            _RESULT,
        ],
        "tools": [WEATHER_TOOL],
        "reasoning": {"effort": "high"},
    },
    "forced_tool_leaves_thinking_off": {
        "input": "Weather?",
        "tools": [WEATHER_TOOL],
        "tool_choice": "required",
        "reasoning": {"effort": "medium"},
        "temperature": 0.3,
    },
    "thinking_drops_temperature_and_clamps_top_p": {
        "input": "Think.",
        "reasoning": {"effort": "xhigh"},
        "temperature": 0.2,
        "top_p": 0.5,
        "max_output_tokens": 4000,
    },
    "max_output_tokens_too_small_for_thinking": {
        "input": "Think.",
        "reasoning": {"effort": "low"},
        "max_output_tokens": 1024,
    },
    "reasoning_effort_none": {"input": "Hi", "reasoning": {"effort": "none"}},
    "temperature_above_one_is_clamped": {"input": "Hi", "temperature": 1.7},
    "top_p_alone_is_kept": {"input": "Hi", "top_p": 0.8},
    "parallel_tool_calls_false_without_tool_choice": {
        "input": "Weather?",
        "tools": [WEATHER_TOOL],
        "parallel_tool_calls": False,
    },
    "tool_choice_without_tools_is_dropped": {"input": "Hi", "tool_choice": "required"},
    "tool_result_with_image_and_following_text": {
        "input": [
            {"role": "user", "content": "Take a picture."},
            _CALL,
            _RESULT
            | {
                "output": [
                    {"type": "input_text", "text": "Here it is."},
                    {"type": "input_image", "image_url": PNG_DATA_URL},
                ]
            },
            {"role": "user", "content": "What do you see?"},
        ],
        "tools": [WEATHER_TOOL],
    },
    "documents_text_url_and_file_id": {
        "input": [
            {
                "role": "user",
                "content": [
                    {
                        "type": "input_file",
                        "filename": "notes.txt",
                        "file_data": "data:text/plain;base64,SGVsbG8gbm90ZXMu",
                    },
                    {"type": "input_file", "file_url": "https://example.com/report.pdf"},
                    {"type": "input_file", "file_id": "file_011CNha8iCJcU1wXNR6q4V8w"},
                    {"type": "input_image", "file_id": "file_011CPMxVD3fHLUhvTqtsQA5w"},
                    {"type": "input_text", "text": "Compare them."},
                ],
            }
        ]
    },
    "empty_texts_and_whitespace_stops_are_left_out": {
        "input": [
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": ""},
                    {"type": "input_text", "text": "Go"},
                ],
            },
            {"role": "assistant", "content": [{"type": "output_text", "text": ""}]},
            {"role": "user", "content": "Again"},
        ],
        "stop": ["\n", "END"],
    },
    "json_object_with_instructions": {
        "instructions": "You list things.",
        "input": "Three colours.",
        "text": {"format": {"type": "json_object"}},
    },
    "assistant_refusal_replayed_as_text": {
        "input": [
            {"role": "user", "content": "Do the bad thing."},
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "refusal", "refusal": "I can't help with that."}],
            },
            {"role": "user", "content": "OK, something else then."},
        ]
    },
}


def render(body: dict[str, Any], config: str = CONFIG) -> dict[str, Any]:
    return render_upstream(config, body)


def anthropic_body(name: str, **overrides: Any) -> dict[str, Any]:
    return {"model": MODEL, **copy.deepcopy(ANTHROPIC_REQUESTS[name]), **overrides}


@pytest.mark.parametrize("name", sorted(REQUESTS))
def test_shared_matrix(name: str, snapshot: SnapshotAssertion) -> None:
    rendered = render(request_body(name, MODEL))
    assert rendered["method"] == "POST"
    assert rendered["url"] == "https://api.anthropic.com/v1/messages"
    assert rendered["headers"]["anthropic-version"] == "2023-06-01"
    assert rendered["headers"]["x-api-key"] == "<redacted>"
    assert rendered == snapshot


@pytest.mark.parametrize("name", sorted(ANTHROPIC_REQUESTS))
def test_anthropic_cases(name: str, snapshot: SnapshotAssertion) -> None:
    assert render(anthropic_body(name)) == snapshot


# --------------------------------------------------------------------------- rules pinned


def body_of(name: str, **overrides: Any) -> dict[str, Any]:
    source = (
        anthropic_body(name, **overrides)
        if name in ANTHROPIC_REQUESTS
        else request_body(name, MODEL, **overrides)
    )
    rendered = render(source)
    assert "body" in rendered, rendered
    body: dict[str, Any] = rendered["body"]
    return body


def test_every_request_has_max_tokens_and_user_first() -> None:
    for name in REQUESTS:
        body = body_of(name)
        assert isinstance(body["max_tokens"], int), name
        assert body["messages"][0]["role"] == "user", name
        roles = [message["role"] for message in body["messages"]]
        assert all(a != b for a, b in itertools.pairwise(roles)), name


def test_system_and_developer_messages_are_hoisted() -> None:
    body = body_of("instructions_and_system_messages")
    assert body["system"] == "You are terse.\n\nAnswer in French.\n\nOne word only."
    assert all(message["role"] in ("user", "assistant") for message in body["messages"])


def test_tool_results_come_first_in_their_user_turn() -> None:
    body = body_of("parallel_calls_round_trip")
    assistant, results = body["messages"][1], body["messages"][2]
    assert [block["type"] for block in assistant["content"]] == ["text", "tool_use", "tool_use"]
    assert assistant["content"][1]["input"] == {"city": "Paris"}
    assert [block["type"] for block in results["content"]] == ["tool_result", "tool_result", "text"]
    assert [block["tool_use_id"] for block in results["content"][:2]] == ["call_paris", "call_rome"]


def test_thinking_state_is_replayed_verbatim_before_tool_use() -> None:
    body = body_of("thinking_replayed_before_tool_use")
    assistant = body["messages"][1]
    assert assistant["content"] == [
        {"type": "thinking", "thinking": "I need the tool.", "signature": SIGNATURE},
        {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3p"},
        {"type": "tool_use", "id": "toolu_01A", "name": "get_weather", "input": {"city": "Paris"}},
    ]
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 1024}


def test_history_without_our_signature_leaves_thinking_off() -> None:
    body = body_of("foreign_reasoning_is_dropped_and_thinking_left_off")
    assert [block["type"] for block in body["messages"][1]["content"]] == ["tool_use"]
    assert "thinking" not in body


def test_thinking_constraints() -> None:
    forced = body_of("forced_tool_leaves_thinking_off")
    assert "thinking" not in forced
    assert forced["tool_choice"] == {"type": "any"}
    assert forced["temperature"] == 0.3

    thinking = body_of("thinking_drops_temperature_and_clamps_top_p")
    assert thinking["thinking"] == {"type": "enabled", "budget_tokens": 3999}  # < max_tokens
    assert thinking["max_tokens"] == 4000
    assert "temperature" not in thinking
    assert thinking["top_p"] == 0.95

    assert "thinking" not in body_of("max_output_tokens_too_small_for_thinking")
    assert "thinking" not in body_of("reasoning_effort_none")

    high = body_of("reasoning_effort_high")  # max_output_tokens 8192 given: it covers both
    assert high["thinking"]["budget_tokens"] == 4096
    assert high["max_tokens"] == 8192
    unbounded = body_of("reasoning_effort_high", max_output_tokens=None)
    assert unbounded["max_tokens"] == 4096 + 4096  # the default answer room on top of thinking


def test_tool_choice_variants() -> None:
    assert body_of("tool_choice_none")["tool_choice"] == {"type": "none"}
    assert body_of("tool_choice_required")["tool_choice"] == {
        "type": "any",
        "disable_parallel_tool_use": True,
    }
    assert body_of("tool_choice_named")["tool_choice"] == {"type": "tool", "name": "get_weather"}
    assert "tool_choice" not in body_of("tools_auto")
    assert body_of("parallel_tool_calls_false_without_tool_choice")["tool_choice"] == {
        "type": "auto",
        "disable_parallel_tool_use": True,
    }
    assert "tool_choice" not in body_of("tool_choice_without_tools_is_dropped")
    tool = body_of("tools_auto")["tools"][0]
    assert tool == {
        "name": "get_weather",
        "description": "Get the current weather in a city.",
        "input_schema": WEATHER_TOOL["parameters"],
    }


def test_images_and_documents() -> None:
    image = body_of("image_data_url")["messages"][0]["content"][1]
    assert image == {
        "type": "image",
        "source": {
            "type": "base64",
            "media_type": "image/png",
            "data": PNG_DATA_URL.split(",", 1)[1],
        },
    }
    url = body_of("image_https_url")["messages"][0]["content"][1]
    assert url == {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}}
    pdf = body_of("file_pdf_data")["messages"][0]["content"][0]
    assert pdf["type"] == "document"
    assert pdf["source"] == {
        "type": "base64",
        "media_type": "application/pdf",
        "data": PDF_DATA_URL.split(",", 1)[1],
    }
    text, remote, stored, stored_image, _ = body_of("documents_text_url_and_file_id")["messages"][
        0
    ]["content"]
    assert text["source"] == {"type": "text", "media_type": "text/plain", "data": "Hello notes."}
    assert remote["source"] == {"type": "url", "url": "https://example.com/report.pdf"}
    assert stored["source"] == {"type": "file", "file_id": "file_011CNha8iCJcU1wXNR6q4V8w"}
    assert stored_image["source"] == {"type": "file", "file_id": "file_011CPMxVD3fHLUhvTqtsQA5w"}


def test_structured_output_and_sampling() -> None:
    assert body_of("json_schema")["output_config"] == {
        "format": {
            "type": "json_schema",
            "schema": REQUESTS["json_schema"]["text"]["format"]["schema"],
        }
    }
    assert body_of("json_object_with_instructions")["system"] == (
        "You list things.\n\nRespond with a single valid JSON object and nothing else."
    )
    sampling = body_of("sampling_parameters")
    assert sampling["max_tokens"] == 100
    assert sampling["temperature"] == 0.5
    assert "top_p" not in sampling  # recent models refuse temperature and top_p together
    assert "stop_sequences" not in sampling  # "\n\n" is whitespace only
    assert sampling["metadata"] == {"user_id": "user-1234"}
    assert body_of("top_p_alone_is_kept")["top_p"] == 0.8
    assert body_of("temperature_above_one_is_clamped")["temperature"] == 1
    cleaned = body_of("empty_texts_and_whitespace_stops_are_left_out")
    assert cleaned["stop_sequences"] == ["END"]
    assert cleaned["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Go"}]},
        {"role": "user", "content": [{"type": "text", "text": "Again"}]},
    ]


def test_settings_are_operator_overridable() -> None:
    config = """
default_provider: claude
providers:
  claude:
    preset: anthropic
    api_key: test-key
    settings:
      max_tokens_default: 1000
      thinking_mode: adaptive
      strict_tools: true
      top_p_with_temperature: true
    request:
      body:
        metadata: {user_id: "{{ req.metadata.team if req.metadata else none }}"}
"""
    body = render(request_body("sampling_parameters", MODEL, max_output_tokens=None), config)[
        "body"
    ]
    assert body["max_tokens"] == 1000
    assert body["top_p"] == 0.9
    assert body["metadata"] == {"user_id": "docs"}  # one body field overridden
    adaptive = render(request_body("reasoning_effort_high", MODEL), config)["body"]
    assert adaptive["thinking"] == {"type": "adaptive"}
    assert adaptive["output_config"] == {"effort": "high"}
    assert render(request_body("tools_auto", MODEL), config)["body"]["tools"][0]["strict"] is True


def test_wire_request_is_the_rendered_one() -> None:
    """What the snapshots show is what the gateway really sends."""
    body = request_body("parallel_calls_round_trip", MODEL)
    with anthropic_gateway() as setup:
        setup.upstream.script(_minimal_answer())
        setup.client().responses.create(**{**body, "model": f"claude:{MODEL}"})
        sent = setup.upstream.last.json()
    assert sent == render(body)["body"]


def _minimal_answer() -> Any:
    from tests.providers.anthropic_support import message
    from tests.support.fake_upstream import Reply

    return Reply.json(message([{"type": "text", "text": "Rome."}]))
