"""The emitter's wire contract, fed canonical events directly or from recorded upstream answers."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.config.build import build_runtime
from gateway.config.loader import parse_yaml
from gateway.ids import DIGITS
from gateway.providers.adapter import ProviderAdapter
from gateway.providers.decoding import make_decoder
from gateway.responses.emitter import FinishOutcome, ResponseEmitter
from gateway.responses.normalize import RequestLimits, normalize, parse_body
from tests.support.fake_upstream import FIXTURES

FINISH = {
    "length": FinishOutcome("incomplete", "max_output_tokens"),
    "safety": FinishOutcome("incomplete", "content_filter"),
}


def run(
    events: list[dict[str, Any]], *, stream: bool = True
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    emitter = ResponseEmitter(
        model="m", body={"model": "m", "input": "x"}, finish_reasons=FINISH, stream=stream
    )
    out = emitter.start()
    for event in events:
        out.extend(emitter.feed(event))
    out.extend(emitter.end_of_stream(requires_done=False))
    return out, emitter.response


def test_reasoning_then_text_then_parallel_calls() -> None:
    out, response = run(
        [
            {"type": "reasoning", "text": "Thinking"},
            {"type": "reasoning", "text": " more", "signature": "sig"},
            {"type": "text", "text": "Hello"},
            {"type": "tool_call", "key": 0, "call_id": "call_a", "name": "f", "arguments": '{"a"'},
            {"type": "tool_call", "key": 0, "arguments": ": 1}"},
            {"type": "tool_call", "call_id": "call_b", "name": "g", "arguments": "{}"},
            {"type": "usage", "input_tokens": 5, "output_tokens": 7, "reasoning_tokens": 3},
            {"type": "finish", "reason": "tool_calls"},
        ]
    )
    types = [event["type"] for event in out]
    assert types == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.reasoning_summary_part.added",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.done",
        "response.reasoning_summary_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [event["sequence_number"] for event in out] == list(range(len(out)))
    added = [event for event in out if event["type"] == "response.output_item.added"]
    assert [event["output_index"] for event in added] == [0, 1, 2, 3]
    reasoning, message, call_a, call_b = response["output"]
    assert reasoning["summary"] == [{"type": "summary_text", "text": "Thinking more"}]
    assert reasoning["encrypted_content"] == "sig"
    assert message["content"][0]["text"] == "Hello"
    assert (call_a["call_id"], call_a["arguments"], call_a["status"]) == (
        "call_a",
        '{"a": 1}',
        "completed",
    )
    assert call_b["call_id"] == "call_b"
    assert response["status"] == "completed"
    assert response["usage"]["total_tokens"] == 12
    assert response["usage"]["output_tokens_details"] == {"reasoning_tokens": 3}
    done_items = [event["item"] for event in out if event["type"] == "response.output_item.done"]
    assert [item["id"] for item in done_items] == [item["id"] for item in response["output"]]


def test_refusal_part_streams_as_refusal_events() -> None:
    out, response = run(
        [{"type": "refusal", "text": "I can't"}, {"type": "finish", "reason": "stop"}]
    )
    types = [event["type"] for event in out]
    assert "response.refusal.delta" in types and "response.refusal.done" in types
    assert response["output"][0]["content"] == [{"type": "refusal", "refusal": "I can't"}]


def test_content_filter_finish_is_incomplete() -> None:
    out, response = run(
        [{"type": "text", "text": "partial"}, {"type": "finish", "reason": "safety"}]
    )
    assert out[-1]["type"] == "response.incomplete"
    assert response["incomplete_details"] == {"reason": "content_filter"}
    assert response["output"][0]["status"] == "incomplete"


def test_error_event_fails_with_flat_and_nested_error() -> None:
    out, response = run(
        [{"type": "text", "text": "a"}, {"type": "error", "code": "overloaded", "message": "busy"}]
    )
    failed, error = out[-2:]
    assert failed["type"] == "response.failed"
    assert failed["response"]["error"] == {"code": "overloaded", "message": "busy"}
    assert error["type"] == "error"
    assert (error["code"], error["message"]) == ("overloaded", "busy")
    assert error["error"] == {
        "type": "overloaded",
        "code": "overloaded",
        "message": "busy",
        "param": None,
    }
    assert response["status"] == "failed"


def test_stream_that_never_finished_fails() -> None:
    out, response = run([{"type": "text", "text": "half"}])
    assert out[-2]["type"] == "response.failed"
    assert response["status"] == "failed"


def test_events_after_the_terminal_event_are_ignored() -> None:
    emitter = ResponseEmitter(model="m", body={}, finish_reasons={}, stream=True)
    emitter.feed({"type": "done"})
    assert emitter.feed({"type": "text", "text": "late"}) == []


def test_non_streaming_mode_builds_the_same_response_without_events() -> None:
    out, response = run(
        [{"type": "text", "text": "hi"}, {"type": "finish", "reason": "stop"}], stream=False
    )
    assert out == []
    assert response["output"][0]["content"][0]["text"] == "hi"
    assert response["status"] == "completed"
    assert response["completed_at"] is not None


# ------------------------------------------------------------------ whole == streamed

AGENT_BODY: dict[str, Any] = {
    "model": "m",
    "instructions": "Be brief.",
    "input": [{"role": "user", "content": "Weather in Paris?"}],
    "tools": [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}}],
    "temperature": 0.5,
    "reasoning": {"effort": "low"},
    "metadata": {"run": "1"},
}
PRESET_OF = {"chat": "openai-chat", "anthropic": "anthropic", "gemini": "gemini"}
RECORDED = sorted(
    path
    for path in FIXTURES.iterdir()
    if path.suffix in (".sse", ".json") and path.stem != "README"
)


@pytest.fixture(scope="module")
def adapters() -> dict[str, ProviderAdapter]:
    config = "providers:\n" + "".join(
        f'  {name}: {{preset: {name}, base_url: "http://upstream", api_key: k}}\n'
        for name in PRESET_OF.values()
    )
    runtime = build_runtime(parse_yaml(config, "gateway.yaml"), source="gateway.yaml", environ={})
    return {name: runtime.providers[name] for name in PRESET_OF.values()}


def recorded_events(path: Path, adapter: ProviderAdapter, body: dict[str, Any]) -> list[Any]:
    """The canonical events a recorded upstream answer becomes, as the API would feed them."""
    req = normalize(parse_body(orjson.dumps(body), RequestLimits()), "m")
    if path.suffix == ".json":
        return list(adapter.events_from_body(orjson.loads(path.read_bytes()), req))
    decoder = make_decoder(adapter.stream.framing)
    frames = [*decoder.feed(path.read_bytes()), *decoder.close()]
    return [event for name, data in frames for event in adapter.events_from_chunk(name, data, req)]


def assert_modes_agree(
    events: list[Any],
    body: dict[str, Any],
    finish_reasons: dict[str, FinishOutcome],
    requires_done: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``stream=False`` builds no event, yet its Response is byte-for-byte the streamed one."""
    monkeypatch.setattr(time, "time", lambda: 1_700_000_000.0)
    results = []
    for stream in (True, False):
        emitter = ResponseEmitter(
            model="m", body=body, finish_reasons=finish_reasons, stream=stream
        )
        out = emitter.start()
        for event in events:
            out.extend(emitter.feed(event))
        out.extend(emitter.end_of_stream(requires_done=requires_done))
        results.append((out, emitter.response))
    (streamed_events, streamed), (whole_events, whole) = results
    assert streamed_events and whole_events == []
    terminal = next(event for event in reversed(streamed_events) if "response" in event)
    assert terminal["response"] is streamed
    assert numbered_ids(orjson.dumps(whole)) == numbered_ids(orjson.dumps(streamed))


def numbered_ids(encoded: bytes) -> bytes:
    """Each random id numbered by first appearance (``"resp_<48 hex digits>"`` → ``"resp_0"``,
    the next id ``…_1``), so that two emitters' Responses compare byte for byte."""
    numbers: dict[bytes, int] = {}

    def number(match: re.Match[bytes]) -> bytes:
        index = numbers.setdefault(match.group(0), len(numbers))
        return b'"%b_%d"' % (match.group(1), index)

    return re.sub(rb'"([a-z]+)_[0-9a-f]{%d}"' % DIGITS, number, encoded)


@pytest.mark.parametrize("path", RECORDED, ids=lambda path: path.name)
@pytest.mark.parametrize("body", [{"model": "m", "input": "hi"}, AGENT_BODY], ids=["hi", "agent"])
def test_whole_mode_builds_the_streamed_response_for_recorded_answers(
    path: Path,
    body: dict[str, Any],
    adapters: dict[str, ProviderAdapter],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    adapter = adapters[PRESET_OF[path.name.split("-")[0]]]
    events = recorded_events(path, adapter, body)
    assert_modes_agree(
        events, body, dict(adapter.finish_reasons), adapter.stream.requires_done, monkeypatch
    )


EDGE_CASES: dict[str, list[dict[str, Any]]] = {
    "call without arguments": [
        {"type": "tool_call", "key": 1, "call_id": "c", "name": "f"},
        {"type": "end", "key": 1},
        {"type": "finish", "reason": "tool_calls"},
    ],
    "text, refusal, text": [
        {"type": "text", "text": "a"},
        {"type": "refusal", "text": "b"},
        {"type": "text", "text": "c"},
        {"type": "finish", "reason": "stop"},
    ],
    "cut by a limit mid-call": [
        {"type": "tool_call", "key": 1, "call_id": "c", "name": "f", "arguments": '{"a'},
        {"type": "finish", "reason": "length"},
    ],
    "snapshots": [
        {"type": "reasoning", "text": "ab", "key": 1, "signature": "s"},
        {"type": "reasoning", "text": "abcd", "key": 1, "snapshot": True},
        {"type": "text", "text": "Hel", "key": 2},
        {"type": "text", "text": "Hello", "key": 2, "snapshot": True},
        {"type": "tool_call", "key": 3, "name": "f", "arguments": "{"},
        {"type": "tool_call", "key": 3, "arguments": '{"x":1}', "snapshot": True},
        {"type": "usage", "input_tokens": 3, "cached_tokens": 1},
        {"type": "done"},
    ],
    "error mid-call": [
        {"type": "tool_call", "key": 1, "name": "f"},
        {"type": "usage", "input_tokens": 1},
        {"type": "error", "code": "overloaded", "message": "busy"},
    ],
    "never finished": [{"type": "text", "text": "half"}],
    "nothing but a finish": [{"type": "finish", "reason": "stop"}],
}


@pytest.mark.parametrize("events", EDGE_CASES.values(), ids=EDGE_CASES.keys())
def test_whole_mode_builds_the_streamed_response_for_edge_cases(
    events: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert_modes_agree(events, {"model": "m", "input": "x"}, FINISH, False, monkeypatch)
