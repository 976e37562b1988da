"""``GatewayAgentClient``: what an agent process needs to talk to a gateway.

One ``httpx.AsyncClient`` is kept for the client's life (connection reuse matters for agents
that poll and call models in a loop). Model calls go through ``POST /v1/responses``; agent
messages through ``/v1/agents/...``. Every non-2xx answer, and every streamed ``error`` event,
raises ``GatewayClientError`` carrying the gateway's OpenAI-shaped error fields::

    async with GatewayAgentClient("http://127.0.0.1:8000", api_key=key) as client:
        answer = await client.complete_response("echo", "Plan the work.")
        await client.send_message("planner", "coder", {"task": answer.text}, kind="handoff")
        page = await client.receive_messages("coder", wait=10)
"""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

import httpx
import orjson

__all__ = [
    "AgentMessage",
    "CompletedResponse",
    "GatewayAgentClient",
    "GatewayClientError",
    "ImageInputError",
    "MessagePage",
    "build_user_message",
]

DEFAULT_BASE_URL = "http://127.0.0.1:8000"
# An SSE inbox stream sends a keep-alive every 15 s; wait well beyond that for the next byte.
STREAM_READ_TIMEOUT = 60.0

_IMAGE_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


class GatewayClientError(Exception):
    """The gateway refused or failed a request.

    ``status`` is the HTTP status (200 for an ``error`` event or a failed response inside a
    stream that had already started); ``type``, ``code`` and ``param`` are the gateway's.
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str | None = None,
        code: str | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(f"{status} {type or 'error'}: {message}")
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param


class ImageInputError(ValueError):
    """An image for ``build_user_message`` is missing, unreadable or not an image."""


@dataclass(frozen=True, slots=True)
class CompletedResponse:
    """A buffered answer: its text, the final Response object and its usage."""

    text: str
    response: dict[str, Any]
    usage: dict[str, Any] | None

    @property
    def id(self) -> str | None:
        value = self.response.get("id")
        return value if isinstance(value, str) else None

    @property
    def status(self) -> str | None:
        value = self.response.get("status")
        return value if isinstance(value, str) else None


@dataclass(frozen=True, slots=True)
class AgentMessage:
    id: str
    sequence: int
    created_at: int
    sender: str
    recipient: str
    channel: str | None
    content: str | dict[str, Any]
    kind: Literal["message", "handoff"]
    thread_id: str | None = None
    reply_to: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AgentMessage:
        return cls(
            id=data["id"],
            sequence=data["sequence"],
            created_at=data["created_at"],
            sender=data["sender"],
            recipient=data["recipient"],
            channel=data.get("channel"),
            content=data["content"],
            kind="handoff" if data.get("kind") == "handoff" else "message",
            thread_id=data.get("thread_id"),
            reply_to=data.get("reply_to"),
            metadata=dict(data.get("metadata") or {}),
        )


@dataclass(frozen=True, slots=True)
class MessagePage:
    """One inbox page; pass ``next_cursor`` as ``after`` to continue where it ended."""

    messages: list[AgentMessage]
    next_cursor: str | None
    has_more: bool


def build_user_message(
    text: str,
    image_paths: Iterable[str | os.PathLike[str]] = (),
    *,
    detail: Literal["low", "high", "auto"] = "auto",
) -> dict[str, Any]:
    """A Responses ``user`` message: the text, then each image inlined as a data URL.

    The image type comes from the file's leading bytes (PNG, JPEG, GIF, WebP), not its name;
    a missing file or anything else raises ``ImageInputError`` before any request is made.
    """
    content: list[dict[str, Any]] = [{"type": "input_text", "text": text}]
    for image_path in image_paths:
        path = Path(image_path)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise ImageInputError(f"image file not found: {path}") from None
        except OSError as exc:
            raise ImageInputError(f"cannot read image file {path}: {exc.strerror}") from None
        media_type = _image_media_type(data)
        if media_type is None:
            raise ImageInputError(f"{path} is not a PNG, JPEG, GIF or WebP image")
        encoded = base64.b64encode(data).decode("ascii")
        content.append(
            {
                "type": "input_image",
                "image_url": f"data:{media_type};base64,{encoded}",
                "detail": detail,
            }
        )
    return {"role": "user", "content": content}


class GatewayAgentClient:
    """An async client for one gateway; use it as ``async with`` or call ``aclose()``."""

    build_user_message = staticmethod(build_user_message)

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        *,
        api_key: str | None = None,
        timeout: float = 60.0,
        headers: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        all_headers = {"Accept": "application/json", **(headers or {})}
        if api_key:
            all_headers["Authorization"] = f"Bearer {api_key}"
        self.timeout = timeout
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers=all_headers,
            timeout=timeout,
            transport=transport,
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- model calls ------------------------------------------------------------------------

    async def stream_response(
        self,
        model: str,
        input: str | list[dict[str, Any]],
        *,
        instructions: str | None = None,
        response_format: Mapping[str, Any] | None = None,
        text: Mapping[str, Any] | None = None,
        reasoning: Mapping[str, Any] | None = None,
        tools: list[dict[str, Any]] | None = None,
        **extra: Any,
    ) -> AsyncIterator[dict[str, Any]]:
        """Yield the Responses SSE events of one streamed answer, parsed, in order.

        ``response_format`` takes either the Chat Completions shape
        (``{"type": "json_schema", "json_schema": {...}}``) or a Responses ``text.format``;
        it becomes ``text.format``. Other controls (``max_output_tokens``, ``temperature``,
        ``tool_choice``, ``metadata``, ``previous_response_id``...) pass through ``extra``.
        """
        body = _response_body(
            model, input, instructions, response_format, text, reasoning, tools, extra
        )
        async with self._http.stream(
            "POST",
            "/v1/responses",
            content=orjson.dumps(body),
            headers={"Content-Type": "application/json"},
        ) as response:
            await _raise_for_status(response)
            async for _event, _id, data in _sse_events(response):
                event = orjson.loads(data)
                if not isinstance(event, dict):
                    continue
                if event.get("type") == "error":
                    raise _stream_error(response.status_code, event)
                yield event

    async def complete_response(
        self,
        model: str,
        input: str | list[dict[str, Any]],
        *,
        instructions: str | None = None,
        response_format: Mapping[str, Any] | None = None,
        text: Mapping[str, Any] | None = None,
        reasoning: Mapping[str, Any] | None = None,
        tools: list[dict[str, Any]] | None = None,
        **extra: Any,
    ) -> CompletedResponse:
        """Stream an answer and return it whole. A ``response.failed`` raises
        ``GatewayClientError``; an incomplete answer is returned (check ``.status``)."""
        deltas: list[str] = []
        final: dict[str, Any] | None = None
        async for event in self.stream_response(
            model,
            input,
            instructions=instructions,
            response_format=response_format,
            text=text,
            reasoning=reasoning,
            tools=tools,
            **extra,
        ):
            kind = event.get("type")
            if kind == "response.output_text.delta":
                deltas.append(str(event.get("delta", "")))
            elif kind in ("response.completed", "response.incomplete"):
                final = event.get("response") or {}
            elif kind == "response.failed":
                failed = event.get("response") or {}
                error = failed.get("error") or {}
                raise GatewayClientError(
                    200,
                    str(error.get("message") or "The response failed."),
                    type="server_error",
                    code=error.get("code"),
                )
        if final is None:
            raise GatewayClientError(
                200, "The stream ended without a final response.", type="server_error"
            )
        output_text = _output_text(final)
        usage = final.get("usage")
        return CompletedResponse(
            text=output_text if output_text is not None else "".join(deltas),
            response=final,
            usage=usage if isinstance(usage, dict) else None,
        )

    # -- agent messages ---------------------------------------------------------------------

    async def send_message(
        self,
        sender: str,
        recipient: str,
        content: str | dict[str, Any],
        *,
        kind: Literal["message", "handoff"] = "message",
        thread_id: str | None = None,
        reply_to: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> AgentMessage:
        """Send to an agent id or a channel name; returns the stored message."""
        body: dict[str, Any] = {
            "sender": sender,
            "recipient": recipient,
            "content": content,
            "kind": kind,
        }
        if thread_id is not None:
            body["thread_id"] = thread_id
        if reply_to is not None:
            body["reply_to"] = reply_to
        if metadata is not None:
            body["metadata"] = metadata
        response = await self._http.post(
            "/v1/agents/messages",
            content=orjson.dumps(body),
            headers={"Content-Type": "application/json"},
        )
        await _raise_for_status(response)
        return AgentMessage.from_dict(response.json())

    async def receive_messages(
        self,
        agent_id: str,
        *,
        after: str | None = None,
        limit: int = 100,
        wait: float = 0.0,
    ) -> MessagePage:
        """One page of ``agent_id``'s inbox after the cursor ``after``; with ``wait``, a long
        poll that returns as soon as a message arrives (the gateway caps it at 30 s)."""
        params: dict[str, str | int | float] = {"limit": limit, "wait": wait}
        if after is not None:
            params["after"] = after
        response = await self._http.get(
            f"/v1/agents/{agent_id}/messages", params=params, timeout=self.timeout + wait
        )
        await _raise_for_status(response)
        data = response.json()
        return MessagePage(
            messages=[AgentMessage.from_dict(item) for item in data["data"]],
            next_cursor=data.get("next_cursor"),
            has_more=bool(data.get("has_more")),
        )

    async def stream_messages(
        self, agent_id: str, *, after: str | None = None, reconnect_delay: float = 0.5
    ) -> AsyncIterator[AgentMessage]:
        """Yield ``agent_id``'s messages as they arrive (SSE), forever.

        When the gateway ends the stream (it does so every few minutes), reconnect after the
        last message seen, so nothing is skipped or repeated.
        """
        cursor = after
        while True:
            params = {"after": cursor} if cursor is not None else {}
            async with self._http.stream(
                "GET",
                f"/v1/agents/{agent_id}/messages/stream",
                params=params,
                headers={"Accept": "text/event-stream"},
                timeout=httpx.Timeout(self.timeout, read=max(self.timeout, STREAM_READ_TIMEOUT)),
            ) as response:
                await _raise_for_status(response)
                async for event, _id, data in _sse_events(response):
                    payload = orjson.loads(data)
                    if event == "error":
                        raise _stream_error(response.status_code, payload)
                    if event == "agent.message":
                        message = AgentMessage.from_dict(payload)
                        cursor = message.id
                        yield message
            await asyncio.sleep(reconnect_delay)


def _response_body(
    model: str,
    input: str | list[dict[str, Any]],
    instructions: str | None,
    response_format: Mapping[str, Any] | None,
    text: Mapping[str, Any] | None,
    reasoning: Mapping[str, Any] | None,
    tools: list[dict[str, Any]] | None,
    extra: Mapping[str, Any],
) -> dict[str, Any]:
    if "stream" in extra:
        raise TypeError("stream_response always streams; do not pass 'stream'")
    body: dict[str, Any] = {"model": model, "input": input}
    if instructions is not None:
        body["instructions"] = instructions
    text_options = dict(text or {})
    if response_format is not None:
        if "format" in text_options:
            raise ValueError("give response_format or text['format'], not both")
        text_options["format"] = _text_format(response_format)
    if text_options:
        body["text"] = text_options
    if reasoning is not None:
        body["reasoning"] = dict(reasoning)
    if tools is not None:
        body["tools"] = tools
    body.update(extra)
    body["stream"] = True
    return body


def _text_format(response_format: Mapping[str, Any]) -> dict[str, Any]:
    """Chat Completions' nested ``json_schema`` becomes the flat Responses ``text.format``."""
    nested = response_format.get("json_schema")
    if response_format.get("type") == "json_schema" and isinstance(nested, Mapping):
        return {"type": "json_schema", **nested}
    return dict(response_format)


def _output_text(response: Mapping[str, Any]) -> str | None:
    """The concatenated ``output_text`` parts of the final response, like the SDK's
    ``response.output_text``; ``None`` when the response carries no output list."""
    output = response.get("output")
    if not isinstance(output, list):
        return None
    parts = []
    for item in output:
        if isinstance(item, dict) and item.get("type") == "message":
            for part in item.get("content") or []:
                if isinstance(part, dict) and part.get("type") == "output_text":
                    parts.append(str(part.get("text", "")))
    return "".join(parts)


async def _sse_events(
    response: httpx.Response,
) -> AsyncIterator[tuple[str | None, str | None, str]]:
    """(event, id, data) per Server-Sent Event; comments and data-less events are skipped."""
    event: str | None = None
    event_id: str | None = None
    data: list[str] = []
    async for line in response.aiter_lines():
        if line == "":
            if data:
                yield event, event_id, "\n".join(data)
            event, event_id, data = None, None, []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value
        elif name == "id":
            event_id = value
    if data:
        yield event, event_id, "\n".join(data)


async def _raise_for_status(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    await response.aread()
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        message = response.text.strip() or response.reason_phrase
        raise GatewayClientError(response.status_code, message)
    raise GatewayClientError(
        response.status_code,
        str(error.get("message") or response.reason_phrase),
        type=error.get("type"),
        code=error.get("code"),
        param=error.get("param"),
    )


def _stream_error(status: int, event: Mapping[str, Any]) -> GatewayClientError:
    nested = event.get("error")
    error = nested if isinstance(nested, Mapping) else event
    return GatewayClientError(
        status,
        str(error.get("message") or "The stream failed."),
        type=error.get("type") if error is not event else "server_error",
        code=error.get("code"),
        param=error.get("param"),
    )


def _image_media_type(data: bytes) -> str | None:
    for signature, media_type in _IMAGE_SIGNATURES:
        if data.startswith(signature):
            return media_type
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None
