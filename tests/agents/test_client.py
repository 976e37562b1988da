"""``GatewayAgentClient``: against a running gateway with the echo provider, and against
scripted transports for what echo cannot show (request bodies, stream failures)."""

from __future__ import annotations

import asyncio
import base64
import struct
import zlib
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from gateway.client import (
    AgentMessage,
    GatewayAgentClient,
    GatewayClientError,
    ImageInputError,
    build_user_message,
)
from tests.support.server import running_gateway

CONFIG = """
default_provider: echo
providers:
  echo: {preset: echo}
agents:
  channels:
    review:
      members: [planner, coder]
"""


def tiny_png() -> bytes:
    """A valid 1x1 PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00\xff\x00\x00")
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


@pytest.fixture(scope="module")
def gateway_url() -> Iterator[str]:
    with running_gateway(CONFIG) as base_url:
        yield base_url


@pytest.fixture
async def client(gateway_url: str) -> AsyncIterator[GatewayAgentClient]:
    async with GatewayAgentClient(gateway_url, timeout=10) as instance:
        yield instance


def scripted(
    handler: Callable[[httpx.Request], httpx.Response], seen: list[httpx.Request] | None = None
) -> GatewayAgentClient:
    def record(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            request.read()
            seen.append(request)
        return handler(request)

    return GatewayAgentClient(
        "http://gateway.test", api_key="sk-test", transport=httpx.MockTransport(record)
    )


def sse(*events: dict[str, Any]) -> bytes:
    return b"".join(
        b"event: " + str(e["type"]).encode() + b"\ndata: " + orjson.dumps(e) + b"\n\n"
        for e in events
    )


# -- model calls against the echo provider -----------------------------------------------


async def test_complete_response_returns_text_final_response_and_usage(
    client: GatewayAgentClient,
) -> None:
    answer = await client.complete_response("echo", "hand this over please")

    assert answer.text == "hand this over please"
    assert answer.status == "completed"
    assert answer.response["object"] == "response"
    assert answer.id is not None and answer.id.startswith("resp_")
    assert answer.usage is not None
    assert answer.usage["output_tokens"] > 0
    assert (
        answer.usage["total_tokens"] == answer.usage["input_tokens"] + answer.usage["output_tokens"]
    )


async def test_stream_response_yields_the_parsed_event_sequence(
    client: GatewayAgentClient,
) -> None:
    events = [event async for event in client.stream_response("echo", "one two three")]

    types = [event["type"] for event in events]
    assert types[0] == "response.created"
    assert types[-1] == "response.completed"
    assert "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta") == (
        "one two three"
    )
    assert [event["sequence_number"] for event in events] == list(range(len(events)))


async def test_an_incomplete_answer_is_returned_with_its_status(
    client: GatewayAgentClient,
) -> None:
    answer = await client.complete_response(
        "echo", "one two three four five six", max_output_tokens=2
    )

    assert answer.status == "incomplete"
    assert answer.response["incomplete_details"] == {"reason": "max_output_tokens"}
    assert "one two three four five six".startswith(answer.text.strip())


async def test_a_multimodal_message_built_from_files_is_accepted(
    client: GatewayAgentClient, tmp_path: Path
) -> None:
    image = tmp_path / "diagram.png"
    image.write_bytes(tiny_png())

    answer = await client.complete_response(
        "echo", [build_user_message("describe the diagram", [image])]
    )

    assert answer.text == "describe the diagram"


async def test_a_gateway_error_raises_with_its_fields(client: GatewayAgentClient) -> None:
    with pytest.raises(GatewayClientError) as caught:
        await client.complete_response("echo", "hi", temperature="hot")

    error = caught.value
    assert error.status == 400
    assert error.type == "invalid_request_error"
    assert error.message
    assert error.param == "temperature"


# -- request bodies and stream failures, on scripted transports -----------------------------


async def test_controls_are_forwarded_in_the_responses_request_body() -> None:
    seen: list[httpx.Request] = []
    completed = {
        "type": "response.completed",
        "response": {"id": "resp_1", "status": "completed", "output": [], "usage": None},
    }
    client = scripted(lambda request: httpx.Response(200, content=sse(completed)), seen)
    schema = {"type": "object", "properties": {"plan": {"type": "string"}}}

    async with client:
        await client.complete_response(
            "smart",
            "plan it",
            instructions="be brief",
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "plan", "schema": schema, "strict": True},
            },
            text={"verbosity": "low"},
            reasoning={"effort": "high", "summary": "auto"},
            tools=[{"type": "function", "name": "run", "parameters": {}}],
            max_output_tokens=300,
            metadata={"agent": "planner"},
        )

    (request,) = seen
    assert request.url.path == "/v1/responses"
    assert request.headers["authorization"] == "Bearer sk-test"
    assert orjson.loads(request.content) == {
        "model": "smart",
        "input": "plan it",
        "instructions": "be brief",
        "text": {
            "verbosity": "low",
            "format": {"type": "json_schema", "name": "plan", "schema": schema, "strict": True},
        },
        "reasoning": {"effort": "high", "summary": "auto"},
        "tools": [{"type": "function", "name": "run", "parameters": {}}],
        "max_output_tokens": 300,
        "metadata": {"agent": "planner"},
        "stream": True,
    }


async def test_response_format_and_text_format_together_are_refused() -> None:
    client = scripted(lambda request: httpx.Response(500))
    async with client:
        with pytest.raises(ValueError, match="not both"):
            await client.complete_response(
                "echo",
                "x",
                response_format={"type": "json_object"},
                text={"format": {"type": "text"}},
            )


async def test_a_streamed_error_event_raises() -> None:
    error = {
        "type": "error",
        "code": "rate_limit_exceeded",
        "message": "slow down",
        "param": None,
        "error": {
            "type": "rate_limit_error",
            "code": "rate_limit_exceeded",
            "message": "slow down",
            "param": None,
        },
    }
    created = {"type": "response.created", "response": {"id": "resp_1"}}
    client = scripted(lambda request: httpx.Response(200, content=sse(created, error)))

    async with client:
        with pytest.raises(GatewayClientError) as caught:
            await client.complete_response("echo", "x")

    assert (caught.value.type, caught.value.code, caught.value.message) == (
        "rate_limit_error",
        "rate_limit_exceeded",
        "slow down",
    )


async def test_a_failed_response_raises() -> None:
    failed = {
        "type": "response.failed",
        "response": {
            "id": "resp_1",
            "status": "failed",
            "error": {"code": "server_error", "message": "upstream broke"},
        },
    }
    client = scripted(lambda request: httpx.Response(200, content=sse(failed)))

    async with client:
        with pytest.raises(GatewayClientError) as caught:
            await client.complete_response("echo", "x")

    assert caught.value.code == "server_error"
    assert caught.value.message == "upstream broke"


async def test_a_non_json_error_body_still_raises_a_client_error() -> None:
    client = scripted(lambda request: httpx.Response(502, text="Bad Gateway from the proxy"))

    async with client:
        with pytest.raises(GatewayClientError) as caught:
            await client.receive_messages("coder")

    assert caught.value.status == 502
    assert caught.value.message == "Bad Gateway from the proxy"


# -- images ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "media_type"),
    [
        (tiny_png(), "image/png"),
        (b"\xff\xd8\xff\xe0" + b"\x00" * 16, "image/jpeg"),
        (b"GIF89a" + b"\x00" * 16, "image/gif"),
        (b"RIFF\x10\x00\x00\x00WEBPVP8 " + b"\x00" * 8, "image/webp"),
    ],
)
def test_build_user_message_inlines_images_as_data_urls(
    tmp_path: Path, data: bytes, media_type: str
) -> None:
    path = tmp_path / "picture.bin"  # the type comes from the bytes, not the name
    path.write_bytes(data)

    message = build_user_message("what is this?", [path])

    assert message == {
        "role": "user",
        "content": [
            {"type": "input_text", "text": "what is this?"},
            {
                "type": "input_image",
                "image_url": f"data:{media_type};base64,{base64.b64encode(data).decode()}",
                "detail": "auto",
            },
        ],
    }


def test_build_user_message_without_images_is_text_only() -> None:
    assert GatewayAgentClient.build_user_message("hi") == {
        "role": "user",
        "content": [{"type": "input_text", "text": "hi"}],
    }


def test_a_missing_image_is_a_clear_value_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.png"

    with pytest.raises(ImageInputError, match=r"not found: .*nope\.png"):
        build_user_message("x", [missing])
    assert issubclass(ImageInputError, ValueError)


def test_a_file_that_is_not_an_image_is_refused_whatever_its_name(tmp_path: Path) -> None:
    fake = tmp_path / "notes.png"
    fake.write_text("just text")

    with pytest.raises(ImageInputError, match=r"notes\.png is not a PNG, JPEG, GIF or WebP"):
        build_user_message("x", [fake])


def test_a_directory_is_not_an_image(tmp_path: Path) -> None:
    with pytest.raises(ImageInputError):
        build_user_message("x", [tmp_path])


# -- agent messages ---------------------------------------------------------------------


async def test_send_and_receive_messages_through_the_gateway(
    client: GatewayAgentClient,
) -> None:
    start = await client.receive_messages("coder")
    cursor = start.next_cursor

    sent = await client.send_message(
        "planner",
        "review",
        {"task": "implement"},
        kind="handoff",
        thread_id="t-9",
        metadata={"step": 1},
    )
    page = await client.receive_messages("coder", after=cursor, wait=2)

    assert isinstance(sent, AgentMessage)
    assert sent.channel == "review"
    assert sent.kind == "handoff"
    assert page.messages == [sent]
    assert page.next_cursor == sent.id
    assert page.has_more is False


async def test_receive_messages_long_polls(client: GatewayAgentClient) -> None:
    cursor = (await client.receive_messages("planner", limit=1000)).next_cursor

    async def reply_later() -> AgentMessage:
        await asyncio.sleep(0.3)
        return await client.send_message("coder", "planner", "done", reply_to="amsg_1_1")

    replying = asyncio.create_task(reply_later())
    page = await client.receive_messages("planner", after=cursor, wait=5)

    assert page.messages == [await replying]
    assert page.messages[0].reply_to == "amsg_1_1"


async def test_a_refused_message_raises_with_the_gateway_error(
    client: GatewayAgentClient,
) -> None:
    with pytest.raises(GatewayClientError) as caught:
        await client.send_message("planner", "nowhere", "hello")

    assert caught.value.status == 404
    assert caught.value.code == "recipient_not_found"
    assert caught.value.param == "recipient"


async def test_stream_messages_pushes_messages_as_they_arrive(
    client: GatewayAgentClient,
) -> None:
    cursor = (await client.receive_messages("coder", limit=1000)).next_cursor

    async def send_later() -> list[AgentMessage]:
        await asyncio.sleep(0.2)
        return [await client.send_message("planner", "coder", f"p{i}") for i in range(2)]

    sending = asyncio.create_task(send_later())
    received: list[AgentMessage] = []
    async for message in client.stream_messages("coder", after=cursor):
        received.append(message)
        if len(received) == 2:
            break

    assert received == await sending


async def test_stream_messages_reconnects_after_the_last_message_seen() -> None:
    seen: list[httpx.Request] = []
    messages = [
        {
            "id": f"amsg_1_{n}",
            "object": "agent.message",
            "created_at": 1,
            "sequence": n,
            "sender": "planner",
            "recipient": "coder",
            "channel": None,
            "content": f"m{n}",
            "kind": "message",
            "thread_id": None,
            "reply_to": None,
            "metadata": {},
        }
        for n in (1, 2)
    ]

    def handler(request: httpx.Request) -> httpx.Response:
        message = messages[len(seen) - 1]
        body = b"retry: 1000\n\nid: " + message["id"].encode()
        body += b"\nevent: agent.message\ndata: " + orjson.dumps(message) + b"\n\n"
        return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})

    client = scripted(handler, seen)
    received = []
    async with client:
        async for message in client.stream_messages("coder", reconnect_delay=0):
            received.append(message.content)
            if len(received) == 2:
                break

    assert received == ["m1", "m2"]
    assert "after" not in seen[0].url.params
    assert seen[1].url.params["after"] == "amsg_1_1"


async def test_the_http_client_is_closed_on_exit(gateway_url: str) -> None:
    async with GatewayAgentClient(gateway_url) as client:
        await client.receive_messages("coder")

    with pytest.raises(RuntimeError):
        await client.receive_messages("coder")
