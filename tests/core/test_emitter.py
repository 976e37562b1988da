"""The emitter's wire contract, fed canonical events directly (no provider involved)."""

from __future__ import annotations

from typing import Any

from gateway.responses.emitter import FinishOutcome, ResponseEmitter

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
