"""Snapshots of the upstream request the gemini preset renders (URL, headers, body).

Every body of the provider-neutral matrix, plus Gemini's own cases: the thinking controls per
model family, the thoughtSignature put back on the right functionCall, Files API URIs, and the
inputs the preset refuses with a 400. Update with ``pytest --snapshot-update`` after a
deliberate change, and review the diff like code.
"""

from __future__ import annotations

from typing import Any

import pytest
from syrupy.assertion import SnapshotAssertion

from tests.providers.requests import REQUESTS, render_upstream, request_body

CONFIG = """
default_provider: gemini
providers:
  gemini: {preset: gemini, api_key: "${GEMINI_KEY}"}
"""
ENV = {"GEMINI_KEY": "gemini-secret-key"}
MODEL = "gemini-2.5-flash"

_CALL = {"type": "function_call", "call_id": "call_a", "name": "get_weather", "arguments": "{}"}
_SIGNED = {
    "type": "reasoning",
    "id": "rs_1",
    "summary": [{"type": "summary_text", "text": "Look it up."}],
    "encrypted_content": "gemini:thoughtSignature:U0lHTkFUVVJF",
}

#: name → (model, extra body) for what only Gemini needs.
GEMINI_CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "default_model_stream": ("gemini", {"input": "Hi", "stream": True}),
    "models_prefix_is_accepted": ("models/gemini-2.5-pro", {"input": "Hi"}),
    "pro_effort_none_keeps_the_minimum_budget": (
        "gemini-2.5-pro",
        {"input": "Hi", "reasoning": {"effort": "none"}},
    ),
    "flash_effort_none_turns_thinking_off": (
        "gemini-2.5-flash",
        {"input": "Hi", "reasoning": {"effort": "none", "summary": "auto"}},
    ),
    "flash_lite_minimal_is_clamped_to_its_floor": (
        "gemini-2.5-flash-lite",
        {"input": "Hi", "reasoning": {"effort": "minimal"}},
    ),
    "flash_xhigh_is_clamped_to_its_ceiling": (
        "gemini-2.5-flash",
        {"input": "Hi", "reasoning": {"effort": "xhigh"}},
    ),
    "gemini_3_uses_thinking_levels": (
        "gemini-3-pro-preview",
        {"input": "Hi", "reasoning": {"effort": "low", "summary": "concise"}},
    ),
    "non_thinking_model_gets_no_thinking_config": (
        "gemini-2.0-flash",
        {"input": "Hi", "reasoning": {"effort": "high", "summary": "auto"}},
    ),
    "summary_only_asks_for_thoughts": (
        "gemini-2.5-pro",
        {"input": "Hi", "reasoning": {"summary": "auto"}},
    ),
    "signature_restored_on_the_call_after_its_reasoning_item": (
        MODEL,
        {
            "input": [
                {"role": "user", "content": "Weather?"},
                _SIGNED,
                _CALL,
                {"type": "function_call_output", "call_id": "call_a", "output": "Sunny"},
            ]
        },
    ),
    "parallel_calls_signed_first_and_answered_in_call_order": (
        MODEL,
        {
            "input": [
                {"role": "user", "content": "Weather?"},
                {"role": "assistant", "content": "Checking."},
                _SIGNED,
                _CALL,
                {**_CALL, "call_id": "call_b", "arguments": '{"city":"Rome"}'},
                {"type": "function_call_output", "call_id": "call_b", "output": "24C"},
                {"type": "function_call_output", "call_id": "call_a", "output": "18C"},
            ]
        },
    ),
    "foreign_reasoning_state_is_not_sent": (
        MODEL,
        {
            "input": [
                {"role": "user", "content": "Weather?"},
                {**_SIGNED, "encrypted_content": "anthropic:thinking:c2ln"},
                _CALL,
                {"type": "function_call_output", "call_id": "call_a", "output": "Sunny"},
            ]
        },
    ),
    "files_api_uris_are_file_data": (
        MODEL,
        {
            "input": [
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "input_image",
                            "image_url": "https://generativelanguage.googleapis.com/v1beta/files/img-1",
                        },
                        {
                            "type": "input_file",
                            "file_url": "https://generativelanguage.googleapis.com/v1beta/files/doc-1",
                        },
                        {"type": "input_file", "filename": "raw.pdf", "file_data": "JVBERi0x"},
                    ],
                }
            ]
        },
    ),
    "tool_without_parameters_declares_none": (
        MODEL,
        {
            "input": "What time is it?",
            "tools": [
                {
                    "type": "function",
                    "name": "now",
                    "parameters": {"type": "object", "properties": {}, "required": []},
                }
            ],
            "tool_choice": "auto",
        },
    ),
    "tool_choice_without_tools_is_dropped": (MODEL, {"input": "Hi", "tool_choice": "required"}),
    "refused_openai_file_id": (
        MODEL,
        {"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "file-1"}]}]},
    ),
    "refused_output_without_its_call": (
        MODEL,
        {"input": [{"type": "function_call_output", "call_id": "call_zz", "output": "1"}]},
    ),
    "refused_model_outside_the_path": ("gemini:../files", {"input": "Hi"}),
}


@pytest.mark.parametrize("name", sorted(REQUESTS))
def test_request_matrix(name: str, snapshot: SnapshotAssertion) -> None:
    assert render_upstream(CONFIG, request_body(name, MODEL), ENV) == snapshot


@pytest.mark.parametrize("name", sorted(GEMINI_CASES))
def test_gemini_cases(name: str, snapshot: SnapshotAssertion) -> None:
    model, body = GEMINI_CASES[name]
    assert render_upstream(CONFIG, {"model": model, **body}, ENV) == snapshot


def test_the_key_is_a_header_and_never_in_the_url() -> None:
    from gateway.config.build import build_runtime
    from gateway.config.loader import parse_yaml
    from gateway.responses.normalize import RequestLimits, normalize, parse_body

    runtime = build_runtime(parse_yaml(CONFIG, "gateway.yaml"), source="gateway.yaml", environ=ENV)
    parsed = parse_body(b'{"model": "gemini", "input": "Hi", "stream": true}', RequestLimits())
    upstream = runtime.providers["gemini"].build_request(normalize(parsed, MODEL))
    assert upstream.headers["x-goog-api-key"] == "gemini-secret-key"
    assert "gemini-secret-key" not in upstream.url
    assert upstream.url.endswith(":streamGenerateContent?alt=sse")


def test_operator_can_send_a_fallback_signature_for_unsigned_history() -> None:
    config = CONFIG.replace(
        'api_key: "${GEMINI_KEY}"}',
        'api_key: "${GEMINI_KEY}", settings: {missing_thought_signature: skip_thought_signature_validator}}',
    )
    body = {
        "model": "gemini-3-pro-preview",
        "input": [
            {"role": "user", "content": "Weather?"},
            _CALL,
            {**_CALL, "call_id": "call_b"},
            {"type": "function_call_output", "call_id": "call_a", "output": "18C"},
            {"type": "function_call_output", "call_id": "call_b", "output": "24C"},
        ],
    }
    contents = render_upstream(config, body, ENV)["body"]["contents"]
    assert [part.get("thoughtSignature") for part in contents[1]["parts"]] == [
        "skip_thought_signature_validator",
        None,
    ]
    # The preset's other settings survive the override (deep merge).
    assert (
        render_upstream(config, request_body("image_https_url", MODEL), ENV)["error"]["status"]
        == 400
    )


def test_operator_can_switch_to_query_key_auth_and_another_api_version() -> None:
    config = CONFIG.replace(
        'api_key: "${GEMINI_KEY}"}',
        'api_key: "${GEMINI_KEY}", base_url: "https://proxy.example/google-ai-studio",'
        " auth: {scheme: query, name: key}, settings: {api_version: v1alpha}}",
    )
    rendered = render_upstream(config, {"model": MODEL, "input": "Hi", "stream": True}, ENV)
    assert rendered["url"] == (
        "https://proxy.example/google-ai-studio/v1alpha/models/gemini-2.5-flash"
        ":streamGenerateContent?alt=sse&key=gemini-secret-key"
    )
    assert "x-goog-api-key" not in rendered["headers"]


def test_operator_can_add_or_replace_one_body_field() -> None:
    config = """
default_provider: gemini
providers:
  gemini:
    preset: gemini
    api_key: "${GEMINI_KEY}"
    request:
      body:
        safetySettings:
          - {category: HARM_CATEGORY_HARASSMENT, threshold: BLOCK_ONLY_HIGH}
        toolConfig: {functionCallingConfig: {mode: VALIDATED}}
"""
    body = render_upstream(config, request_body("tool_choice_named", MODEL), ENV)["body"]
    assert body["safetySettings"] == [
        {"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_ONLY_HIGH"}
    ]
    assert body["toolConfig"] == {"functionCallingConfig": {"mode": "VALIDATED"}}
    assert body["contents"] == [{"role": "user", "parts": [{"text": "Weather in Rome?"}]}]
    assert body["tools"][0]["functionDeclarations"][0]["name"] == "get_weather"
