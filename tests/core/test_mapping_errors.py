"""A response template that fails on an answer is a clear 502, never a bare 500 or a hang."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest
from openai import OpenAI

from tests.support.fake_upstream import FakeUpstream, Reply
from tests.support.server import running_gateway

BROKEN_RULE = "{{ event.choices | length / 0 }}"


@pytest.fixture(scope="module")
def client(upstream: FakeUpstream) -> Iterator[OpenAI]:
    config = f"""
routing: {{retry: {{attempts: 1}}}}
providers:
  broken:
    preset: openai-chat
    base_url: "{upstream.url}"
    api_key: k
    stream: {{default: {{type: text, text: "{BROKEN_RULE}"}}}}
    response: {{events: {{type: text, text: "{BROKEN_RULE}"}}}}
"""
    with running_gateway(config) as url:
        yield OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)


def test_whole_answer(client: OpenAI, upstream: FakeUpstream) -> None:
    upstream.script(
        Reply.json({"choices": [{"message": {"content": "hi"}, "finish_reason": "stop"}]})
    )
    with pytest.raises(openai.APIStatusError) as caught:
        client.responses.create(model="broken:m", input="hi")
    assert caught.value.status_code == 502
    assert "mapping error" in caught.value.message


def test_stream(client: OpenAI, upstream: FakeUpstream) -> None:
    upstream.script(Reply.sse([{"choices": [{"delta": {"content": "hi"}}]}], done=True))
    with pytest.raises(openai.APIStatusError) as caught:
        list(client.responses.create(model="broken:m", input="hi", stream=True))
    assert caught.value.status_code == 502
