"""The gemini preset end to end: recorded Gemini answers replayed through a real gateway.

A fake Gemini Developer API (a loopback HTTP server) replays every ``gemini-*`` fixture byte
for byte; the official ``openai`` SDK is the client. Each test asserts what a client sees (the
event sequence, the final Response, the HTTP error) and what the upstream received.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from openai import OpenAI

from tests.support.fake_upstream import FIXTURES, FakeUpstream, Reply, fake_upstream
from tests.support.server import running_gateway

API_KEY = "gemini-test-key"
MODEL = "gemini:gemini-2.5-flash"
TOOL_SIGNATURE = (  # the thoughtSignature recorded in gemini-tool.sse
    json.loads((FIXTURES / "gemini-tool.sse").read_text().split("data: ")[3])["candidates"][0][
        "content"
    ]["parts"][0]["thoughtSignature"]
)

CONFIG = """
default_provider: gemini
providers:
  gemini:
    preset: gemini
    base_url: "{url}"
    api_key: "${{GEMINI_TEST_KEY}}"
    retry: {{attempts: 1}}
    breaker: {{failures: 1000}}
"""


@pytest.fixture(scope="module")
def gateway() -> Iterator[tuple[str, FakeUpstream]]:
    with (
        fake_upstream() as upstream,
        running_gateway(
            CONFIG.format(url=upstream.url), env={"GEMINI_TEST_KEY": API_KEY}
        ) as base_url,
    ):
        yield base_url, upstream


@pytest.fixture
def upstream(gateway: tuple[str, FakeUpstream]) -> FakeUpstream:
    gateway[1].reset()
    return gateway[1]


@pytest.fixture
def client(gateway: tuple[str, FakeUpstream]) -> OpenAI:
    return OpenAI(
        base_url=f"{gateway[0]}/v1",
        api_key="unused",
        max_retries=0,
        _strict_response_validation=True,
    )


def fixture(name: str, *, status: int = 200, split: str = "events") -> Reply:
    """A recorded Gemini body, replayed byte for byte (JSON bodies in one piece)."""
    if name.endswith(".json"):
        body = (FIXTURES / name).read_bytes()
        return Reply(status=status, headers={"content-type": "application/json"}, body=body)
    return Reply.sse_file(FIXTURES / name, split=split)


def chunks(*payloads: dict[str, Any]) -> Reply:
    """Gemini's stream framing: bare ``data:`` lines, CRLF, no end marker."""
    return Reply.stream([f"data: {json.dumps(p)}\r\n\r\n".encode() for p in payloads])


def candidate(parts: list[dict[str, Any]], finish: str | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = {"candidates": [{"content": {"role": "model", "parts": parts}}]}
    if finish:
        answer["candidates"][0]["finishReason"] = finish
    return answer


def collect(client: OpenAI, **body: Any) -> tuple[list[Any], openai.APIError | None]:
    """Every raw stream event, and the error the SDK raised at the ``error`` event, if any."""
    events: list[Any] = []
    try:
        for event in client.responses.create(stream=True, **body):
            events.append(event)
    except openai.APIError as exc:
        return events, exc
    return events, None


def types(events: list[Any]) -> list[str]:
    return [event.type for event in events]


def assert_sequence_numbers(events: list[Any]) -> None:
    assert [event.sequence_number for event in events] == list(range(len(events)))


# --------------------------------------------------------------------------- streams


def test_text_stream_events_final_response_and_upstream_request(
    client: OpenAI, upstream: FakeUpstream
) -> None:
    upstream.script(fixture("gemini-text.sse"))
    events, error = collect(client, model=MODEL, input="Capital of Wyoming?")
    assert error is None
    assert types(events) == [
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
    assert_sequence_numbers(events)
    assert [e.delta for e in events if e.type == "response.output_text.delta"] == [
        "The",
        " capital of Wyoming",
        " is **Cheyenne**.\n",
    ]
    final = events[-1].response
    assert final.status == "completed"
    assert final.model == MODEL
    assert final.output_text == "The capital of Wyoming is **Cheyenne**.\n"
    assert final.usage is not None
    assert (final.usage.input_tokens, final.usage.output_tokens, final.usage.total_tokens) == (
        7,
        10,
        17,
    )
    sent = upstream.last
    assert sent.path == "/v1beta/models/gemini-2.5-flash:streamGenerateContent"
    assert sent.query == {"alt": "sse"}
    assert sent.headers["x-goog-api-key"] == API_KEY
    assert "authorization" not in sent.headers
    assert sent.json() == {
        "contents": [{"role": "user", "parts": [{"text": "Capital of Wyoming?"}]}]
    }


@pytest.mark.parametrize("split", ["lines", "bytes:7"])
def test_stream_survives_any_network_chunking(
    client: OpenAI, upstream: FakeUpstream, split: str
) -> None:
    upstream.script(fixture("gemini-text.sse", split=split))
    with client.responses.stream(model=MODEL, input="Capital of Wyoming?") as stream:
        final = stream.get_final_response()
    assert final.output_text == "The capital of Wyoming is **Cheyenne**.\n"


def test_thinking_stream_is_a_reasoning_summary_then_the_message(
    client: OpenAI, upstream: FakeUpstream
) -> None:
    upstream.script(fixture("gemini-thinking.sse"))
    events, error = collect(
        client, model=MODEL, input="Why is the sky blue?", reasoning={"summary": "auto"}
    )
    assert error is None
    assert types(events)[:5] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.reasoning_summary_part.added",
        "response.reasoning_summary_text.delta",
    ]
    assert types(events).count("response.reasoning_summary_text.delta") == 3
    assert types(events)[-1] == "response.completed"
    assert_sequence_numbers(events)
    final = events[-1].response
    reasoning, message = final.output
    assert reasoning.type == "reasoning"
    assert reasoning.summary[0].text.startswith("**Exploring Sky Color**")
    assert "**Constructing a Concise Answer**" in reasoning.summary[0].text
    assert reasoning.encrypted_content is None  # no signature in this capture
    assert message.type == "message"
    assert final.output_text.startswith("The sky is blue because")
    assert final.usage is not None
    assert final.usage.input_tokens == 10
    assert final.usage.output_tokens == 48 + 540  # candidates + thoughts
    assert final.usage.output_tokens_details.reasoning_tokens == 540
    assert final.usage.total_tokens == 598
    generation = upstream.last.json()["generationConfig"]
    assert generation == {"thinkingConfig": {"includeThoughts": True}}


def test_tool_stream_is_reasoning_then_a_whole_function_call(
    client: OpenAI, upstream: FakeUpstream
) -> None:
    upstream.script(fixture("gemini-tool.sse"))
    events, error = collect(
        client,
        model=MODEL,
        input="How many days until New Year's Eve?",
        tools=[{"type": "function", "name": "now", "parameters": {"type": "object"}}],
    )
    assert error is None
    assert types(events) == [
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
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert_sequence_numbers(events)
    final = events[-1].response
    assert final.status == "completed"  # Gemini's STOP with a call is a completed turn
    reasoning, call = final.output
    assert reasoning.encrypted_content == f"gemini:thoughtSignature:{TOOL_SIGNATURE}"
    assert call.type == "function_call"
    assert (call.name, call.arguments) == ("now", "{}")
    assert call.call_id.startswith("call_")  # Gemini sent no id: the gateway minted one
    added = events[9].item
    assert (added.call_id, added.name) == (call.call_id, "now")
    assert final.usage is not None
    assert (final.usage.input_tokens, final.usage.output_tokens) == (38, 6 + 168)
    assert final.usage.output_tokens_details.reasoning_tokens == 168
    assert final.usage.total_tokens == 212


def test_prompt_blocked_stream_is_incomplete_content_filter(
    client: OpenAI, upstream: FakeUpstream
) -> None:
    upstream.script(fixture("gemini-prompt-blocked.sse"))
    events, error = collect(client, model=MODEL, input="something blocked")
    assert error is None
    assert types(events) == ["response.created", "response.in_progress", "response.incomplete"]
    final = events[-1].response
    assert final.status == "incomplete"
    assert final.incomplete_details is not None
    assert final.incomplete_details.reason == "content_filter"
    assert final.output == []


def test_recitation_stream_keeps_the_text_and_is_incomplete(
    client: OpenAI, upstream: FakeUpstream
) -> None:
    upstream.script(fixture("gemini-recitation.sse"))
    events, error = collect(client, model=MODEL, input="Recite it.")
    assert error is None
    assert types(events)[-1] == "response.incomplete"
    final = events[-1].response
    assert final.incomplete_details is not None
    assert final.incomplete_details.reason == "content_filter"
    assert final.output_text == "".join(f"text{n}" for n in range(1, 9))
    assert final.output[0].status == "incomplete"
    assert final.usage is not None
    assert (final.usage.output_tokens, final.usage.total_tokens) == (261, 270)


def test_max_tokens_stream_is_incomplete_max_output_tokens(
    client: OpenAI, upstream: FakeUpstream
) -> None:
    upstream.script(
        chunks(candidate([{"text": "One, two"}]), candidate([{"text": ", thr"}], "MAX_TOKENS"))
    )
    events, error = collect(client, model=MODEL, input="Count.", max_output_tokens=5)
    assert error is None
    final = events[-1].response
    assert (events[-1].type, final.status) == ("response.incomplete", "incomplete")
    assert final.incomplete_details is not None
    assert final.incomplete_details.reason == "max_output_tokens"
    assert final.output_text == "One, two, thr"
    assert upstream.last.json()["generationConfig"] == {"maxOutputTokens": 5}


def test_stream_error_body_on_a_200_is_an_error_before_any_byte(
    client: OpenAI, upstream: FakeUpstream
) -> None:
    # A failed streaming call answers with a plain, pretty-printed JSON error body.
    upstream.script(fixture("gemini-stream-error-body.json"))
    events, error = collect(client, model=MODEL, input="Describe this image.")
    assert events == []
    assert isinstance(error, openai.BadRequestError)
    assert "INVALID_ARGUMENT: Request contains an invalid argument." in error.message


def test_error_chunk_after_content_fails_the_stream(client: OpenAI, upstream: FakeUpstream) -> None:
    error_chunk = {
        "error": {
            "code": 429,
            "message": "Resource has been exhausted.",
            "status": "RESOURCE_EXHAUSTED",
        }
    }
    upstream.script(chunks(candidate([{"text": "Partial"}]), error_chunk))
    events, error = collect(client, model=MODEL, input="Go on.")
    assert types(events)[-1] == "response.failed"
    final = events[-1].response
    assert final.status == "failed"
    assert final.error is not None
    assert final.error.code == "rate_limit_exceeded"
    assert final.error.message == "RESOURCE_EXHAUSTED: Resource has been exhausted."
    assert final.output[0].content[0].text == "Partial"
    assert isinstance(error, openai.APIError)  # the SDK raises at the `error` event
    assert "Resource has been exhausted." in error.message


def test_stream_without_finish_reason_fails(client: OpenAI, upstream: FakeUpstream) -> None:
    upstream.script(chunks(candidate([{"text": "The"}]), candidate([{"text": " capital"}])))
    events, error = collect(client, model=MODEL, input="Capital?")
    assert types(events)[-1] == "response.failed"
    assert events[-1].response.output_text == "The capital"
    assert isinstance(error, openai.APIError)
    assert "ended before the response was finished" in error.message


def test_connection_cut_mid_stream_fails(client: OpenAI, upstream: FakeUpstream) -> None:
    reply = chunks(candidate([{"text": "The"}]), candidate([{"text": " capital"}]))
    reply.cut = True
    upstream.script(reply)
    events, error = collect(client, model=MODEL, input="Capital?")
    assert types(events)[-1] == "response.failed"
    assert isinstance(error, openai.APIError)


@pytest.mark.parametrize(
    ("reason", "status", "detail"),
    [
        ("SAFETY", "incomplete", "content_filter"),
        ("RECITATION", "incomplete", "content_filter"),
        ("BLOCKLIST", "incomplete", "content_filter"),
        ("PROHIBITED_CONTENT", "incomplete", "content_filter"),
        ("SPII", "incomplete", "content_filter"),
        ("OTHER", "incomplete", "content_filter"),
        ("STOP", "completed", None),
    ],
)
def test_finish_reasons_in_a_stream(
    client: OpenAI, upstream: FakeUpstream, reason: str, status: str, detail: str | None
) -> None:
    upstream.script(chunks(candidate([{"text": "Some text"}], reason)))
    events, error = collect(client, model=MODEL, input="Hi")
    assert error is None
    final = events[-1].response
    assert events[-1].type == f"response.{status}"
    assert final.status == status
    assert (final.incomplete_details.reason if final.incomplete_details else None) == detail


def test_malformed_function_call_fails_the_stream(client: OpenAI, upstream: FakeUpstream) -> None:
    upstream.script(
        chunks(candidate([{"text": "Let me call it."}]), candidate([], "MALFORMED_FUNCTION_CALL"))
    )
    events, error = collect(client, model=MODEL, input="Call it.")
    assert types(events)[-1] == "response.failed"
    final = events[-1].response
    assert final.output_text == "Let me call it."
    assert final.error is not None
    assert final.error.code == "server_error"
    assert "MALFORMED_FUNCTION_CALL" in final.error.message
    assert isinstance(error, openai.APIError)


# --------------------------------------------------------------------------- whole answers


def test_unary_tool_answer(client: OpenAI, upstream: FakeUpstream) -> None:
    upstream.script(fixture("gemini-unary-tool.json"))
    response = client.responses.create(model=MODEL, input="Days until New Year's Eve?")
    assert response.status == "completed"
    reasoning, call = response.output
    assert reasoning.type == "reasoning"
    assert reasoning.summary[0].text.startswith("**Thinking Through the New Year's Eve")
    assert reasoning.encrypted_content is not None
    assert reasoning.encrypted_content.startswith("gemini:thoughtSignature:CtQOAVSoXO74")
    assert (call.type, call.name, call.arguments) == ("function_call", "now", "{}")
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens) == (38, 8 + 501)
    assert response.usage.output_tokens_details.reasoning_tokens == 501
    assert response.usage.total_tokens == 547
    sent = upstream.last
    assert sent.path == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert sent.query == {}


def test_unary_parallel_calls_get_distinct_minted_call_ids(
    client: OpenAI, upstream: FakeUpstream
) -> None:
    upstream.script(fixture("gemini-unary-parallel-calls.json"))
    response = client.responses.create(model=MODEL, input="Do the maths.")
    assert response.status == "completed"
    assert [(item.name, json.loads(item.arguments)) for item in response.output] == [
        ("sum", {"y": 1, "x": 2}),
        ("multiply", {"y": 3, "x": 4}),
        ("subtract", {"y": 5, "x": 6}),
    ]
    call_ids = [item.call_id for item in response.output]
    assert len(set(call_ids)) == 3
    assert all(call_id.startswith("call_") for call_id in call_ids)


def test_unary_safety_keeps_partial_text_and_is_incomplete(
    client: OpenAI, upstream: FakeUpstream
) -> None:
    upstream.script(fixture("gemini-unary-safety.json"))
    response = client.responses.create(model=MODEL, input="Say something unsafe.")
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "content_filter"
    assert response.output_text == "Safety error incoming in 5, 4, 3, 2..."
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens) == (7, 20)


def test_unary_prompt_blocked_is_incomplete(client: OpenAI, upstream: FakeUpstream) -> None:
    blocked = json.loads((FIXTURES / "gemini-prompt-blocked.sse").read_text()[len("data: ") :])
    upstream.script(Reply.json(blocked))
    response = client.responses.create(model=MODEL, input="something blocked")
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "content_filter"
    assert response.output == []


def test_unary_usage_counts_cached_and_tool_use_prompt_tokens(
    client: OpenAI, upstream: FakeUpstream
) -> None:
    answer = candidate([{"text": "Cached answer."}], "STOP")
    answer["usageMetadata"] = {
        "promptTokenCount": 1200,
        "cachedContentTokenCount": 1000,
        "toolUsePromptTokenCount": 30,
        "candidatesTokenCount": 4,
        "thoughtsTokenCount": 16,
        "totalTokenCount": 1250,
    }
    upstream.script(Reply.json(answer))
    usage = client.responses.create(model=MODEL, input="Again?").usage
    assert usage is not None
    assert (usage.input_tokens, usage.output_tokens, usage.total_tokens) == (1230, 20, 1250)
    assert usage.input_tokens_details.cached_tokens == 1000
    assert usage.output_tokens_details.reasoning_tokens == 16


def test_unary_function_call_id_from_gemini_is_kept(client: OpenAI, upstream: FakeUpstream) -> None:
    call = {"functionCall": {"id": "gem-call-7", "name": "now", "args": {"tz": "UTC"}}}
    upstream.script(Reply.json(candidate([call], "STOP")))
    response = client.responses.create(model=MODEL, input="Time?")
    [item] = response.output
    assert (item.call_id, item.arguments) == ("gem-call-7", '{"tz":"UTC"}')


def test_unary_malformed_function_call_is_a_retryable_5xx(
    client: OpenAI, upstream: FakeUpstream
) -> None:
    upstream.script(Reply.json(candidate([], "MALFORMED_FUNCTION_CALL")))
    with pytest.raises(openai.InternalServerError) as caught:
        client.responses.create(model=MODEL, input="Call it.")
    assert caught.value.status_code == 502
    assert "MALFORMED_FUNCTION_CALL" in caught.value.message


def test_unary_error_envelope_on_a_200_is_an_error(client: OpenAI, upstream: FakeUpstream) -> None:
    upstream.script(fixture("gemini-error-400.json"))  # served with status 200
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model=MODEL, input="Hi")
    assert "API key not valid" in caught.value.message


# --------------------------------------------------------------------------- HTTP errors


@pytest.mark.parametrize("stream", [False, True])
def test_invalid_key_400_becomes_a_401(
    client: OpenAI, upstream: FakeUpstream, stream: bool
) -> None:
    upstream.script(fixture("gemini-error-400.json", status=400))
    if stream:
        events, error = collect(client, model=MODEL, input="Hi")
        assert events == []  # refused before any byte: a plain HTTP error, not a stream
    else:
        with pytest.raises(openai.APIStatusError) as caught:
            client.responses.create(model=MODEL, input="Hi")
        error = caught.value
    assert isinstance(error, openai.AuthenticationError)
    assert error.status_code == 401
    assert error.code == "invalid_api_key"
    assert "API key not valid. Please pass a valid API key." in error.message
    assert "key1234" not in error.message  # the debug detail is not relayed


def google_error(code: int, status: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "status": status}}


@pytest.mark.parametrize(
    ("code", "status", "exception", "client_status", "error_code"),
    [
        (429, "RESOURCE_EXHAUSTED", openai.RateLimitError, 429, "rate_limit_exceeded"),
        (403, "PERMISSION_DENIED", openai.PermissionDeniedError, 403, "permission_denied"),
        (404, "NOT_FOUND", openai.NotFoundError, 404, "model_not_found"),
        (400, "FAILED_PRECONDITION", openai.BadRequestError, 400, "failed_precondition"),
        (500, "INTERNAL", openai.InternalServerError, 500, "server_error"),
        (503, "UNAVAILABLE", openai.InternalServerError, 503, "service_unavailable"),
        (504, "DEADLINE_EXCEEDED", openai.InternalServerError, 504, "upstream_timeout"),
    ],
)
def test_google_error_envelope_maps_to_openai_errors(
    client: OpenAI,
    upstream: FakeUpstream,
    code: int,
    status: str,
    exception: type[openai.APIStatusError],
    client_status: int,
    error_code: str,
) -> None:
    upstream.script(Reply.json(google_error(code, status, f"{status} happened."), status=code))
    with pytest.raises(exception) as caught:
        client.responses.create(model=MODEL, input="Hi")
    assert caught.value.status_code == client_status
    assert caught.value.code == error_code
    assert f"{status} happened." in caught.value.message


def test_rate_limit_passes_retry_after_on(client: OpenAI, upstream: FakeUpstream) -> None:
    body = google_error(429, "RESOURCE_EXHAUSTED", "Quota exceeded.")
    upstream.script(Reply.json(body, status=429, headers={"retry-after": "17"}))
    events, error = collect(client, model=MODEL, input="Hi")
    assert events == []
    assert isinstance(error, openai.RateLimitError)
    assert error.response.headers["retry-after"] == "17"


def test_context_too_long_is_classified(client: OpenAI, upstream: FakeUpstream) -> None:
    message = (
        "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576)."
    )
    upstream.script(Reply.json(google_error(400, "INVALID_ARGUMENT", message), status=400))
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model=MODEL, input="A very long text.")
    assert caught.value.code == "context_length_exceeded"


# --------------------------------------------------------------------------- requests refused


def test_https_image_url_is_a_clear_400_and_nothing_is_sent(
    client: OpenAI, upstream: FakeUpstream
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(
            model=MODEL,
            input=[
                {
                    "role": "user",
                    "content": [
                        {"type": "input_text", "text": "What is this?"},
                        {"type": "input_image", "image_url": "https://example.com/cat.png"},
                    ],
                }
            ],
        )
    assert caught.value.code == "unsupported_image_source"
    assert "does not fetch URLs" in caught.value.message
    assert caught.value.param == "input"
    assert upstream.requests == []


def test_output_without_its_call_is_a_clear_400(client: OpenAI, upstream: FakeUpstream) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(
            model=MODEL,
            input=[{"type": "function_call_output", "call_id": "call_lost", "output": "42"}],
        )
    assert caught.value.code == "missing_function_call"
    assert "call_lost" in caught.value.message
    assert upstream.requests == []


def test_model_name_cannot_leave_the_url_path(client: OpenAI, upstream: FakeUpstream) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="gemini:../../v1/files", input="Hi")
    assert caught.value.param == "model"
    assert upstream.requests == []


# --------------------------------------------------------------------------- thoughtSignature


def replay(response: Any, output: str) -> list[Any]:
    """What a client sends next: its input, the response's items as is, the tool's output."""
    items = [item.model_dump(exclude_none=True) for item in response.output]
    call = next(item for item in response.output if item.type == "function_call")
    return [
        {"role": "user", "content": "How many days until New Year's Eve?"},
        *items,
        {"type": "function_call_output", "call_id": call.call_id, "output": output},
    ]


@pytest.mark.parametrize("stream", [True, False])
def test_thought_signature_survives_the_tool_round_trip(
    client: OpenAI, upstream: FakeUpstream, stream: bool
) -> None:
    if stream:
        upstream.script(fixture("gemini-tool.sse"))
        events, _ = collect(client, model=MODEL, input="How many days until New Year's Eve?")
        first = events[-1].response
        signature = TOOL_SIGNATURE
    else:
        upstream.script(fixture("gemini-unary-tool.json"))
        first = client.responses.create(model=MODEL, input="How many days until New Year's Eve?")
        recorded = json.loads((FIXTURES / "gemini-unary-tool.json").read_text())
        signature = recorded["candidates"][0]["content"]["parts"][1]["thoughtSignature"]

    upstream.script(Reply.json(candidate([{"text": "156 days."}], "STOP")))
    second = client.responses.create(
        model=MODEL, input=replay(first, "2025-07-28T10:00:00Z"), stream=False
    )
    assert second.output_text == "156 days."
    contents = upstream.last.json()["contents"]
    assert contents[1] == {
        "role": "model",
        "parts": [{"functionCall": {"name": "now", "args": {}}, "thoughtSignature": signature}],
    }
    assert contents[2] == {
        "role": "user",
        "parts": [
            {"functionResponse": {"name": "now", "response": {"output": "2025-07-28T10:00:00Z"}}}
        ],
    }


def test_signature_after_text_and_on_the_first_of_parallel_calls(
    client: OpenAI, upstream: FakeUpstream
) -> None:
    parts = [
        {"text": "Checking both cities."},
        {
            "functionCall": {"name": "weather", "args": {"city": "Paris"}},
            "thoughtSignature": "U0lH",
        },
        {"functionCall": {"name": "weather", "args": {"city": "Rome"}}},
    ]
    upstream.script(Reply.json(candidate(parts, "STOP")))
    first = client.responses.create(model=MODEL, input="Weather in Paris and Rome?")
    assert [item.type for item in first.output] == [
        "message",
        "reasoning",
        "function_call",
        "function_call",
    ]
    assert first.output[1].encrypted_content == "gemini:thoughtSignature:U0lH"
    assert first.output[1].summary == []

    items = [item.model_dump(exclude_none=True) for item in first.output]
    upstream.script(Reply.json(candidate([{"text": "Rome."}], "STOP")))
    client.responses.create(
        model=MODEL,
        input=[
            {"role": "user", "content": "Weather in Paris and Rome?"},
            *items,
            {"type": "function_call_output", "call_id": first.output[2].call_id, "output": "18C"},
            {"type": "function_call_output", "call_id": first.output[3].call_id, "output": "24C"},
        ],
    )
    contents = upstream.last.json()["contents"]
    assert contents[1]["parts"] == [
        {"text": "Checking both cities."},
        {
            "functionCall": {"name": "weather", "args": {"city": "Paris"}},
            "thoughtSignature": "U0lH",
        },
        {"functionCall": {"name": "weather", "args": {"city": "Rome"}}},
    ]
    assert [part["functionResponse"]["response"] for part in contents[2]["parts"]] == [
        {"output": "18C"},
        {"output": "24C"},
    ]
