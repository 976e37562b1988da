"""The Responses API over the echo provider, end to end: real uvicorn, the official SDK."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI

from tests.support.server import running_gateway

CONFIG = """
default_provider: echo
server:
  max_body_bytes: 65536
  max_input_items: 50
providers:
  echo: {preset: echo}
  keyless:
    preset: openai-chat
    api_key: ${KEYLESS_TEST_KEY_UNSET}
models:
  fast: echo:echo
  smart: {target: "echo:echo", params: {max_output_tokens: 2}}
"""


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    with running_gateway(CONFIG) as url:
        yield url


@pytest.fixture(scope="module")
def client(base_url: str) -> OpenAI:
    # Strict validation: the SDK checks every required field of every model it parses.
    return OpenAI(
        base_url=f"{base_url}/v1", api_key="unused", max_retries=0, _strict_response_validation=True
    )


def test_create_returns_a_complete_response(client: OpenAI) -> None:
    response = client.responses.create(
        model="echo", input="hello there world", instructions="Be brief."
    )
    assert response.status == "completed"
    assert response.id.startswith("resp_")
    assert response.model == "echo"
    assert response.output_text == "hello there world"
    assert response.instructions == "Be brief."
    [message] = response.output
    assert message.type == "message"
    assert message.id.startswith("msg_")
    assert message.status == "completed"
    assert response.usage is not None
    assert response.usage.output_tokens == 3
    assert response.usage.total_tokens == response.usage.input_tokens + 3
    assert response.usage.input_tokens_details.cached_tokens == 0
    assert response.usage.output_tokens_details.reasoning_tokens == 0
    assert response._request_id is not None


def test_max_output_tokens_makes_the_response_incomplete(client: OpenAI) -> None:
    response = client.responses.create(
        model="echo", input="one two three four", max_output_tokens=2
    )
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"
    assert response.output_text == "one two "
    assert response.output[0].status == "incomplete"  # type: ignore[union-attr]


def test_alias_params_apply_unless_the_client_sets_them(client: OpenAI) -> None:
    assert client.responses.create(model="smart", input="a b c d").status == "incomplete"
    assert (
        client.responses.create(model="smart", input="a b c d", max_output_tokens=10).status
        == "completed"
    )


def test_stream_raw_events_follow_the_reference_sequence(client: OpenAI) -> None:
    events = list(client.responses.create(model="fast", input="alpha beta gamma", stream=True))
    types = [event.type for event in events]
    assert types == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [event.sequence_number for event in events] == list(range(len(events)))
    response_ids = {event.response.id for event in events if hasattr(event, "response")}
    assert len(response_ids) == 1
    created, completed = events[0], events[-1]
    assert created.response.output == []  # type: ignore[union-attr]
    assert created.response.status == "in_progress"  # type: ignore[union-attr]
    item_ids = {event.item_id for event in events if hasattr(event, "item_id")}
    assert item_ids == {events[2].item.id}  # type: ignore[union-attr]
    assert (
        "".join(e.delta for e in events if e.type == "response.output_text.delta")
        == "alpha beta gamma"
    )  # type: ignore[union-attr]
    assert completed.response.output_text == "alpha beta gamma"  # type: ignore[union-attr]
    assert completed.response.usage is not None  # type: ignore[union-attr]


def test_stream_helper_and_final_response(client: OpenAI) -> None:
    with client.responses.stream(model="echo", input="streamed via helper") as stream:
        deltas = [event.delta for event in stream if event.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == "streamed via helper"
    assert final.output_text == "streamed via helper"
    assert final.status == "completed"


def test_stream_incomplete_ends_with_response_incomplete(client: OpenAI) -> None:
    events = list(
        client.responses.create(model="echo", input="a b c d e", stream=True, max_output_tokens=1)
    )
    assert events[-1].type == "response.incomplete"
    assert events[-1].response.incomplete_details.reason == "max_output_tokens"  # type: ignore[union-attr]
    done = [event for event in events if event.type == "response.output_item.done"]
    assert done[0].item.status == "incomplete"  # type: ignore[union-attr]


SDK_INPUT_FORMS: list[Any] = [
    [{"role": "user", "content": "easy message"}],
    [
        {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": "typed parts"}],
        }
    ],
    [
        {"role": "developer", "content": "Be terse."},
        {"role": "system", "content": [{"type": "input_text", "text": "System text."}]},
        {"role": "user", "content": "first"},
        {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "status": "completed",
            "content": [
                {"type": "output_text", "text": "reply", "annotations": [], "logprobs": []}
            ],
        },
        {
            "type": "reasoning",
            "id": "rs_1",
            "summary": [{"type": "summary_text", "text": "thought"}],
        },
        {
            "type": "function_call",
            "id": "fc_1",
            "call_id": "call_1",
            "name": "get_weather",
            "arguments": '{"city": "Paris"}',
            "status": "completed",
        },
        {"type": "function_call_output", "call_id": "call_1", "output": "Sunny"},
        {
            "role": "user",
            "content": [
                {"type": "input_text", "text": "and the last"},
                {
                    "type": "input_image",
                    "image_url": "data:image/png;base64,iVBORw0KGgo=",
                    "detail": "auto",
                },
            ],
        },
    ],
]


@pytest.mark.parametrize("items", SDK_INPUT_FORMS, ids=["easy", "typed", "history"])
def test_every_input_form_the_sdks_send_is_accepted(client: OpenAI, items: list[Any]) -> None:
    response = client.responses.create(model="echo", input=items, include=[], tools=[])
    last_user = [item for item in items if item.get("role") == "user"][-1]["content"]
    expected = last_user if isinstance(last_user, str) else last_user[0]["text"]
    assert response.output_text == expected


def test_seed_shorthands_and_unknown_fields_are_accepted(client: OpenAI) -> None:
    response = client.responses.create(
        model="echo",
        input="shorthand",
        extra_body={
            "reasoning_effort": "low",
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "x", "schema": {"type": "object"}},
            },
            "prompt_cache_key": "abc",
            "some_future_field": {"nested": True},
        },
    )
    assert response.reasoning is not None
    assert response.reasoning.effort == "low"
    assert response.text is not None
    assert response.text.format is not None
    assert response.text.format.type == "json_schema"


def test_tools_and_choices_are_echoed(client: OpenAI) -> None:
    tool = {
        "type": "function",
        "name": "get_weather",
        "description": "Weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        "strict": False,
    }
    response = client.responses.create(
        model="echo",
        input="hi",
        tools=[tool],
        tool_choice="required",
        parallel_tool_calls=False,  # type: ignore[list-item]
    )
    assert response.tools[0].name == "get_weather"  # type: ignore[union-attr]
    assert response.tool_choice == "required"
    assert response.parallel_tool_calls is False


# --------------------------------------------------------------------------- bad input


def error_of(exc: openai.APIStatusError) -> dict[str, Any]:
    body = exc.body
    assert isinstance(body, dict)
    assert set(body) == {"message", "type", "param", "code"}
    return body


def test_unknown_model_is_a_404_naming_what_exists(client: OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.responses.create(model="nope:gpt", input="hi")
    error = error_of(caught.value)
    assert error["param"] == "model"
    assert error["code"] == "model_not_found"
    assert "echo" in error["message"] and "fast" in error["message"]


def test_empty_input_is_a_400_on_input(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="echo", input="")
    assert error_of(caught.value)["param"] == "input"
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="echo", input=[])
    assert error_of(caught.value)["param"] == "input"


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"temperature": "hot"}, "temperature"),
        ({"temperature": 7}, "temperature"),
        ({"max_output_tokens": -1}, "max_output_tokens"),
        ({"tools": {"not": "a list"}}, "tools"),
        ({"tool_choice": "sometimes"}, "tool_choice"),
        ({"reasoning": {"effort": "extreme"}}, "reasoning.effort"),
        ({"text": {"format": {"type": "yaml"}}}, "text.format.type"),
        ({"input": [{"role": "wizard", "content": "x"}]}, "input[0].role"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_image"}]}]},
            "input[0].content[0].image_url",
        ),
        ({"input": [{"type": "function_call_output", "output": "x"}]}, "input[0].call_id"),
        ({"input": [{"type": "telepathy"}]}, "input[0].type"),
        ({"previous_response_id": "resp_1"}, "previous_response_id"),
        ({"stream": "yes"}, "stream"),
    ],
)
def test_wrong_types_and_values_are_400s_with_param(
    client: OpenAI, extra: dict[str, Any], param: str
) -> None:
    body = {"input": "hi", **extra}
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="echo", input=body.pop("input"), extra_body=body)
    assert error_of(caught.value)["param"] == param


def test_malformed_json_is_a_400(base_url: str) -> None:
    response = httpx.post(
        f"{base_url}/v1/responses",
        content=b'{"model": "echo", "input": ',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_json"
    assert httpx.post(f"{base_url}/v1/responses", content=b"[1, 2]").status_code == 400
    assert httpx.post(f"{base_url}/v1/responses", content=b"").status_code == 400


def test_missing_model_is_a_400(base_url: str) -> None:
    response = httpx.post(f"{base_url}/v1/responses", json={"input": "hi"})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "model"


def test_oversized_body_is_a_413(base_url: str) -> None:
    response = httpx.post(f"{base_url}/v1/responses", json={"model": "echo", "input": "x" * 70000})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


def test_too_many_input_items_is_a_400(base_url: str) -> None:
    items = [{"role": "user", "content": "x"}] * 51
    response = httpx.post(f"{base_url}/v1/responses", json={"model": "echo", "input": items})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "input"


def test_deep_nesting_is_a_400_not_a_crash(base_url: str) -> None:
    deep = "[" * 5000 + "]" * 5000
    response = httpx.post(
        f"{base_url}/v1/responses", content=f'{{"model": "echo", "input": "x", "metadata": {deep}}}'
    )
    assert response.status_code == 400


def test_provider_without_key_names_the_variable(client: OpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as caught:
        client.responses.create(model="keyless:some-model", input="hi")
    assert "KEYLESS_TEST_KEY_UNSET" in error_of(caught.value)["message"]


def test_unknown_route_is_an_openai_shaped_404(base_url: str) -> None:
    response = httpx.get(f"{base_url}/v1/nothing-here")
    assert response.status_code == 404
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [("GET", "/v1/responses", "POST"), ("POST", "/healthz", "GET, HEAD")],
)
def test_a_wrong_method_is_an_openai_shaped_405_naming_the_allowed_one(
    base_url: str, method: str, path: str, allow: str
) -> None:
    response = httpx.request(method, f"{base_url}{path}")
    assert response.status_code == 405
    assert set(response.headers["allow"].split(", ")) == set(allow.split(", "))
    assert response.json()["error"] == {
        "message": f"Method {method} is not allowed on {path}.",
        "type": "invalid_request_error",
        "param": None,
        "code": "method_not_allowed",
    }


# --------------------------------------------------------------------------- endpoints


def test_request_id_is_returned_or_generated(base_url: str) -> None:
    mine = httpx.get(f"{base_url}/healthz", headers={"x-request-id": "my-id-1"})
    assert mine.headers["x-request-id"] == "my-id-1"
    minted = httpx.get(f"{base_url}/healthz")
    assert minted.headers["x-request-id"].startswith("req_")


def test_healthz_reports_version_and_providers_without_secrets(base_url: str) -> None:
    health = httpx.get(f"{base_url}/healthz").json()
    assert health["status"] == "ok"
    assert len(health["version"]) == 12
    assert health["last_error"] is None
    assert health["providers"]["echo"]["status"] == "configured"
    keyless = health["providers"]["keyless"]
    assert keyless["status"] == "no_api_key"
    assert keyless["missing_variable"] == "KEYLESS_TEST_KEY_UNSET"
    answer = httpx.post(f"{base_url}/v1/responses", json={"model": "echo", "input": "v"})
    assert answer.headers["x-gateway-config-version"] == health["version"]
    assert answer.headers["x-gateway-provider"] == "echo"
    assert float(answer.headers["x-gateway-overhead-ms"]) >= 0


def test_models_lists_aliases_and_provider_models(client: OpenAI) -> None:
    ids = [model.id for model in client.models.list()]
    assert ids[:2] == ["fast", "smart"]
    assert "echo:echo" in ids
