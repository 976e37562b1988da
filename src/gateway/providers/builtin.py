"""In-process upstreams reachable as ``builtin://NAME``.

The ``echo`` upstream speaks OpenAI Chat Completions (whole and streamed), so the ``echo``
preset is an ordinary YAML preset over the same adapter engine as every real provider: it
answers with the last user text, word by word, with usage counts, honouring ``max_tokens``.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

import orjson

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_WORDS = re.compile(r"\S+\s*|\s+")


def _text_of(message: Any) -> str:
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and part.get("type") == "text"
        )
    return ""


def _last_user_text(messages: list[Any]) -> str:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return _text_of(message)
    return ""


def _count_tokens(text: str) -> int:
    return len(text.split())


def echo_answer(body: dict[str, Any]) -> tuple[list[str], str, dict[str, int]]:
    """Word-sized deltas of the last user text, the finish reason and usage."""
    messages = body.get("messages") or []
    text = _last_user_text(messages)
    words = _WORDS.findall(text) or [""]
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    finish = "stop"
    if isinstance(limit, int) and limit < len(words):
        words, finish = words[:limit], "length"
    prompt = sum(_count_tokens(_text_of(message)) for message in messages)
    completion = sum(1 for word in words if word.strip())
    usage = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    return words, finish, usage


async def echo_app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    raw = b""
    while True:
        message = await receive()
        raw += message.get("body", b"")
        if not message.get("more_body"):
            break
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        await _json(
            send, 400, {"error": {"message": "invalid JSON", "type": "invalid_request_error"}}
        )
        return
    words, finish, usage = echo_answer(body)
    created = int(time.time())
    model = str(body.get("model") or "echo")
    if not body.get("stream"):
        await _json(
            send,
            200,
            {
                "id": "chatcmpl-echo",
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "".join(words)},
                        "finish_reason": finish,
                    }
                ],
                "usage": usage,
            },
        )
        return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/event-stream")],
        }
    )
    async for chunk in _chunks(words, finish, usage, model, created):
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _chunks(
    words: list[str], finish: str, usage: dict[str, int], model: str, created: int
) -> AsyncIterator[bytes]:
    base = {
        "id": "chatcmpl-echo",
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
    }
    yield _data(
        {
            **base,
            "choices": [
                {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
            ],
        }
    )
    for word in words:
        yield _data(
            {**base, "choices": [{"index": 0, "delta": {"content": word}, "finish_reason": None}]}
        )
    yield _data({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
    yield _data({**base, "choices": [], "usage": usage})
    yield b"data: [DONE]\n\n"


def _data(payload: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


async def _json(send: Send, status: int, payload: dict[str, Any]) -> None:
    body = orjson.dumps(payload)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


BUILTIN_UPSTREAMS: dict[str, ASGIApp] = {"echo": echo_app}
