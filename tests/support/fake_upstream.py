"""A scripted upstream provider: a real HTTP server on loopback that records and replays.

The gateway under test runs in its own thread or process, so upstreams are faked at the HTTP
layer, never by patching the gateway. Each incoming request is recorded; the answer is the next
scripted ``Reply`` (or what a ``responder`` callable returns). A reply controls the exact bytes:
status, headers, a whole body or chunks sent with a delay, and an optional cut connection::

    with fake_upstream() as upstream:
        upstream.script(Reply.sse_file(FIXTURES / "chat-text.sse"))
        ...  # point a provider's base_url at upstream.url
        assert upstream.requests[0].json()["model"] == "gpt-4o"
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "upstream"


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str  # without the query string
    query: dict[str, str]
    headers: dict[str, str]  # names lower-cased
    body: bytes
    at: float = field(default_factory=time.monotonic)  # when it arrived

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Reply:
    """One scripted answer. ``chunks`` are sent with chunked encoding, ``delay`` apart."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    chunks: list[bytes] | None = None
    delay: float = 0.0
    cut: bool = False  # drop the connection after the chunks, without the final empty chunk
    wait: float = 0.0  # seconds before the status line (a slow first byte)

    @classmethod
    def json(cls, payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Reply:
        return cls(
            status=status,
            headers={"content-type": "application/json", **(headers or {})},
            body=json.dumps(payload).encode(),
        )

    @classmethod
    def stream(
        cls,
        chunks: Iterable[bytes],
        *,
        content_type: str = "text/event-stream",
        delay: float = 0.0,
        cut: bool = False,
    ) -> Reply:
        return cls(
            headers={"content-type": content_type}, chunks=list(chunks), delay=delay, cut=cut
        )

    @classmethod
    def sse(
        cls,
        events: Iterable[Any],
        *,
        named: bool = False,
        done: bool = False,
        delay: float = 0.0,
        cut: bool = False,
    ) -> Reply:
        """SSE frames from dicts (``named``: add ``event: <type>``) or preformatted strings."""
        frames = [sse_frame(event, named=named) for event in events]
        if done:
            frames.append(b"data: [DONE]\n\n")
        return cls.stream(frames, delay=delay, cut=cut)

    @classmethod
    def ndjson(cls, lines: Iterable[Any], *, delay: float = 0.0, cut: bool = False) -> Reply:
        chunks = [json.dumps(line).encode() + b"\n" for line in lines]
        return cls.stream(chunks, content_type="application/x-ndjson", delay=delay, cut=cut)

    @classmethod
    def sse_file(cls, path: Path, *, split: str = "events", delay: float = 0.0) -> Reply:
        """A recorded body replayed byte for byte; ``split``: events | lines | bytes:N."""
        return cls.stream(split_body(path.read_bytes(), split), delay=delay)


def sse_frame(event: Any, *, named: bool = False) -> bytes:
    if isinstance(event, bytes):
        return event
    if isinstance(event, str):
        return event.encode()
    prefix = f"event: {event['type']}\n" if named else ""
    return f"{prefix}data: {json.dumps(event)}\n\n".encode()


def split_body(data: bytes, how: str = "events") -> list[bytes]:
    """Cut a body into network chunks: per SSE event, per line, or every N bytes."""
    if how.startswith("bytes:"):
        size = int(how.split(":", 1)[1])
        return [data[start : start + size] for start in range(0, len(data), size)]
    separator = b"\n" if how == "lines" else (b"\r\n\r\n" if b"\r\n\r\n" in data else b"\n\n")
    pieces = data.split(separator)
    chunks = [piece + separator for piece in pieces[:-1]]
    if pieces[-1]:
        chunks.append(pieces[-1])
    return chunks


Responder = Callable[[RecordedRequest], Reply]


class FakeUpstream:
    """The recorded requests and the script of replies; thread-safe."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.requests: list[RecordedRequest] = []
        self._replies: deque[Reply] = deque()
        self._lock = threading.Lock()
        self.responder: Responder | None = None
        self.open_connections = 0  # connections the gateway holds open right now
        self.default = Reply.json(
            {"error": {"message": "no reply scripted", "type": "test_error"}}, status=599
        )

    def script(self, *replies: Reply) -> None:
        with self._lock:
            self._replies.extend(replies)

    def _next(self, request: RecordedRequest) -> Reply:
        with self._lock:
            self.requests.append(request)
            if self._replies:
                return self._replies.popleft()
        return self.responder(request) if self.responder is not None else self.default

    @property
    def last(self) -> RecordedRequest:
        return self.requests[-1]

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self._replies.clear()


def _handler(upstream: FakeUpstream) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:
            return

        def setup(self) -> None:
            super().setup()
            with upstream._lock:
                upstream.open_connections += 1

        def finish(self) -> None:
            with contextlib.suppress(OSError):
                super().finish()
            with upstream._lock:
                upstream.open_connections -= 1

        def _serve(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
            url = urlsplit(self.path)
            request = RecordedRequest(
                method=self.command,
                path=url.path,
                query=dict(parse_qsl(url.query, keep_blank_values=True)),
                headers={name.lower(): value for name, value in self.headers.items()},
                body=body,
            )
            reply = upstream._next(request)
            try:
                self._write(reply)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True

        def _write(self, reply: Reply) -> None:
            if reply.wait:
                time.sleep(reply.wait)
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            if reply.chunks is None:
                self.send_header("content-length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)
                self.wfile.flush()
                return
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            for index, chunk in enumerate(reply.chunks):
                if index and reply.delay:
                    time.sleep(reply.delay)
                if chunk:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    self.wfile.flush()
            if reply.cut:
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)
                return
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()

        do_GET = do_POST = do_PUT = _serve

    return Handler


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client (the gateway) dropping a pooled connection is normal; stay quiet."""


@contextlib.contextmanager
def fake_upstream() -> Iterator[FakeUpstream]:
    """A fake upstream on ``127.0.0.1:<free port>`` for the duration of the block."""
    upstream = FakeUpstream("")
    server = _Server(("127.0.0.1", 0), _handler(upstream))
    host, port = server.server_address[:2]
    upstream.url = f"http://{host!s}:{port}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield upstream
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
