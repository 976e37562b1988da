"""A provider-neutral matrix of Responses request bodies, and a renderer for snapshot tests.

Each preset's snapshot test renders every body here into the upstream HTTP request its YAML
produces (method, URL, headers, JSON body) and compares it with a syrupy snapshot: these are
the "snapshot tests of mapping templates" operators rely on when they edit a preset. Bodies
are what the official SDK and the Agents SDK really send, replayed output items included.
"""

from __future__ import annotations

import copy
from typing import Any, Final

import orjson

from gateway.config.build import build_runtime
from gateway.config.loader import parse_yaml
from gateway.errors import GatewayError
from gateway.responses.normalize import RequestLimits, normalize, parse_body

PNG_DATA_URL: Final = (
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"
    "YPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)
PDF_DATA_URL: Final = "data:application/pdf;base64,JVBERi0xLjQKJcfsj6IKJSVFT0YK"

WEATHER_TOOL: Final = {
    "type": "function",
    "name": "get_weather",
    "description": "Get the current weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
    "strict": True,
}
TIME_TOOL: Final = {
    "type": "function",
    "name": "get_time",
    "description": "Current local time in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
}

_CALL_PARIS: Final = {
    "type": "function_call",
    "id": "fc_0001",
    "call_id": "call_paris",
    "name": "get_weather",
    "arguments": '{"city":"Paris"}',
    "status": "completed",
}
_CALL_ROME: Final = {
    "type": "function_call",
    "id": "fc_0002",
    "call_id": "call_rome",
    "name": "get_weather",
    "arguments": '{"city":"Rome"}',
    "status": "completed",
}

#: name → Responses request body without ``model`` (the test sets it per preset).
REQUESTS: Final[dict[str, dict[str, Any]]] = {
    "text_string_input": {"input": "Say hello."},
    "instructions_and_system_messages": {
        "instructions": "You are terse.",
        "input": [
            {"role": "system", "content": "Answer in French."},
            {"role": "user", "content": "What is the capital of Italy?"},
            {"role": "developer", "content": [{"type": "input_text", "text": "One word only."}]},
        ],
    },
    "multi_turn_history": {
        "input": [
            {"role": "user", "content": "My name is Ada."},
            {
                "type": "message",
                "id": "msg_0001",
                "role": "assistant",
                "status": "completed",
                "content": [
                    {"type": "output_text", "text": "Hello Ada!", "annotations": [], "logprobs": []}
                ],
            },
            {"role": "user", "content": [{"type": "input_text", "text": "What is my name?"}]},
        ],
    },
    "image_data_url": {
        "input": [
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "What is in this image?"},
                    {"type": "input_image", "image_url": PNG_DATA_URL, "detail": "low"},
                ],
            }
        ]
    },
    "image_https_url": {
        "input": [
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "Describe it."},
                    {"type": "input_image", "image_url": "https://example.com/cat.png"},
                ],
            }
        ]
    },
    "file_pdf_data": {
        "input": [
            {
                "role": "user",
                "content": [
                    {"type": "input_file", "filename": "doc.pdf", "file_data": PDF_DATA_URL},
                    {"type": "input_text", "text": "Summarize the document."},
                ],
            }
        ]
    },
    "tools_auto": {"input": "Weather in Paris?", "tools": [WEATHER_TOOL, TIME_TOOL]},
    "tool_choice_none": {"input": "Hi", "tools": [WEATHER_TOOL], "tool_choice": "none"},
    "tool_choice_required": {
        "input": "Weather?",
        "tools": [WEATHER_TOOL],
        "tool_choice": "required",
        "parallel_tool_calls": False,
    },
    "tool_choice_named": {
        "input": "Weather in Rome?",
        "tools": [WEATHER_TOOL, TIME_TOOL],
        "tool_choice": {"type": "function", "name": "get_weather"},
    },
    "function_call_output_round_trip": {
        "input": [
            {"role": "user", "content": "Weather in Paris?"},
            _CALL_PARIS,
            {"type": "function_call_output", "call_id": "call_paris", "output": "18C, cloudy"},
        ],
        "tools": [WEATHER_TOOL],
    },
    "parallel_calls_round_trip": {
        "input": [
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "Checking both."}],
            },
            _CALL_PARIS,
            _CALL_ROME,
            {"type": "function_call_output", "call_id": "call_paris", "output": "18C"},
            {"type": "function_call_output", "call_id": "call_rome", "output": "24C"},
            {"role": "user", "content": "Which is warmer?"},
        ],
        "tools": [WEATHER_TOOL],
    },
    "reasoning_round_trip": {
        "input": [
            {"role": "user", "content": "Weather in Paris?"},
            {
                "type": "reasoning",
                "id": "rs_0001",
                "summary": [{"type": "summary_text", "text": "I should call the tool."}],
                "encrypted_content": "opaque-state-0001",
            },
            _CALL_PARIS,
            {"type": "function_call_output", "call_id": "call_paris", "output": "18C"},
        ],
        "tools": [WEATHER_TOOL],
        "reasoning": {"effort": "medium", "summary": "auto"},
    },
    "json_object": {
        "input": "List three colours as JSON.",
        "text": {"format": {"type": "json_object"}},
    },
    "json_schema": {
        "input": "Capital of France?",
        "text": {
            "format": {
                "type": "json_schema",
                "name": "answer",
                "schema": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                    "additionalProperties": False,
                },
                "strict": True,
            }
        },
    },
    "reasoning_effort_high": {
        "input": "Prove that there are infinitely many primes.",
        "reasoning": {"effort": "high", "summary": "detailed"},
        "max_output_tokens": 8192,
    },
    "sampling_parameters": {
        "input": "Write a haiku.",
        "max_output_tokens": 100,
        "temperature": 0.5,
        "top_p": 0.9,
        "stop": ["\n\n"],
        "user": "user-1234",
        "metadata": {"team": "docs"},
    },
    "streaming_text": {"input": "Count to three.", "stream": True},
}


def request_body(name: str, model: str, **overrides: Any) -> dict[str, Any]:
    """A fresh copy of one matrix body with ``model`` (and any overrides) set."""
    return {"model": model, **copy.deepcopy(REQUESTS[name]), **overrides}


REDACTED_HEADERS: Final = frozenset({"authorization", "x-api-key", "x-goog-api-key", "api-key"})


def render_upstream(
    config_yaml: str, body: dict[str, Any], environ: dict[str, str] | None = None
) -> dict[str, Any]:
    """The upstream request a config renders for ``body``, as a snapshot-friendly dict.

    Goes through the same stages as a served request (parse, route, normalize, build) without
    any network; a request the gateway refuses renders as ``{"error": {status, message}}``.
    Keys are shown as ``<redacted>``; the body is parsed JSON so snapshots diff by field.
    """
    runtime = build_runtime(
        parse_yaml(config_yaml, "gateway.yaml"), source="gateway.yaml", environ=environ or {}
    )
    try:
        parsed = parse_body(orjson.dumps(body), RequestLimits())
        target = runtime.router.resolve(parsed.model).targets[0]
        adapter = runtime.providers[target.provider]
        upstream = adapter.build_request(normalize(parsed, target.model, dict(target.params)))
    except GatewayError as exc:
        return {"error": {"status": exc.status, "message": exc.message}}
    headers = {
        name.lower(): ("<redacted>" if name.lower() in REDACTED_HEADERS else value)
        for name, value in sorted(upstream.headers.items())
    }
    return {
        "method": upstream.method,
        "url": upstream.url,
        "headers": headers,
        "body": orjson.loads(upstream.body) if upstream.body is not None else None,
    }
