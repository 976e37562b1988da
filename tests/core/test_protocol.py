"""The server's protocol: what the app writes in one loop turn reaches the socket as one write.

The transport below it is a recording stand-in for the socket's; the end-to-end tests run the
real uvicorn server with this protocol (as ``gateway serve`` does) over real sockets.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from starlette.types import Receive, Scope, Send

from gateway.api.protocol import FLUSH_BYTES, CoalescingTransport, GatewayHttpProtocol
from tests.support.server import free_port


class SocketTransport(asyncio.Transport):
    """Records each write that would reach the socket, and the order of close/abort."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.events: list[str] = []
        self.closing = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))
        self.events.append("write")

    def close(self) -> None:
        self.closing = True
        self.events.append("close")

    def abort(self) -> None:
        self.closing = True
        self.events.append("abort")

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return 0


async def test_writes_in_one_loop_turn_reach_the_socket_as_one_write() -> None:
    sock = SocketTransport()
    transport = CoalescingTransport(sock, asyncio.get_running_loop())
    transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    transport.write(b"{}")
    assert sock.writes == []  # not before the turn ends
    assert transport.get_write_buffer_size() == 40
    await asyncio.sleep(0)
    assert sock.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"]
    transport.write(b"next")
    await asyncio.sleep(0)
    assert sock.writes[1:] == [b"next"]  # a later turn: a write of its own


async def test_a_large_body_goes_out_at_once_for_flow_control() -> None:
    sock = SocketTransport()
    transport = CoalescingTransport(sock, asyncio.get_running_loop())
    transport.write(b"head")
    transport.write(b"x" * FLUSH_BYTES)
    assert sock.writes == [b"head" + b"x" * FLUSH_BYTES]
    await asyncio.sleep(0)
    assert len(sock.writes) == 1  # nothing left for the end of the turn


async def test_closing_sends_what_was_written_first() -> None:
    sock = SocketTransport()
    transport = CoalescingTransport(sock, asyncio.get_running_loop())
    transport.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")
    transport.close()
    assert sock.events == ["write", "close"]
    assert sock.writes == [b"HTTP/1.1 400 Bad Request\r\n\r\n"]
    await asyncio.sleep(0)
    assert sock.events == ["write", "close"]


async def test_an_abort_or_a_closed_connection_drops_what_was_pending() -> None:
    sock = SocketTransport()
    transport = CoalescingTransport(sock, asyncio.get_running_loop())
    transport.write(b"never sent")
    transport.abort()
    await asyncio.sleep(0)
    assert sock.events == ["abort"]

    gone = SocketTransport()
    transport = CoalescingTransport(gone, asyncio.get_running_loop())
    transport.write(b"too late")
    gone.closing = True  # the peer went away before the turn ended
    await asyncio.sleep(0)
    assert gone.writes == []


# --------------------------------------------------------------------------- a real server


async def _paced_app(scope: Scope, receive: Receive, send: Send) -> None:
    """A whole answer on ``/whole``; on ``/paced``, a chunk, a pause, then the rest."""
    if scope["type"] != "http":
        return
    if scope["path"] == "/whole":
        body = scope["path"].encode()
        headers = [(b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"first;", "more_body": True})
    await asyncio.sleep(0.5)
    await send({"type": "http.response.body", "body": b"second;", "more_body": False})


@pytest.fixture
def server() -> Iterator[int]:
    port = free_port()
    config = uvicorn.Config(
        _paced_app, host="127.0.0.1", port=port, log_level="warning", http=GatewayHttpProtocol
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _read_until(conn: socket.socket, marker: bytes, got: bytes = b"") -> bytes:
    while marker not in got:
        data = conn.recv(65536)
        if not data:
            break
        got += data
    return got


def test_pipelined_requests_are_answered_in_order(server: int) -> None:
    with socket.create_connection(("127.0.0.1", server), timeout=5) as conn:
        request = b"GET /whole HTTP/1.1\r\nhost: x\r\n\r\n"
        conn.sendall(request * 3)
        got = b""
        while got.count(b"/whole") < 3:
            data = conn.recv(65536)
            assert data, f"closed early: {got!r}"
            got += data
    assert got.count(b"HTTP/1.1 200 OK") == 3
    assert got.endswith(b"\r\n\r\n/whole")


def test_a_streamed_chunk_is_not_held_back_until_the_next_one(server: int) -> None:
    with socket.create_connection(("127.0.0.1", server), timeout=5) as conn:
        conn.sendall(b"GET /paced HTTP/1.1\r\nhost: x\r\n\r\n")
        started = time.monotonic()
        got = _read_until(conn, b"first;")
        first_after = time.monotonic() - started
        got = _read_until(conn, b"0\r\n\r\n", got)
    assert first_after < 0.4, f"the first chunk waited {first_after:.2f}s for the second"
    assert b"second;" in got


def _answer_then_close(port: int, request: bytes) -> bytes:
    """Everything the server sends for ``request`` until it closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(request)
        got = b""
        while data := conn.recv(65536):
            got += data
    return got


def test_a_connection_close_request_gets_its_answer_before_the_close(server: int) -> None:
    got = _answer_then_close(server, b"GET /whole HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
    assert got.startswith(b"HTTP/1.1 200 OK") and got.endswith(b"/whole")


def test_a_malformed_request_gets_uvicorns_400_before_the_close(server: int) -> None:
    got = _answer_then_close(server, b"NOT HTTP AT ALL\r\n\r\n")
    assert got.startswith(b"HTTP/1.1 400 Bad Request")
