"""openai-chat preset: whole (non-streaming) answers and upstream HTTP errors, through a real
gateway with the official ``openai`` SDK as the client.

Each upstream HTTP error must reach the client as the matching OpenAI status, exception class and
error type, streamed or not (a stream fails before its first byte, so it is a plain HTTP error),
with ``Retry-After`` passed on. Retries and the breaker are off so each test sees one attempt.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest
from openai import OpenAI

from tests.support.fake_upstream import FakeUpstream, Reply
from tests.support.server import running_gateway


@pytest.fixture(scope="module")
def gateway(upstream: FakeUpstream) -> Iterator[str]:
    config = f"""
default_provider: chat
providers:
  chat:
    preset: openai-chat
    base_url: {upstream.url}/v1
    api_key: sk-chat-test
    retry: {{attempts: 1}}
    breaker: {{failures: 1000}}
"""
    with running_gateway(config) as base_url:
        yield base_url


@pytest.fixture
def client(gateway: str, upstream: FakeUpstream) -> OpenAI:
    upstream.reset()
    return OpenAI(base_url=f"{gateway}/v1", api_key="client-key", max_retries=0)


def completion(message: dict[str, Any], finish: str, **usage: Any) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1727346176,
        "model": "gpt-4o-2024-08-06",
        "choices": [
            {"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish}
        ],
        "usage": {
            "prompt_tokens": 12,
            "completion_tokens": 7,
            "total_tokens": 19,
            **usage,
        },
    }


def test_whole_text_answer(client: OpenAI, upstream: FakeUpstream) -> None:
    upstream.script(
        Reply.json(
            completion(
                {"content": "Bonjour.", "refusal": None},
                "stop",
                prompt_tokens_details={"cached_tokens": 4},
                completion_tokens_details={"reasoning_tokens": 2},
            )
        )
    )
    response = client.responses.create(model="gpt-4o", input="Say hello in French.")
    assert response.status == "completed"
    assert response.model == "gpt-4o"
    assert response.output_text == "Bonjour."
    assert response.output[0].id.startswith("msg_")
    assert response.usage is not None
    assert response.usage.input_tokens == 12
    assert response.usage.output_tokens == 7
    assert response.usage.total_tokens == 19
    assert response.usage.input_tokens_details.cached_tokens == 4
    assert response.usage.output_tokens_details.reasoning_tokens == 2
    sent = upstream.last.json()
    assert "stream" not in sent
    assert "stream_options" not in sent


def test_whole_parallel_tool_calls(client: OpenAI, upstream: FakeUpstream) -> None:
    calls = [
        {
            "id": "call_a",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
        },
        {
            "id": "call_b",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'},
        },
    ]
    upstream.script(Reply.json(completion({"content": None, "tool_calls": calls}, "tool_calls")))
    response = client.responses.create(
        model="gpt-4o",
        input="Weather in Paris and Rome?",
        tools=[{"type": "function", "name": "get_weather", "parameters": {}, "strict": False}],
    )
    assert response.status == "completed"
    assert [(item.type, item.call_id, item.name, item.arguments) for item in response.output] == [
        ("function_call", "call_a", "get_weather", '{"city":"Paris"}'),
        ("function_call", "call_b", "get_weather", '{"city":"Rome"}'),
    ]
    assert response.output[0].id != response.output[1].id


def test_whole_length_is_incomplete(client: OpenAI, upstream: FakeUpstream) -> None:
    upstream.script(Reply.json(completion({"content": "Once upon a"}, "length")))
    response = client.responses.create(model="gpt-4o", input="A story.", max_output_tokens=3)
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"
    assert response.output_text == "Once upon a"
    assert upstream.last.json()["max_completion_tokens"] == 3


def test_whole_content_filter_is_incomplete(client: OpenAI, upstream: FakeUpstream) -> None:
    upstream.script(Reply.json(completion({"content": ""}, "content_filter")))
    response = client.responses.create(model="gpt-4o", input="Something.")
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "content_filter"


def test_whole_refusal(client: OpenAI, upstream: FakeUpstream) -> None:
    upstream.script(
        Reply.json(completion({"content": None, "refusal": "I can't help with that."}, "stop"))
    )
    response = client.responses.create(model="gpt-4o", input="Something bad.")
    content = response.output[0].content  # type: ignore[union-attr]
    assert [part.type for part in content] == ["refusal"]
    assert content[0].refusal == "I can't help with that."  # type: ignore[union-attr]


def test_whole_reasoning_content_from_compat_servers(
    client: OpenAI, upstream: FakeUpstream
) -> None:
    upstream.script(
        Reply.json(completion({"reasoning_content": "2+2 is 4.", "content": "4"}, "stop"))
    )
    response = client.responses.create(model="deepseek-reasoner", input="2+2?")
    assert [item.type for item in response.output] == ["reasoning", "message"]
    assert response.output[0].summary[0].text == "2+2 is 4."  # type: ignore[union-attr]
    assert response.output_text == "4"


@pytest.mark.parametrize(
    ("code", "status"), [("server_error", 502), ("overloaded", 503), ("rate_limit_exceeded", 429)]
)
def test_whole_error_body_with_200_is_an_http_error(
    client: OpenAI, upstream: FakeUpstream, code: str, status: int
) -> None:
    upstream.script(Reply.json({"error": {"message": "model trouble", "code": code}}))
    with pytest.raises(openai.APIStatusError) as caught:
        client.responses.create(model="gpt-4o", input="Hi")
    assert caught.value.status_code == status
    assert "model trouble" in caught.value.message


def test_whole_non_json_body_is_a_502(client: OpenAI, upstream: FakeUpstream) -> None:
    upstream.script(Reply(status=200, headers={"content-type": "text/html"}, body=b"<html>"))
    with pytest.raises(openai.APIStatusError) as caught:
        client.responses.create(model="gpt-4o", input="Hi")
    assert caught.value.status_code == 502


ERRORS = [
    (401, {}, openai.AuthenticationError, "authentication_error", "invalid_api_key"),
    (404, {}, openai.NotFoundError, "not_found_error", "model_not_found"),
    (429, {"retry-after": "7"}, openai.RateLimitError, "rate_limit_error", "rate_limit_exceeded"),
    (500, {}, openai.InternalServerError, "server_error", "server_error"),
    (503, {}, openai.InternalServerError, "server_error", "service_unavailable"),
]


def _upstream_error(status: int, headers: dict[str, str]) -> Reply:
    body = {
        "error": {
            "message": f"upstream says {status}",
            "type": "upstream_type",
            "param": None,
            "code": None,
        }
    }
    return Reply.json(body, status=status, headers=headers)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize(
    ("status", "headers", "exception", "error_type", "code"),
    ERRORS,
    ids=[str(case[0]) for case in ERRORS],
)
def test_upstream_http_error_maps_to_openai_error(
    client: OpenAI,
    upstream: FakeUpstream,
    stream: bool,
    status: int,
    headers: dict[str, str],
    exception: type[openai.APIStatusError],
    error_type: str,
    code: str,
) -> None:
    upstream.script(_upstream_error(status, headers))
    with pytest.raises(exception) as caught:
        if stream:
            for _ in client.responses.create(model="gpt-4o", input="Hi", stream=True):
                pass
        else:
            client.responses.create(model="gpt-4o", input="Hi")
    error = caught.value
    assert error.status_code == status
    body: Any = error.body
    assert f"upstream says {status}" in body["message"]
    assert "chat" in body["message"]  # names the provider, so an operator knows whom to blame
    assert body["code"] == code
    if status in (401, 404):  # client errors keep the upstream's own error type
        assert body["type"] == "upstream_type"
    else:
        assert body["type"] == error_type
    for name, value in headers.items():
        assert error.response.headers[name] == value
    assert error.response.headers["x-gateway-provider"] == "chat"
    assert len(upstream.requests) == 1


def test_upstream_key_is_never_echoed(client: OpenAI, upstream: FakeUpstream) -> None:
    upstream.script(
        Reply.json({"error": {"message": "Incorrect API key provided: sk-chat-test."}}, status=401)
    )
    with pytest.raises(openai.AuthenticationError) as caught:
        client.responses.create(model="gpt-4o", input="Hi")
    assert "sk-chat-test" not in caught.value.message
    assert "***" in caught.value.message


def test_unreachable_upstream_is_a_502(gateway: str) -> None:
    config = """
default_provider: gone
providers:
  gone:
    preset: openai-chat
    base_url: http://127.0.0.1:9/v1
    api_key: k
    retry: {attempts: 1}
"""
    with running_gateway(config) as base_url:
        client = OpenAI(base_url=f"{base_url}/v1", api_key="x", max_retries=0)
        with pytest.raises(openai.APIStatusError) as caught:
            client.responses.create(model="m", input="Hi")
    assert caught.value.status_code == 502
    assert "gone" in caught.value.message
