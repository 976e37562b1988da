"""Request limits: oversized, deeply nested, long-stringed and many-itemed bodies get a clear
400/413 (never a 500, never a hang), through the SDK and raw HTTP, and the gateway stays up."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI

from tests.access.conftest import KEY_A, KEYS_ENV, client
from tests.support.server import running_gateway

CONFIG = """
default_provider: echo
server:
  max_body_bytes: 262144
  max_input_items: 20
  max_json_depth: 16
  max_string_chars: 4096
providers:
  echo: {preset: echo}
keys:
  - {name: team-a, key: "${ACCESS_TEST_KEY_A}"}
"""

KEYED = {"authorization": f"Bearer {KEY_A}"}


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    with running_gateway(CONFIG, env=KEYS_ENV) as url:
        yield url


@pytest.fixture(scope="module")
def sdk(base_url: str) -> OpenAI:
    return client(base_url, KEY_A)


@pytest.fixture(scope="module")
def http(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, headers=KEYED, timeout=10) as raw:
        yield raw


@pytest.fixture(autouse=True)
def still_serving(http: httpx.Client) -> Iterator[None]:
    yield
    ok = http.post("/v1/responses", json={"model": "echo", "input": "still here"})
    assert ok.status_code == 200 and ok.json()["output"][0]["content"][0]["text"] == "still here"


def error_of(response: httpx.Response) -> dict[str, Any]:
    error: dict[str, Any] = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


def test_too_many_input_items_through_the_sdk(sdk: OpenAI) -> None:
    items: Any = [{"role": "user", "content": f"m{index}"} for index in range(21)]
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.responses.create(model="echo", input=items)
    assert caught.value.body == {
        "message": "'input' has 21 items; the limit is 20.",
        "type": "invalid_request_error",
        "param": "input",
        "code": "too_many_items",
    }


def test_a_long_string_through_the_sdk(sdk: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.responses.create(model="echo", input="x" * 4097)
    assert caught.value.code == "string_too_long"
    assert "4097 characters; the limit is 4096" in caught.value.message
    assert sdk.responses.create(model="echo", input="y" * 4096).output_text == "y" * 4096


def test_an_oversized_body_through_the_sdk_is_a_413(sdk: OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        sdk.responses.create(model="echo", input="big", metadata={"k": "v" * 300_000})
    assert caught.value.status_code == 413
    assert caught.value.body["code"] == "request_too_large"  # type: ignore[index]


def test_a_declared_oversized_body_is_refused_before_it_is_read(http: httpx.Client) -> None:
    response = http.post("/v1/responses", content=b"{" + b" " * 300_000 + b"}")
    assert response.status_code == 413
    assert (
        error_of(response)["message"] == "Request body is 300002 bytes; the limit is 262144 bytes."
    )


def test_a_chunked_upload_is_cut_off_at_the_limit(http: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:  # no content-length: the gateway counts as it reads
        yield b'{"model": "echo", "input": "'
        for _ in range(64):
            yield b"x" * 8192
        yield b'"}'

    response = http.post("/v1/responses", content=chunks())
    assert response.status_code == 413
    assert error_of(response)["code"] == "request_too_large"


@pytest.mark.parametrize("depth", [17, 200, 5000, 100_000])
def test_deep_nesting_is_a_400(http: httpx.Client, depth: int) -> None:
    nested = "[" * depth + "]" * depth
    body = '{"model": "echo", "input": "hi", "metadata": {"k": ' + nested + "}}"
    response = http.post(
        "/v1/responses", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400, response.text
    assert error_of(response)["code"] in ("nesting_too_deep", "invalid_json")


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"", "invalid_json"),
        (b"\xff\xfe{not utf-8", "invalid_json"),
        (b"[1, 2]", "invalid_json"),
        (b'{"model": "echo", "input": "x", "stream": "yes"}', "invalid_type"),
        (b'{"model": "echo", "input": []}', "empty_input"),
    ],
    ids=["empty", "not-utf8", "not-an-object", "bad-stream", "empty-input"],
)
def test_malformed_bodies_are_400s(http: httpx.Client, body: bytes, code: str) -> None:
    response = http.post("/v1/responses", content=body)
    assert response.status_code == 400
    assert error_of(response)["code"] == code


def test_an_unauthenticated_body_is_never_read(base_url: str) -> None:
    response = httpx.post(f"{base_url}/v1/responses", content=b"x" * 300_000)
    assert response.status_code == 401
