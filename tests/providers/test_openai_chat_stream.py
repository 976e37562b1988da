"""openai-chat preset, streamed: every recorded Chat Completions stream replayed through a real
gateway, with the official ``openai`` SDK as the client (raw events and the stream helper).

The expectations come from an independent reading of each fixture (``chat_oracle``), so a test
fails when the preset or the emitter loses, reorders or invents anything.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from openai import APIError, OpenAI

from tests.support.fake_upstream import FIXTURES, FakeUpstream, Reply
from tests.support.server import running_gateway

CHAT_FIXTURES = sorted(FIXTURES.glob("chat-*.sse"))
TERMINAL = {"response.completed", "response.incomplete", "response.failed"}


@pytest.fixture(scope="module")
def gateway(upstream: FakeUpstream) -> Iterator[str]:
    config = f"""
default_provider: chat
providers:
  chat:
    preset: openai-chat
    base_url: {upstream.url}/v1
    api_key: sk-chat-test
"""
    with running_gateway(config) as base_url:
        yield base_url


@pytest.fixture
def client(gateway: str, upstream: FakeUpstream) -> OpenAI:
    upstream.reset()
    return OpenAI(base_url=f"{gateway}/v1", api_key="client-key", max_retries=0)


def chat_oracle(path: Path) -> dict[str, Any]:
    """What a Chat Completions stream says, read independently of the gateway."""
    text, refusal, finish, usage = "", "", None, None
    calls: dict[int, dict[str, str]] = {}
    for line in path.read_text().splitlines():
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        chunk = json.loads(line[6:])
        usage = chunk.get("usage") or usage
        for choice in chunk["choices"]:
            delta = choice["delta"]
            text += delta.get("content") or ""
            refusal += delta.get("refusal") or ""
            for call in delta.get("tool_calls") or []:
                entry = calls.setdefault(
                    call["index"], {"call_id": "", "name": "", "arguments": ""}
                )
                entry["call_id"] = call.get("id") or entry["call_id"]
                function = call.get("function") or {}
                entry["name"] = function.get("name") or entry["name"]
                entry["arguments"] += function.get("arguments") or ""
            finish = choice.get("finish_reason") or finish
    return {
        "text": text,
        "refusal": refusal,
        "calls": [calls[index] for index in sorted(calls)],
        "finish": finish,
        "usage": usage,
    }


def collect(client: OpenAI, **kwargs: Any) -> tuple[list[Any], APIError | None]:
    """Raw stream events until the end (or the SDK's ``APIError`` on an ``error`` event)."""
    events: list[Any] = []
    try:
        for event in client.responses.create(stream=True, **kwargs):
            events.append(event)
    except APIError as exc:
        return events, exc
    return events, None


def check_wire_invariants(events: list[Any]) -> None:
    """What every well-formed Responses stream satisfies, whatever the upstream."""
    assert [event.sequence_number for event in events] == list(range(len(events)))
    assert events[0].type == "response.created"
    assert events[1].type == "response.in_progress"
    assert events[-1].type in TERMINAL
    assert sum(event.type in TERMINAL for event in events) == 1
    added = [event.output_index for event in events if event.type == "response.output_item.added"]
    done = [event.output_index for event in events if event.type == "response.output_item.done"]
    assert added == list(range(len(added)))
    assert done == added


@pytest.mark.parametrize("split", ["events", "bytes:13"])
@pytest.mark.parametrize("fixture", CHAT_FIXTURES, ids=lambda path: path.stem)
def test_recorded_stream_replays_to_the_same_answer(
    client: OpenAI, upstream: FakeUpstream, fixture: Path, split: str
) -> None:
    upstream.script(Reply.sse_file(fixture, split=split))
    expected = chat_oracle(fixture)

    events, error = collect(client, model="gpt-4o", input="Replay.")

    assert error is None
    check_wire_invariants(events)
    final = events[-1].response
    assert final.model == "gpt-4o"
    assert final.usage.input_tokens == expected["usage"]["prompt_tokens"]
    assert final.usage.output_tokens == expected["usage"]["completion_tokens"]
    assert final.usage.total_tokens == expected["usage"]["total_tokens"]
    if expected["finish"] == "length":
        assert events[-1].type == "response.incomplete"
        assert final.status == "incomplete"
        assert final.incomplete_details.reason == "max_output_tokens"
    else:
        assert events[-1].type == "response.completed"
        assert final.status == "completed"
        assert final.incomplete_details is None

    messages = [item for item in final.output if item.type == "message"]
    texts = [part.text for item in messages for part in item.content if part.type == "output_text"]
    refusals = [
        part.refusal for item in messages for part in item.content if part.type == "refusal"
    ]
    assert "".join(texts) == expected["text"]
    assert "".join(refusals) == expected["refusal"]
    deltas = "".join(event.delta for event in events if event.type == "response.output_text.delta")
    assert deltas == expected["text"]
    refusal_deltas = [event.delta for event in events if event.type == "response.refusal.delta"]
    assert "".join(refusal_deltas) == expected["refusal"]

    calls = [item for item in final.output if item.type == "function_call"]
    assert [(c.call_id, c.name, c.arguments) for c in calls] == [
        (c["call_id"], c["name"], c["arguments"]) for c in expected["calls"]
    ]
    for call in calls:
        json.loads(call.arguments)  # fragments reassemble into valid JSON
        assert call.id.startswith("fc_")
        assert call.status == "completed"
    argument_done = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert [e.arguments for e in argument_done] == [c["arguments"] for c in expected["calls"]]

    sent = upstream.requests[0]
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == "Bearer sk-chat-test"
    body = sent.json()
    assert body["model"] == "gpt-4o"
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["messages"] == [{"role": "user", "content": "Replay."}]


def test_text_stream_event_sequence_is_exact(client: OpenAI, upstream: FakeUpstream) -> None:
    upstream.script(Reply.sse_file(FIXTURES / "chat-text.sse"))
    events, _ = collect(client, model="gpt-4o", input="Weather?")
    types = [event.type for event in events]
    deltas = types.count("response.output_text.delta")
    assert deltas > 10
    assert types == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * deltas,
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    item_ids = {getattr(event, "item_id", None) for event in events[3:-2]}
    assert len(item_ids) == 1
    assert item_ids.pop().startswith("msg_")


def test_parallel_tool_calls_are_two_items_in_index_order(
    client: OpenAI, upstream: FakeUpstream
) -> None:
    upstream.script(Reply.sse_file(FIXTURES / "chat-parallel-tools.sse"))
    events, _ = collect(client, model="gpt-4o", input="Weather in two cities?")
    added = [event.item for event in events if event.type == "response.output_item.added"]
    assert [item.type for item in added] == ["function_call", "function_call"]
    assert added[0].call_id != added[1].call_id
    for index in (0, 1):
        deltas = [
            event.delta
            for event in events
            if event.type == "response.function_call_arguments.delta"
            and event.output_index == index
        ]
        done = next(
            event
            for event in events
            if event.type == "response.output_item.done" and event.output_index == index
        )
        assert "".join(deltas) == done.item.arguments
        assert json.loads(done.item.arguments)  # a non-empty JSON object per call


@pytest.mark.parametrize(
    ("fixture", "tools"),
    [
        ("chat-text.sse", []),
        ("chat-tool.sse", ["GetWeatherArgs"]),
        ("chat-parallel-tools.sse", ["GetWeatherArgs", "get_stock_price"]),
        ("chat-refusal.sse", []),
    ],
)
def test_stream_helper_final_response(
    client: OpenAI, upstream: FakeUpstream, fixture: str, tools: list[str]
) -> None:
    upstream.script(Reply.sse_file(FIXTURES / fixture))
    expected = chat_oracle(FIXTURES / fixture)
    function_tools: Any = [
        {"type": "function", "name": name, "parameters": {"type": "object"}, "strict": False}
        for name in tools
    ]
    with client.responses.stream(model="gpt-4o", input="Go.", tools=function_tools) as stream:
        seen = [event.type for event in stream]
        final = stream.get_final_response()
    assert seen[-1] == "response.completed"
    assert final.output_text == expected["text"]
    refusals = [
        part.refusal
        for item in final.output
        if item.type == "message"
        for part in item.content
        if part.type == "refusal"
    ]
    assert "".join(refusals) == expected["refusal"]
    calls = [item for item in final.output if item.type == "function_call"]
    assert [json.loads(call.arguments) for call in calls] == [
        json.loads(call["arguments"]) for call in expected["calls"]
    ]
    if tools:
        sent_tools = upstream.requests[0].json()["tools"]
        assert [tool["function"]["name"] for tool in sent_tools] == tools


def _chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-4o",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


ERROR_CHUNKS = {
    "openai_envelope": {"error": {"message": "The server had an error.", "type": "server_error"}},
    "string_error": {"error": "The server had an error."},
    "vllm_object_error": {
        "object": "error",
        "message": "The server had an error.",
        "type": "InternalServerError",
        "code": 500,
    },
}


@pytest.mark.parametrize("shape", sorted(ERROR_CHUNKS))
def test_error_chunk_mid_stream_fails_the_response(
    client: OpenAI, upstream: FakeUpstream, shape: str
) -> None:
    upstream.script(
        Reply.sse([_chunk({"role": "assistant", "content": "Partial"}), ERROR_CHUNKS[shape]])
    )
    events, error = collect(client, model="gpt-4o", input="Hi")
    assert error is not None
    assert "The server had an error." in error.message
    assert [event.type for event in events][-1] == "response.failed"
    failed = events[-1].response
    assert failed.status == "failed"
    assert failed.error.code
    assert failed.output[0].content[0].text == "Partial"
    assert failed.output[0].status == "incomplete"


def test_cut_connection_fails_the_response(client: OpenAI, upstream: FakeUpstream) -> None:
    upstream.script(
        Reply.sse(
            [_chunk({"role": "assistant", "content": "Half"}), _chunk({"content": " an answ"})],
            cut=True,
        )
    )
    events, error = collect(client, model="gpt-4o", input="Hi")
    assert error is not None
    assert "failed mid-stream" in error.message
    assert events[-1].type == "response.failed"
    assert events[-1].response.output[0].content[0].text == "Half an answ"


def test_stream_without_done_after_a_finish_reason_completes(
    client: OpenAI, upstream: FakeUpstream
) -> None:
    upstream.script(
        Reply.sse([_chunk({"role": "assistant", "content": "Whole."}), _chunk({}, "stop")])
    )
    events, error = collect(client, model="gpt-4o", input="Hi")
    assert error is None
    assert events[-1].type == "response.completed"
    assert events[-1].response.output[0].content[0].text == "Whole."


def test_stream_ending_without_a_finish_reason_fails(
    client: OpenAI, upstream: FakeUpstream
) -> None:
    upstream.script(Reply.sse([_chunk({"role": "assistant", "content": "Trunc"})]))
    events, error = collect(client, model="gpt-4o", input="Hi")
    assert error is not None
    assert "ended before the response was finished" in error.message
    assert events[-1].type == "response.failed"
    assert all(event.type != "response.completed" for event in events)


def test_keepalive_comments_and_crlf_are_ignored(client: OpenAI, upstream: FakeUpstream) -> None:
    frames = [
        b": OPENROUTER PROCESSING\r\n\r\n",
        b"data: " + json.dumps(_chunk({"content": "A"})).encode() + b"\r\n\r\n",
        b": keep-alive\n\n",
        b"data: " + json.dumps(_chunk({"content": "B"}, "stop")).encode() + b"\r\n\r\n",
        b"data: [DONE]\r\n\r\n",
    ]
    upstream.script(Reply.stream(frames))
    events, error = collect(client, model="gpt-4o", input="Hi")
    assert error is None
    assert events[-1].response.output[0].content[0].text == "AB"
