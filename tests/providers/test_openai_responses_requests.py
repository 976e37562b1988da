"""Snapshots of the request the ``openai`` preset relays for each body of the shared matrix.

The preset's contract is "the client's body, with the upstream model": the explicit test below
checks that for every matrix body independently of the snapshots, so an accidental rewrite of
a field cannot be accepted with ``--snapshot-update``.
"""

from __future__ import annotations

from typing import Any, Final

import pytest
from syrupy.assertion import SnapshotAssertion

from tests.providers.requests import REQUESTS, render_upstream, request_body

CONFIG: Final = """
default_provider: openai
providers:
  openai: {preset: openai, api_key: sk-test}
models:
  smart: {target: "openai:gpt-5", params: {max_output_tokens: 512}}
"""


@pytest.mark.parametrize("name", sorted(REQUESTS))
def test_rendered_request(name: str, snapshot: SnapshotAssertion) -> None:
    assert render_upstream(CONFIG, request_body(name, "gpt-5")) == snapshot


def _replayable(item: Any) -> Any:
    """What the upstream can accept of a replayed item: no gateway-issued id or status."""
    if not isinstance(item, dict) or item.get("type") not in (
        "message",
        "function_call",
        "reasoning",
    ):
        return item
    return {key: value for key, value in item.items() if key not in ("id", "status")}


@pytest.mark.parametrize("name", sorted(REQUESTS))
def test_body_is_relayed_with_only_the_model_rewritten(name: str) -> None:
    body = request_body(name, "openai:gpt-5")
    rendered = render_upstream(CONFIG, body)
    assert rendered["url"] == "https://api.openai.com/v1/responses"
    assert rendered["headers"]["authorization"] == "<redacted>"
    expected = {**body, "model": "gpt-5"}
    if not expected.get("stream"):
        expected.pop("stream", None)
    if isinstance(expected["input"], list):
        expected["input"] = [_replayable(item) for item in expected["input"]]
    assert rendered["body"] == expected


def test_alias_params_are_defaults_the_client_overrides() -> None:
    rendered = render_upstream(CONFIG, request_body("text_string_input", "smart"))
    assert rendered["body"]["model"] == "gpt-5"
    assert rendered["body"]["max_output_tokens"] == 512
    override = render_upstream(
        CONFIG, request_body("text_string_input", "smart", max_output_tokens=64)
    )
    assert override["body"]["max_output_tokens"] == 64


def test_reasoning_without_encrypted_state_is_not_replayed() -> None:
    body = request_body("reasoning_round_trip", "gpt-5")
    body["input"][1].pop("encrypted_content")
    types = [item.get("type", "message") for item in render_upstream(CONFIG, body)["body"]["input"]]
    assert types == ["message", "function_call", "function_call_output"]


def test_reasoning_state_of_another_provider_is_not_replayed() -> None:
    own = {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "gAAAAB=="}
    foreign = {**own, "id": "rs_2", "encrypted_content": "anthropic:thinking:c2ln"}
    body = {
        "model": "openai:gpt-5",
        "input": [
            {"role": "user", "content": "hi"},
            own,
            foreign,
            {"role": "user", "content": "go"},
        ],
    }
    replayed = render_upstream(CONFIG, body)["body"]["input"]
    reasoning = [item for item in replayed if item.get("type") == "reasoning"]
    assert [item["encrypted_content"] for item in reasoning] == ["gAAAAB=="]
