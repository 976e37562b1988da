"""openai preset, non-streaming: a whole upstream Response object read back item by item, and
upstream HTTP errors mapped to the OpenAI errors the SDK raises (streamed or not).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest
from openai import OpenAI

from tests.providers.openai_responses_support import (
    function_call,
    gateway_config,
    message,
    reasoning,
    response_object,
)
from tests.support.fake_upstream import FakeUpstream, Reply
from tests.support.server import running_gateway


@pytest.fixture(scope="module")
def gateway(upstream: FakeUpstream) -> Iterator[str]:
    with running_gateway(gateway_config(upstream.url)) as base_url:
        yield base_url


@pytest.fixture
def client(gateway: str, upstream: FakeUpstream) -> OpenAI:
    upstream.reset()
    return OpenAI(base_url=f"{gateway}/v1", api_key="client-key", max_retries=0)


def test_whole_answer_with_every_item_kind(client: OpenAI, upstream: FakeUpstream) -> None:
    upstream.script(
        Reply.json(
            response_object(
                [
                    reasoning("Think.", encrypted="gAAAA-1"),
                    message("Let me check."),
                    function_call("call_a", "get_weather", '{"city":"Paris"}'),
                    function_call("call_b", "get_weather", '{"city":"Rome"}'),
                ]
            )
        )
    )
    response = client.responses.create(model="gpt-5", input="Weather in Paris and Rome?")
    assert response.status == "completed"
    assert response.model == "gpt-5"
    assert [item.type for item in response.output] == [
        "reasoning",
        "message",
        "function_call",
        "function_call",
    ]
    thought, _message, first, second = response.output
    assert thought.summary[0].text == "Think."  # type: ignore[union-attr]
    assert thought.encrypted_content == "gAAAA-1"  # type: ignore[union-attr]
    assert response.output_text == "Let me check."
    assert (first.call_id, first.arguments) == ("call_a", '{"city":"Paris"}')  # type: ignore[union-attr]
    assert (second.call_id, second.name) == ("call_b", "get_weather")  # type: ignore[union-attr]
    assert all("upstream" not in (item.id or "") for item in response.output)
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens) == (31, 12)
    assert response.usage.input_tokens_details.cached_tokens == 5
    assert response.usage.output_tokens_details.reasoning_tokens == 4
    sent = upstream.last.json()
    assert sent["model"] == "gpt-5"
    assert "stream" not in sent


def test_two_messages_stay_two_items(client: OpenAI, upstream: FakeUpstream) -> None:
    upstream.script(Reply.json(response_object([message("One."), message("Two.")])))
    response = client.responses.create(model="gpt-5", input="Two messages.")
    assert [[part.text for part in item.content] for item in response.output] == [  # type: ignore[union-attr]
        ["One."],
        ["Two."],
    ]


@pytest.mark.parametrize("reason", ["max_output_tokens", "content_filter"])
def test_whole_incomplete(client: OpenAI, upstream: FakeUpstream, reason: str) -> None:
    upstream.script(
        Reply.json(
            response_object([message("Once")], status="incomplete", incomplete_reason=reason)
        )
    )
    response = client.responses.create(model="gpt-5", input="A story.")
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == reason
    assert response.output[0].status == "incomplete"  # type: ignore[union-attr]


def test_whole_refusal(client: OpenAI, upstream: FakeUpstream) -> None:
    upstream.script(Reply.json(response_object([message(refusal="No.")])))
    response = client.responses.create(model="gpt-5", input="Something bad.")
    part = response.output[0].content[0]  # type: ignore[union-attr]
    assert (part.type, part.refusal) == ("refusal", "No.")  # type: ignore[union-attr]


def test_whole_failed_status_is_an_error(client: OpenAI, upstream: FakeUpstream) -> None:
    error = {"code": "server_error", "message": "The model failed to generate a response."}
    upstream.script(Reply.json(response_object([], status="failed", error=error)))
    with pytest.raises(openai.APIStatusError) as caught:
        client.responses.create(model="gpt-5", input="Hi")
    assert caught.value.status_code == 502
    assert "The model failed to generate a response." in caught.value.message


ERRORS = [
    (400, {}, openai.BadRequestError, "invalid_request_error"),
    (401, {}, openai.AuthenticationError, "invalid_request_error"),
    (403, {}, openai.PermissionDeniedError, "invalid_request_error"),
    (404, {}, openai.NotFoundError, "invalid_request_error"),
    (429, {"retry-after": "3"}, openai.RateLimitError, "rate_limit_error"),
    (500, {}, openai.InternalServerError, "server_error"),
    (503, {}, openai.InternalServerError, "server_error"),
]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize(
    ("status", "headers", "exception", "error_type"), ERRORS, ids=[str(e[0]) for e in ERRORS]
)
def test_upstream_http_errors(
    client: OpenAI,
    upstream: FakeUpstream,
    stream: bool,
    status: int,
    headers: dict[str, str],
    exception: type[openai.APIStatusError],
    error_type: str,
) -> None:
    body = {
        "error": {
            "message": f"OpenAI says {status}",
            "type": "invalid_request_error",
            "param": "model",
            "code": "some_code",
        }
    }
    upstream.script(Reply.json(body, status=status, headers=headers))
    with pytest.raises(exception) as caught:
        if stream:
            for _ in client.responses.create(model="gpt-5", input="Hi", stream=True):
                pass
        else:
            client.responses.create(model="gpt-5", input="Hi")
    assert caught.value.status_code == status
    error: Any = caught.value.body
    assert f"OpenAI says {status}" in error["message"]
    assert "'openai'" in error["message"]
    assert error["type"] == error_type
    for name, value in headers.items():
        assert caught.value.response.headers[name] == value


def test_context_length_error_is_classified(client: OpenAI, upstream: FakeUpstream) -> None:
    body = {
        "error": {
            "message": "Your input exceeds the context window of this model.",
            "type": "invalid_request_error",
            "param": "input",
            "code": "context_length_exceeded",
        }
    }
    upstream.script(Reply.json(body, status=400))
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="gpt-5", input="Very long.")
    assert caught.value.code == "context_length_exceeded"


def test_missing_key_names_the_variable() -> None:
    config = (
        "default_provider: openai\n"
        "providers:\n"
        "  openai: {preset: openai, api_key: '${OPENAI_KEY_UNSET_FOR_TEST}'}\n"
        "  echo: {preset: echo}\n"
    )
    with running_gateway(config) as base_url:
        client = OpenAI(base_url=f"{base_url}/v1", api_key="x", max_retries=0)
        with pytest.raises(openai.APIStatusError) as caught:
            client.responses.create(model="gpt-5", input="Hi")
        assert "OPENAI_KEY_UNSET_FOR_TEST" in caught.value.message
        assert client.responses.create(model="echo:echo", input="still up").output_text
