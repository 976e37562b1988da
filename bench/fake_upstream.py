"""A fast fake LLM upstream on raw uvloop protocols and httptools.

Speaks just enough of two wire formats for the benchmark:

* OpenAI Chat Completions: ``POST …/chat/completions`` (JSON with usage, or SSE
  ``data: {chunk}`` events ending with ``data: [DONE]``);
* Anthropic Messages: ``POST …/messages`` (JSON, or SSE ``message_start`` …
  ``message_stop``).

A request asks for a stream when its body contains ``"stream": true``. The number of
content chunks (words, for non-streaming answers) and the delay between chunks come from,
in order of precedence: the ``x-bench-chunks`` / ``x-bench-delay-ms`` headers, the
``chunks`` / ``delay_ms`` query parameters, a model name containing ``bench-c<N>-d<MS>``
(so a gateway that only passes the model through can still choose), and the startup
defaults. The first content chunk is sent with the headers; the others follow ``delay``
apart. With no delay the whole answer is one pre-built write, cached per shape, so the fake
costs a few microseconds per request and is never the bottleneck.

Run: ``python -m bench.fake_upstream --port 9001 [--chunks 10] [--delay-ms 0]``.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import signal
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import cast
from urllib.parse import parse_qs

import httptools
import orjson
import uvloop

from gateway.collector import settle

CREATED = 1_700_000_000
_STREAM_RE = re.compile(rb'"stream"\s*:\s*true')
_USAGE_RE = re.compile(rb'"include_usage"\s*:\s*true')
_MODEL_SHAPE_RE = re.compile(rb'"model"\s*:\s*"[^"]*bench-c(\d+)-d(\d+)')
MAX_CHUNKS = 100_000
MAX_DELAY_MS = 60_000


@dataclass(frozen=True, slots=True)
class Shape:
    """What one answer looks like: format, streaming, chunk count, pacing."""

    kind: str  # "chat" | "anthropic"
    stream: bool
    chunks: int
    delay_ms: int
    usage_chunk: bool = False


def _word(i: int) -> str:
    return f"tok{i} "


# --- Chat Completions -------------------------------------------------------------------


def _chat_json(n: int) -> bytes:
    return orjson.dumps(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": CREATED,
            "model": "bench-model",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "".join(map(_word, range(n)))},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 8, "completion_tokens": n, "total_tokens": 8 + n},
        }
    )


def _chat_chunk(delta: dict[str, object], finish: str | None = None) -> bytes:
    chunk = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": "bench-model",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


def _chat_events(n: int, usage: bool) -> list[bytes]:
    """SSE events: role, then ``n`` content deltas, then finish, usage, [DONE].

    The role/empty-content event rides with the first content delta and the tail rides
    with the last one, so the event list has exactly ``n`` entries (one write each).
    """
    events = [_chat_chunk({"content": _word(i)}) for i in range(n)]
    events[0] = _chat_chunk({"role": "assistant", "content": ""}) + events[0]
    tail = _chat_chunk({}, "stop")
    if usage:
        tail += (
            b"data: "
            + orjson.dumps(
                {
                    "id": "chatcmpl-bench",
                    "object": "chat.completion.chunk",
                    "created": CREATED,
                    "model": "bench-model",
                    "choices": [],
                    "usage": {"prompt_tokens": 8, "completion_tokens": n, "total_tokens": 8 + n},
                }
            )
            + b"\n\n"
        )
    events[-1] += tail + b"data: [DONE]\n\n"
    return events


# --- Anthropic Messages -----------------------------------------------------------------


def _anthropic_json(n: int) -> bytes:
    return orjson.dumps(
        {
            "id": "msg_bench",
            "type": "message",
            "role": "assistant",
            "model": "bench-model",
            "content": [{"type": "text", "text": "".join(map(_word, range(n)))}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": 8, "output_tokens": n},
        }
    )


def _sse(event: str, data: dict[str, object]) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def _anthropic_events(n: int) -> list[bytes]:
    events = [
        _sse(
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": _word(i)},
            },
        )
        for i in range(n)
    ]
    head = _sse(
        "message_start",
        {
            "type": "message_start",
            "message": {
                "id": "msg_bench",
                "type": "message",
                "role": "assistant",
                "content": [],
                "model": "bench-model",
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": 8, "output_tokens": 1},
            },
        },
    ) + _sse(
        "content_block_start",
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    )
    tail = (
        _sse("content_block_stop", {"type": "content_block_stop", "index": 0})
        + _sse(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": n},
            },
        )
        + _sse("message_stop", {"type": "message_stop"})
    )
    events[0] = head + events[0]
    events[-1] += tail
    return events


# --- HTTP framing -----------------------------------------------------------------------

_JSON_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
_SSE_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
    b"transfer-encoding: chunked\r\n"
)


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _conn_header(keep_alive: bool) -> bytes:
    return b"\r\n" if keep_alive else b"connection: close\r\n\r\n"


@lru_cache(maxsize=256)
def _events(shape: Shape) -> tuple[bytes, ...]:
    if shape.kind == "chat":
        return tuple(_chunk(e) for e in _chat_events(shape.chunks, shape.usage_chunk))
    return tuple(_chunk(e) for e in _anthropic_events(shape.chunks))


@lru_cache(maxsize=256)
def _whole(shape: Shape, keep_alive: bool) -> bytes:
    """The full HTTP response for an unpaced answer, built once per shape."""
    if not shape.stream:
        body = _chat_json(shape.chunks) if shape.kind == "chat" else _anthropic_json(shape.chunks)
        return _JSON_HEAD % len(body) + _conn_header(keep_alive) + body
    return _SSE_HEAD + _conn_header(keep_alive) + b"".join(_events(shape)) + b"0\r\n\r\n"


def _error(status: int, message: str) -> bytes:
    body = orjson.dumps({"error": {"message": message, "type": "invalid_request_error"}})
    return (
        b"HTTP/1.1 %d Error\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
        % (
            status,
            len(body),
            body,
        )
    )


# --- server -----------------------------------------------------------------------------


class FakeUpstream(asyncio.Protocol):
    """One connection: parse requests with httptools, answer from the shape cache."""

    def __init__(self, chunks: int, delay_ms: int) -> None:
        self._default_chunks = chunks
        self._default_delay = delay_ms
        self._parser: httptools.HttpRequestParser | None = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._url = b""
        self._body: list[bytes] = []
        self._hdr_chunks: bytes | None = None
        self._hdr_delay: bytes | None = None
        self._closing = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass

    def connection_lost(self, exc: Exception | None) -> None:
        # The parser holds this protocol for its callbacks: dropping it here breaks the cycle,
        # so reference counting frees the connection and the collector never has to.
        self._closing = True
        self._transport = None
        self._parser = None

    def data_received(self, data: bytes) -> None:
        if self._parser is None:  # closed
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(400, "upgrade not supported")
        except httptools.HttpParserError:
            self._fail(400, "bad request")

    # httptools callbacks
    def on_message_begin(self) -> None:
        self._url = b""
        self._body = []
        self._hdr_chunks = self._hdr_delay = None

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(name) > 8 and name[:8].lower() == b"x-bench-":
            key = name.lower()
            if key == b"x-bench-chunks":
                self._hdr_chunks = value
            elif key == b"x-bench-delay-ms":
                self._hdr_delay = value

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        transport = self._transport
        parser = self._parser
        if transport is None or parser is None:
            return
        keep_alive = parser.should_keep_alive()
        path, _, query = self._url.partition(b"?")
        if parser.get_method() != b"POST":
            transport.write(_error(405, "POST only"))
            return
        if path.endswith(b"/chat/completions"):
            kind = "chat"
        elif path.endswith(b"/messages"):
            kind = "anthropic"
        else:
            transport.write(_error(404, f"no route for {path.decode(errors='replace')}"))
            return
        body = b"".join(self._body)
        try:
            chunks, delay = self._pace(query, body)
        except ValueError as exc:
            transport.write(_error(400, str(exc)))
            return
        stream = _STREAM_RE.search(body) is not None
        usage = kind == "chat" and stream and _USAGE_RE.search(body) is not None
        shape = Shape(kind, stream, chunks, delay if stream else 0, usage)
        if not stream or delay == 0 or chunks == 1:
            transport.write(_whole(shape, keep_alive))
            if not keep_alive:
                transport.close()
            return
        self._paced(transport, shape, keep_alive)

    def _pace(self, query: bytes, body: bytes) -> tuple[int, int]:
        chunks, delay = self._default_chunks, self._default_delay
        model = _MODEL_SHAPE_RE.search(body)
        if model is not None:
            chunks, delay = int(model.group(1)), int(model.group(2))
        if query:
            params = parse_qs(query.decode())
            if "chunks" in params:
                chunks = int(params["chunks"][0])
            if "delay_ms" in params:
                delay = int(params["delay_ms"][0])
        if self._hdr_chunks is not None:
            chunks = int(self._hdr_chunks)
        if self._hdr_delay is not None:
            delay = int(self._hdr_delay)
        if not 1 <= chunks <= MAX_CHUNKS or not 0 <= delay <= MAX_DELAY_MS:
            raise ValueError(f"chunks must be 1..{MAX_CHUNKS}, delay 0..{MAX_DELAY_MS} ms")
        return chunks, delay

    def _paced(self, transport: asyncio.Transport, shape: Shape, keep_alive: bool) -> None:
        """Send the head and first chunk now, then one chunk per ``delay`` on timers."""
        events = _events(shape)
        transport.pause_reading()  # one request at a time on this connection
        transport.write(_SSE_HEAD + _conn_header(keep_alive) + events[0])
        delay = shape.delay_ms / 1000
        asyncio.get_running_loop().call_later(
            delay, self._send_paced, transport, events, 1, delay, keep_alive
        )

    def _send_paced(
        self,
        transport: asyncio.Transport,
        events: tuple[bytes, ...],
        i: int,
        delay: float,
        keep_alive: bool,
    ) -> None:
        # A method, not a closure that schedules itself: that would be a reference cycle
        # per stream, left for the collector.
        if self._closing or transport.is_closing():
            return
        if i < len(events) - 1:
            transport.write(events[i])
            asyncio.get_running_loop().call_later(
                delay, self._send_paced, transport, events, i + 1, delay, keep_alive
            )
            return
        transport.write(events[i] + b"0\r\n\r\n")
        if keep_alive:
            transport.resume_reading()
        else:
            transport.close()

    def _fail(self, status: int, message: str) -> None:
        if self._transport is not None:
            self._transport.write(_error(status, message))
            self._transport.close()


async def serve(
    host: str, port: int, chunks: int, delay_ms: int, ready: Callable[[], None]
) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: FakeUpstream(chunks, delay_ms), host, port, backlog=4096, reuse_address=True
    )
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    ready()
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9001)
    parser.add_argument("--chunks", type=int, default=10, help="default content chunks / words")
    parser.add_argument("--delay-ms", type=int, default=0, help="default delay between chunks")
    args = parser.parse_args(argv)
    # A full collection would stall every open stream for tens of ms and show up as the
    # latency of whichever target is being measured: after the relay's 1,000 streams, one
    # came in the middle of the next run. Served connections leave no cycles (a test holds
    # this), so the fake settles its collector as the gateway does and never needs one.
    settle()
    uvloop.run(
        serve(
            args.host,
            args.port,
            args.chunks,
            args.delay_ms,
            lambda: print(f"fake upstream on http://{args.host}:{args.port}", flush=True),
        )
    )


if __name__ == "__main__":
    main()
