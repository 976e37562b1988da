"""openai preset (the Responses API as upstream), streamed, with the official SDK as the client.

The upstream already speaks Responses SSE; the gateway still reads it into canonical events and
re-emits it, so the client sees the gateway's own ids and sequence numbers, exactly one
terminal event, and a failed response (never a hang or a false "completed") when the upstream
errs, cuts the connection or stops early.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from openai import APIError, OpenAI

from gateway.responses.emitter import ResponseEmitter
from tests.providers.openai_responses_support import (
    function_call,
    gateway_config,
    message,
    reasoning,
    stream_events,
)
from tests.support.fake_upstream import FakeUpstream, Reply
from tests.support.server import running_gateway

TERMINAL = {"response.completed", "response.incomplete", "response.failed"}


@pytest.fixture(scope="module")
def gateway(upstream: FakeUpstream) -> Iterator[str]:
    config = gateway_config(upstream.url) + "models:\n  smart: openai:gpt-5\n"
    with running_gateway(config) as base_url:
        yield base_url


@pytest.fixture
def client(gateway: str, upstream: FakeUpstream) -> OpenAI:
    upstream.reset()
    return OpenAI(base_url=f"{gateway}/v1", api_key="client-key", max_retries=0)


def replay(upstream: FakeUpstream, events: list[dict[str, Any]], **options: Any) -> None:
    upstream.script(Reply.sse(events, named=True, **options))


def collect(client: OpenAI, **kwargs: Any) -> tuple[list[Any], APIError | None]:
    events: list[Any] = []
    try:
        for event in client.responses.create(stream=True, **kwargs):
            events.append(event)
    except APIError as exc:
        return events, exc
    return events, None


def check_wire_invariants(events: list[Any]) -> None:
    assert [event.sequence_number for event in events] == list(range(len(events)))
    assert [event.type for event in events[:2]] == ["response.created", "response.in_progress"]
    assert events[-1].type in TERMINAL
    assert sum(event.type in TERMINAL for event in events) == 1
    added = [event.output_index for event in events if event.type == "response.output_item.added"]
    assert added == list(range(len(added)))
    for event in events:
        item = getattr(event, "item", None)
        assert "upstream" not in str(getattr(event, "item_id", "")), "upstream ids leak"
        assert item is None or "upstream" not in item.id


def test_text_stream(client: OpenAI, upstream: FakeUpstream) -> None:
    replay(upstream, stream_events([message("Hel", "lo, ", "world.")]))
    events, error = collect(client, model="smart", input="Greet the world.")
    assert error is None
    check_wire_invariants(events)
    assert [event.type for event in events] == [
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
    final = events[-1].response
    assert final.model == "smart"
    assert not final.id.startswith("resp_upstream")
    assert final.output_text == "Hello, world."
    assert final.usage.input_tokens == 31
    assert final.usage.input_tokens_details.cached_tokens == 5
    assert final.usage.output_tokens == 12
    assert final.usage.output_tokens_details.reasoning_tokens == 4
    assert final.usage.total_tokens == 43


def test_reasoning_summary_and_encrypted_state(client: OpenAI, upstream: FakeUpstream) -> None:
    replay(
        upstream,
        stream_events(
            [
                reasoning("First I look.", "Then I answer.", encrypted="gAAAA-opaque"),
                message("42"),
            ]
        ),
    )
    events, error = collect(client, model="smart", input="Meaning of life?")
    assert error is None
    check_wire_invariants(events)
    final = events[-1].response
    assert [item.type for item in final.output] == ["reasoning", "message"]
    summary = final.output[0].summary
    assert [part.text for part in summary] == ["First I look.\n\nThen I answer."]
    assert final.output[0].encrypted_content == "gAAAA-opaque"
    deltas = [e.delta for e in events if e.type == "response.reasoning_summary_text.delta"]
    assert "".join(deltas) == "First I look.\n\nThen I answer."
    assert final.output_text == "42"


def test_parallel_function_calls(client: OpenAI, upstream: FakeUpstream) -> None:
    replay(
        upstream,
        stream_events(
            [
                function_call("call_1", "get_weather", '{"city":', '"Paris"}'),
                function_call("call_2", "get_weather", '{"city":"Rome"}'),
            ]
        ),
    )
    events, error = collect(client, model="smart", input="Weather in Paris and Rome?")
    assert error is None
    check_wire_invariants(events)
    calls = events[-1].response.output
    assert [(c.type, c.call_id, c.name, c.arguments) for c in calls] == [
        ("function_call", "call_1", "get_weather", '{"city":"Paris"}'),
        ("function_call", "call_2", "get_weather", '{"city":"Rome"}'),
    ]
    done = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert [e.arguments for e in done] == ['{"city":"Paris"}', '{"city":"Rome"}']
    deltas = [e for e in events if e.type == "response.function_call_arguments.delta"]
    assert [(e.output_index, e.delta) for e in deltas] == [
        (0, '{"city":'),
        (0, '"Paris"}'),
        (1, '{"city":"Rome"}'),
    ]


def test_refusal(client: OpenAI, upstream: FakeUpstream) -> None:
    replay(upstream, stream_events([message(refusal="I can't help with that.")]))
    events, _ = collect(client, model="smart", input="Something bad.")
    content = events[-1].response.output[0].content
    assert [(part.type, part.refusal) for part in content] == [
        ("refusal", "I can't help with that.")
    ]
    assert "response.refusal.delta" in [event.type for event in events]


@pytest.mark.parametrize("reason", ["max_output_tokens", "content_filter"])
def test_incomplete(client: OpenAI, upstream: FakeUpstream, reason: str) -> None:
    replay(
        upstream,
        stream_events(
            [message("Once upon")], terminal="response.incomplete", incomplete_reason=reason
        ),
    )
    events, error = collect(client, model="smart", input="A story.", max_output_tokens=16)
    assert error is None
    check_wire_invariants(events)
    assert events[-1].type == "response.incomplete"
    final = events[-1].response
    assert final.status == "incomplete"
    assert final.incomplete_details.reason == reason
    assert final.output[0].status == "incomplete"
    assert final.output_text == "Once upon"
    assert final.usage.output_tokens == 12


def test_upstream_response_failed(client: OpenAI, upstream: FakeUpstream) -> None:
    error = {"code": "server_error", "message": "The model failed to generate a response."}
    replay(upstream, stream_events([message("Par")], terminal="response.failed", error=error))
    events, raised = collect(client, model="smart", input="Hi")
    assert raised is not None
    assert "The model failed to generate a response." in raised.message
    assert events[-1].type == "response.failed"
    failed = events[-1].response
    assert failed.error.code == "server_error"
    assert failed.output[0].content[0].text == "Par"


def test_error_event_mid_stream(client: OpenAI, upstream: FakeUpstream) -> None:
    events = stream_events([message("Half")], terminal=None)
    events.append(
        {
            "type": "error",
            "code": "rate_limit_exceeded",
            "message": "Rate limit reached.",
            "param": None,
            "sequence_number": len(events),
        }
    )
    replay(upstream, events)
    seen, raised = collect(client, model="smart", input="Hi")
    assert raised is not None
    assert "Rate limit reached." in raised.message
    assert seen[-1].type == "response.failed"
    assert seen[-1].response.error.code == "rate_limit_exceeded"


def test_cut_connection(client: OpenAI, upstream: FakeUpstream) -> None:
    events = stream_events([message("An answ", "er that")], terminal=None)[:6]
    replay(upstream, events, cut=True)
    seen, raised = collect(client, model="smart", input="Hi")
    assert raised is not None
    assert seen[-1].type == "response.failed"
    assert all(event.type != "response.completed" for event in seen)


def test_stream_ending_without_a_terminal_event_fails(
    client: OpenAI, upstream: FakeUpstream
) -> None:
    replay(upstream, stream_events([message("Looks done.")], terminal=None))
    seen, raised = collect(client, model="smart", input="Hi")
    assert raised is not None
    assert "ended before the response was finished" in raised.message
    assert seen[-1].type == "response.failed"


def test_unknown_and_echo_events_are_ignored(client: OpenAI, upstream: FakeUpstream) -> None:
    events = stream_events([message("Fine.")])
    events.insert(3, {"type": "response.output_text.annotation.added", "annotation": {}})
    events.insert(3, {"type": "response.some_future_event", "whatever": True})
    replay(upstream, [*events[:2], ": keep-alive\n\n", *events[2:]])
    seen, raised = collect(client, model="smart", input="Hi")
    assert raised is None
    check_wire_invariants(seen)
    assert seen[-1].response.output_text == "Fine."


@pytest.mark.parametrize("kind", ["text", "tool"])
def test_stream_helper_final_response(client: OpenAI, upstream: FakeUpstream, kind: str) -> None:
    items = (
        [message("Bonjour", " !")]
        if kind == "text"
        else [function_call("call_9", "get_weather", '{"city"', ':"Lyon"}')]
    )
    replay(upstream, stream_events(items))
    tools: Any = [
        {
            "type": "function",
            "name": "get_weather",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
                "additionalProperties": False,
            },
            "strict": True,
        }
    ]
    with client.responses.stream(model="smart", input="Go.", tools=tools) as stream:
        seen = [event.type for event in stream]
        final = stream.get_final_response()
    assert seen[-1] == "response.completed"
    if kind == "text":
        assert final.output_text == "Bonjour !"
    else:
        call = final.output[0]
        assert call.type == "function_call"
        assert json.loads(call.arguments) == {"city": "Lyon"}
        assert call.parsed_arguments == {"city": "Lyon"}  # type: ignore[union-attr]


def test_request_is_the_clients_body_with_the_model_rewritten(
    client: OpenAI, upstream: FakeUpstream
) -> None:
    replay(upstream, stream_events([message("ok")]))
    body: dict[str, Any] = {
        "model": "smart",
        "instructions": "Be brief.",
        "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "Weather?"}]},
            {
                "type": "reasoning",
                "id": "rs_gateway_1",
                "summary": [{"type": "summary_text", "text": "Use the tool."}],
                "encrypted_content": "gAAAA-state",
            },
            {"type": "reasoning", "id": "rs_gateway_2", "summary": []},
            {
                "type": "function_call",
                "id": "fc_gateway_1",
                "call_id": "call_1",
                "name": "get_weather",
                "arguments": '{"city":"Paris"}',
                "status": "completed",
            },
            {"type": "function_call_output", "call_id": "call_1", "output": "18C"},
            {
                "type": "message",
                "id": "msg_gateway_1",
                "role": "assistant",
                "status": "completed",
                "content": [{"type": "output_text", "text": "18C.", "annotations": []}],
            },
            {"role": "user", "content": "Thanks"},
        ],
        "tools": [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}}],
        "tool_choice": "auto",
        "include": ["reasoning.encrypted_content"],
        "store": False,
        "reasoning": {"effort": "low", "summary": "auto"},
        "text": {"verbosity": "low"},
        "metadata": {"team": "docs"},
        "prompt_cache_key": "k-1",
        "service_tier": "flex",
    }
    collect(client, **{key: value for key, value in body.items()})
    sent = upstream.last
    assert sent.path == "/v1/responses"
    assert sent.headers["authorization"] == "Bearer sk-openai-test"
    assert "client-key" not in json.dumps(sent.headers)
    relayed = sent.json()
    expected = {**body, "model": "gpt-5", "stream": True}
    expected["input"] = [
        body["input"][0],
        {key: value for key, value in body["input"][1].items() if key != "id"},
        # the reasoning item without encrypted_content cannot be replayed: dropped
        {k: v for k, v in body["input"][3].items() if k not in ("id", "status")},
        body["input"][4],
        {k: v for k, v in body["input"][5].items() if k not in ("id", "status")},
        body["input"][6],
    ]
    assert relayed == expected


def _without_deltas(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    delta = (".delta", "content_part.", "summary_part.", ".done")
    return [
        event
        for event in events
        if not event["type"].endswith(delta) or event["type"] == "response.output_item.done"
    ]


def test_items_given_whole_without_deltas_are_complete(
    client: OpenAI, upstream: FakeUpstream
) -> None:
    items = [
        reasoning("Plan.", encrypted="gAAAA-x"),
        message("Let me ", "check."),
        function_call("call_5", "get_weather", '{"city":', '"Oslo"}'),
    ]
    replay(upstream, _without_deltas(stream_events(items)))
    events, error = collect(client, model="smart", input="Weather in Oslo?")
    assert error is None
    check_wire_invariants(events)
    final = events[-1].response
    assert [item.type for item in final.output] == ["reasoning", "message", "function_call"]
    assert final.output[0].summary[0].text == "Plan."
    assert final.output[0].encrypted_content == "gAAAA-x"
    assert final.output_text == "Let me check."
    assert final.output[2].arguments == '{"city":"Oslo"}'
    text = [e.delta for e in events if e.type == "response.output_text.delta"]
    arguments = [e.delta for e in events if e.type == "response.function_call_arguments.delta"]
    assert (text, arguments) == (["Let me check."], ['{"city":"Oslo"}'])


def test_items_only_in_the_final_response_are_sent_in_order(
    client: OpenAI, upstream: FakeUpstream
) -> None:
    everything = stream_events([message("Hi."), function_call("call_6", "f", "{}")])
    replay(upstream, [everything[0], everything[1], everything[-1]])
    events, error = collect(client, model="smart", input="Hi")
    assert error is None
    check_wire_invariants(events)
    final = events[-1].response
    assert [(item.type, getattr(item, "call_id", None)) for item in final.output] == [
        ("message", None),
        ("function_call", "call_6"),
    ]
    assert final.output_text == "Hi."
    added = [e.item.type for e in events if e.type == "response.output_item.added"]
    assert added == ["message", "function_call"]


def test_snapshot_events_send_only_what_is_missing() -> None:
    emitter = ResponseEmitter(model="m", body={}, finish_reasons={}, stream=True)
    deltas: list[str] = []
    for event in [
        {"type": "text", "key": "a", "text": "Hel"},
        {"type": "text", "key": "a", "text": "Hello", "snapshot": True},  # completes it
        {"type": "text", "key": "a", "text": "Hello", "snapshot": True},  # nothing left
        {"type": "text", "key": "a", "text": "Goodbye", "snapshot": True},  # diverged: kept
        {"type": "end", "key": "a"},
        {"type": "text", "key": "a", "text": "Hello again", "snapshot": True},  # closed: kept
        {"type": "text", "key": "b", "text": "New", "snapshot": True},  # never seen: all
        {"type": "done"},
    ]:
        for out in emitter.feed(event):
            if out["type"] == "response.output_text.delta":
                deltas.append(out["delta"])
    assert deltas == ["Hel", "lo", "New"]
    assert [item["content"][0]["text"] for item in emitter.response["output"]] == [
        "Hello",
        "New",
    ]
