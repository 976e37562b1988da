"""The pooled HTTP/1.1 client (``gateway.providers.http1``), against real local servers.

Each server is an ``asyncio.start_server`` scripting raw bytes, so edge cases (trailers, a
connection closed at the worst moment, a stalled body) are exact; counting accepted
connections shows when one is reused.
"""

from __future__ import annotations

import asyncio
import datetime
import gzip
import ipaddress
import socket
import ssl
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway.providers.http1 import (
    ConnectError,
    ConnectionPool,
    ConnectTimeout,
    PoolTimeout,
    ProtocolError,
    ReadError,
    ReadTimeout,
    Response,
    Timeouts,
    TransportError,
    WriteTimeout,
)
from tests.support.pieces import read_pieces

# --- Scripted servers -------------------------------------------------------------------------


@dataclass
class Server:
    url: str = ""
    accepted: int = 0
    requests: list[bytes] = field(default_factory=list)
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)


@dataclass
class Peer:
    """One accepted connection, as the server script sees it."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    number: int  # 1 for the server's first connection
    server: Server

    async def request(self) -> bytes | None:
        """The next request (head and content-length body), or None once the client closed."""
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        length = 0
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
        raw = head + await self.reader.readexactly(length)
        self.server.requests.append(raw)
        return raw

    def send(self, data: bytes) -> None:
        self.writer.write(data)


Script = Callable[[Peer], Awaitable[None]]


@asynccontextmanager
async def serve(
    script: Script, *, host: str = "127.0.0.1", tls: ssl.SSLContext | None = None
) -> AsyncIterator[Server]:
    server = Server()

    async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        server.tasks.add(task)
        server.accepted += 1
        try:
            await script(Peer(reader, writer, server.accepted, server))
        except (ConnectionError, asyncio.CancelledError):
            pass  # the client went away, or the test is over
        finally:
            writer.close()

    listener = await asyncio.start_server(accepted, host, 0, ssl=tls)
    port = listener.sockets[0].getsockname()[1]
    netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    server.url = f"{'https' if tls else 'http'}://{netloc}"
    try:
        yield server
    finally:
        listener.close()
        for task in server.tasks:
            task.cancel()
        await asyncio.gather(*server.tasks, return_exceptions=True)
        await listener.wait_closed()


def reply(body: bytes = b"ok", status: str = "200 OK", *headers: str) -> bytes:
    fields = "".join(f"{h}\r\n" for h in headers)
    head = f"HTTP/1.1 {status}\r\ncontent-length: {len(body)}\r\n{fields}\r\n"
    return head.encode() + body


def answering(*responses: bytes) -> Script:
    """A script answering each request on a connection with the next response (the last one
    repeats)."""

    async def script(peer: Peer) -> None:
        count = 0
        while await peer.request() is not None:
            peer.send(responses[min(count, len(responses) - 1)])
            count += 1

    return script


@pytest.fixture
async def pool() -> AsyncIterator[ConnectionPool]:
    pool = ConnectionPool()
    yield pool
    await pool.aclose()


async def call(pool: ConnectionPool, method: str, url: str, **kwargs: Any) -> Response:
    """A request with limits short enough that a hang fails the test instead."""
    kwargs.setdefault("timeouts", Timeouts(connect=1, read=1))
    async with asyncio.timeout(2):
        return await pool.request(method, url, headers=kwargs.pop("headers", {}), **kwargs)


async def get(pool: ConnectionPool, url: str, **kwargs: Any) -> Response:
    return await call(pool, "GET", url, **kwargs)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# --- Requests ---------------------------------------------------------------------------------


async def test_request_line_has_path_and_query_as_given_and_host_with_its_port(
    pool: ConnectionPool,
) -> None:
    async with serve(answering(reply())) as server:
        await (await get(pool, f"{server.url}/v1/models?a=1&b=%20#frag")).read()

    port = server.url.rsplit(":", 1)[1]
    assert server.requests == [
        f"GET /v1/models?a=1&b=%20 HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n\r\n".encode()
    ]


async def test_caller_headers_are_sent_as_given_with_no_defaults_added(
    pool: ConnectionPool,
) -> None:
    headers = {"Authorization": "Bearer sk-1", "x-Custom": "a, b", "content-type": "text/plain"}
    async with serve(answering(reply())) as server:
        await (await call(pool, "POST", server.url + "/", headers=headers, body=b"hi")).read()

    lines = server.requests[0].partition(b"\r\n\r\n")[0].split(b"\r\n")
    assert lines[1:4] == [
        b"Authorization: Bearer sk-1",
        b"x-Custom: a, b",
        b"content-type: text/plain",
    ]
    names = {line.split(b":")[0].lower() for line in lines[1:]}
    assert names == {b"authorization", b"x-custom", b"content-type", b"host", b"content-length"}


async def test_a_caller_host_header_replaces_the_default(pool: ConnectionPool) -> None:
    async with serve(answering(reply())) as server:
        await (await get(pool, server.url + "/", headers={"Host": "api.example.com"})).read()

    assert b"\r\nHost: api.example.com\r\n" in server.requests[0]
    assert server.requests[0].lower().count(b"\r\nhost:") == 1


async def test_a_body_is_framed_by_content_length_never_chunked(pool: ConnectionPool) -> None:
    headers = {"transfer-encoding": "chunked", "Content-Length": "999"}
    async with serve(answering(reply())) as server:
        response = await call(pool, "POST", server.url + "/", headers=headers, body=b"x" * 10)
        await response.read()

    head, _, body = server.requests[0].partition(b"\r\n\r\n")
    assert head.lower().split(b"\r\n")[1:] == [
        b"host: " + server.url[7:].encode(),
        b"content-length: 10",
    ]
    assert body == b"x" * 10


@pytest.mark.parametrize(
    ("method", "length"),
    [("POST", b"0"), ("PUT", b"0"), ("PATCH", b"0"), ("GET", None), ("DELETE", None)],
)
async def test_content_length_zero_for_post_put_patch_without_body(
    pool: ConnectionPool, method: str, length: bytes | None
) -> None:
    async with serve(answering(reply())) as server:
        await (await call(pool, method, server.url + "/")).read()

    sent = [
        line for line in server.requests[0].split(b"\r\n") if line.startswith(b"content-length")
    ]
    assert sent == ([b"content-length: " + length] if length else [])


@pytest.mark.parametrize(
    "headers",
    [
        {"x-a": "v\r\nx-injected: 1"},
        {"x-a": "v\nx-injected: 1"},
        {"x-a": "v\rx"},
        {"x-a\r\nx-injected": "1"},
        {"x-a:": "1"},
    ],
)
async def test_header_names_and_values_with_cr_or_lf_are_refused_before_sending(
    pool: ConnectionPool, headers: dict[str, str]
) -> None:
    async with serve(answering(reply())) as server:
        for _ in range(2):  # a refused head is not remembered as checked
            with pytest.raises(TransportError):
                await get(pool, server.url + "/", headers=headers)

    assert server.accepted == 0
    assert pool.in_flight == 0


async def test_a_repeated_head_is_sent_with_each_request_own_length_and_values(
    pool: ConnectionPool,
) -> None:
    async with serve(answering(reply())) as server:
        for key, body in [("k1", b"a"), ("k1", b"bcd"), ("k1", None), ("k2", b"e"), ("k1", b"")]:
            headers = {"authorization": key}
            await (await call(pool, "POST", server.url + "/p", headers=headers, body=body)).read()

    host = server.url[7:]
    assert server.requests == [
        f"POST /p HTTP/1.1\r\nauthorization: {key}\r\nhost: {host}\r\n"
        f"content-length: {len(body)}\r\n\r\n{body}".encode()
        for key, body in [("k1", "a"), ("k1", "bcd"), ("k1", ""), ("k2", "e"), ("k1", "")]
    ]


@pytest.mark.parametrize("path", ["/a b", "/a\tb", "/a HTTP/1.1\r\nx: y"])
async def test_a_request_target_with_whitespace_is_refused(pool: ConnectionPool, path: str) -> None:
    async with serve(answering(reply())) as server:
        with pytest.raises(TransportError):
            await get(pool, server.url + path)

    assert server.accepted == 0


async def test_default_ports_are_80_for_http_and_443_for_https(
    pool: ConnectionPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    loop = asyncio.get_running_loop()
    connect = loop.create_connection
    dialled: list[tuple[str, int, str | None]] = []

    async def create_connection(factory: Any, host: str, port: int, **kwargs: Any) -> Any:
        dialled.append((host, port, kwargs.get("server_hostname")))
        if kwargs.get("ssl") is None:
            return await connect(factory, "127.0.0.1", target_port)
        raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr(loop, "create_connection", create_connection)
    async with serve(answering(reply())) as server:
        target_port = int(server.url.rsplit(":", 1)[1])
        await (await get(pool, "http://example.test/v1")).read()
        with pytest.raises(ConnectError):
            await get(pool, "https://example.test/v1")

    assert dialled == [("example.test", 80, None), ("example.test", 443, "example.test")]
    assert b"\r\nhost: example.test\r\n" in server.requests[0]


async def test_ipv6_literal_hosts(pool: ConnectionPool) -> None:
    async with serve(answering(reply(b"six")), host="::1") as server:
        response = await get(pool, server.url + "/")
        assert await response.read() == b"six"

    port = server.url.rsplit(":", 1)[1]
    assert f"\r\nhost: [::1]:{port}\r\n".encode() in server.requests[0]


# --- TLS --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for localhost and 127.0.0.1: (cert file, key file)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


@pytest.fixture
def tls_server(certificate: tuple[Path, Path]) -> Iterator[tuple[ssl.SSLContext, list[str | None]]]:
    """A server TLS context, and the SNI names it was sent."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    names: list[str | None] = []

    def sni(_: Any, name: str | None, __: Any) -> None:
        names.append(name)

    context.sni_callback = sni
    yield context, names


async def test_https_with_a_context_trusting_the_server_certificate(
    certificate: tuple[Path, Path], tls_server: tuple[ssl.SSLContext, list[str | None]]
) -> None:
    server_context, sni_names = tls_server
    pool = ConnectionPool(ssl_context=ssl.create_default_context(cafile=str(certificate[0])))
    async with serve(answering(reply(b"secure")), tls=server_context) as server:
        url = server.url.replace("127.0.0.1", "localhost")
        first = await (await get(pool, url + "/")).read()
        second = await (await get(pool, url + "/")).read()
    await pool.aclose()

    assert (first, second) == (b"secure", b"secure")
    assert server.accepted == 1
    assert sni_names == ["localhost"]


async def test_https_certificate_the_default_context_does_not_trust_is_a_connect_error(
    pool: ConnectionPool, tls_server: tuple[ssl.SSLContext, list[str | None]]
) -> None:
    async with serve(answering(reply()), tls=tls_server[0]) as server:
        with pytest.raises(ConnectError, match="certificate verify failed"):
            await get(pool, server.url + "/")

    assert pool.in_flight == 0


# --- Response bodies --------------------------------------------------------------------------


async def test_response_status_reason_and_headers(pool: ConnectionPool) -> None:
    raw = b"HTTP/1.1 201 Created Here\r\nContent-Length: 0\r\nX-A: 1\r\nx-a: 2\r\n\r\n"
    async with serve(answering(raw)) as server:
        response = await get(pool, server.url + "/")
        await response.aclose()

    assert (response.status, response.reason) == (201, "Created Here")
    assert response.headers["x-a"] == "1, 2"
    assert response.headers["X-A"] == response.headers.get("X-a") == "1, 2"
    assert "content-length" in response.headers
    assert response.headers.raw == [(b"Content-Length", b"0"), (b"X-A", b"1"), (b"x-a", b"2")]


async def test_content_length_body(pool: ConnectionPool) -> None:
    async with serve(answering(reply(b"x" * 100_000))) as server:
        response = await get(pool, server.url + "/")
        assert await response.read() == b"x" * 100_000


async def test_chunked_body_with_trailers(pool: ConnectionPool) -> None:
    raw = (
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntrailer: x-checksum\r\n\r\n"
        b"5\r\nhello\r\n6\r\n world\r\n0\r\nx-checksum: abc\r\n\r\n"
    )
    async with serve(answering(raw)) as server:
        response = await get(pool, server.url + "/")
        body = await response.read()
        again = await (await get(pool, server.url + "/")).read()

    assert body == again == b"hello world"
    assert "x-checksum" not in response.headers
    assert server.accepted == 1


async def test_body_delimited_by_the_connection_closing(pool: ConnectionPool) -> None:
    async def script(peer: Peer) -> None:
        await peer.request()
        peer.send(b"HTTP/1.1 200 OK\r\n\r\nuntil ")
        await peer.writer.drain()
        await asyncio.sleep(0.01)
        peer.send(b"close")

    async with serve(script) as server:
        assert await (await get(pool, server.url + "/")).read() == b"until close"
        assert await (await get(pool, server.url + "/")).read() == b"until close"

    assert server.accepted == 2


async def test_head_response_has_no_body_and_keeps_the_connection(pool: ConnectionPool) -> None:
    head = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n"
    async with serve(answering(head, reply(b"hello"))) as server:
        response = await call(pool, "HEAD", server.url + "/")
        assert await response.read() == b""
        assert await (await get(pool, server.url + "/")).read() == b"hello"

    assert response.headers["content-length"] == "5"
    assert server.accepted == 1


@pytest.mark.parametrize("status", ["204 No Content", "304 Not Modified"])
async def test_204_and_304_have_no_body(pool: ConnectionPool, status: str) -> None:
    bodiless = f"HTTP/1.1 {status}\r\ncontent-length: 5\r\n\r\n".encode()
    async with serve(answering(bodiless, reply(b"next"))) as server:
        assert await (await get(pool, server.url + "/")).read() == b""
        assert await (await get(pool, server.url + "/")).read() == b"next"

    assert server.accepted == 1


async def test_interim_1xx_responses_are_skipped(pool: ConnectionPool) -> None:
    raw = b"HTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n" + reply(b"final")
    async with serve(answering(raw)) as server:
        response = await get(pool, server.url + "/")
        body = await response.read()

    assert (response.status, response.reason, body) == (200, "OK", b"final")
    assert "link" not in response.headers


async def test_gzip_body_is_decoded_as_it_streams(pool: ConnectionPool) -> None:
    text = b"".join(b"line %d of the answer\n" % i for i in range(2000))
    packed = gzip.compress(text)
    thirds = [packed[: len(packed) // 3], packed[len(packed) // 3 : -5], packed[-5:]]

    async def script(peer: Peer) -> None:
        while await peer.request() is not None:
            peer.send(
                f"HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\ncontent-length: {len(packed)}\r\n\r\n".encode()
            )
            for third in thirds:
                peer.send(third)
                await peer.writer.drain()
                await asyncio.sleep(0.005)

    async with serve(script) as server:
        response = await get(pool, server.url + "/")
        pieces = await read_pieces(response)
        whole = await (await get(pool, server.url + "/")).read()

    assert len(pieces) > 1
    assert b"".join(pieces) == whole == text


@pytest.mark.parametrize("wbits", [zlib.MAX_WBITS, -zlib.MAX_WBITS], ids=["zlib", "raw"])
async def test_deflate_body_is_decoded(pool: ConnectionPool, wbits: int) -> None:
    packer = zlib.compressobj(wbits=wbits)
    packed = packer.compress(b"deflated " * 100) + packer.flush()
    async with serve(answering(reply(packed, "200 OK", "content-encoding: deflate"))) as server:
        assert await (await get(pool, server.url + "/")).read() == b"deflated " * 100


async def test_streamed_pieces_arrive_before_the_body_ends(pool: ConnectionPool) -> None:
    client_saw_first = asyncio.Event()

    async def script(peer: Peer) -> None:
        await peer.request()
        peer.send(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        await client_saw_first.wait()
        peer.send(b"6\r\nsecond\r\n0\r\n\r\n")

    async with serve(script) as server:
        response = await get(pool, server.url + "/", timeouts=Timeouts(read=1))
        pieces = [await response.read_some()]
        client_saw_first.set()
        await read_pieces(response, pieces)

    assert pieces == [b"first", b"second"]


async def test_a_streamed_body_returns_its_connection_at_the_end(pool: ConnectionPool) -> None:
    async with serve(answering(reply(b"streamed"))) as server:
        response = await get(pool, server.url + "/")
        assert await read_pieces(response) == [b"streamed"]
        assert pool.in_flight == 0
        await (await get(pool, server.url + "/")).read()

    assert server.accepted == 1


# --- The pool ---------------------------------------------------------------------------------


def test_a_pool_can_be_created_outside_the_event_loop() -> None:
    ConnectionPool(max_connections=1)


async def test_connections_are_reused(pool: ConnectionPool) -> None:
    async with serve(answering(reply())) as server:
        for _ in range(3):
            assert await (await get(pool, server.url + "/")).read() == b"ok"

    assert server.accepted == 1


async def test_the_most_recently_used_connection_is_reused_first(pool: ConnectionPool) -> None:
    async def script(peer: Peer) -> None:
        while await peer.request() is not None:
            peer.send(reply(str(peer.number).encode()))

    async with serve(script) as server:
        first, second = await asyncio.gather(
            get(pool, server.url + "/"), get(pool, server.url + "/")
        )
        await first.read()
        latest = await second.read()  # released last
        again = await (await get(pool, server.url + "/")).read()

    assert again == latest


async def test_idle_connections_are_closed_after_keepalive_expiry() -> None:
    pool = ConnectionPool(keepalive_expiry=0.05)
    client_closed = asyncio.Event()

    async def script(peer: Peer) -> None:
        while await peer.request() is not None:
            peer.send(reply())
        client_closed.set()

    async with serve(script) as server:
        await (await get(pool, server.url + "/")).read()
        await asyncio.wait_for(client_closed.wait(), 1)
        await (await get(pool, server.url + "/")).read()
    await pool.aclose()

    assert server.accepted == 2


async def test_a_connection_the_server_closed_while_idle_is_discarded(pool: ConnectionPool) -> None:
    async def script(peer: Peer) -> None:
        await peer.request()
        peer.send(reply())  # keep-alive, but the server closes at once

    async with serve(script) as server:
        await (await get(pool, server.url + "/")).read()
        await asyncio.sleep(0.02)
        assert pool._open == 0  # nothing left open, nothing left idle
        assert await (await get(pool, server.url + "/")).read() == b"ok"

    assert server.accepted == 2


async def test_a_connection_close_response_is_not_reused(pool: ConnectionPool) -> None:
    async with serve(answering(reply(b"ok", "200 OK", "connection: close"))) as server:
        await (await get(pool, server.url + "/")).read()
        await (await get(pool, server.url + "/")).read()

    assert server.accepted == 2


async def test_keep_alive_race_is_retried_once_on_a_fresh_connection(pool: ConnectionPool) -> None:
    async def script(peer: Peer) -> None:
        if peer.number <= 2:
            await peer.request()
            peer.send(reply(b"first"))
            await peer.request()  # the next request meets a connection the server just closed
            return
        await answering(reply(b"retried"))(peer)

    async with serve(script) as server:
        first = await asyncio.gather(get(pool, server.url + "/"), get(pool, server.url + "/"))
        for response in first:
            assert await response.read() == b"first"
        # Two idle connections, both about to die: the retry must not take the other one.
        retried = await call(pool, "POST", server.url + "/", body=b"b")
        assert await retried.read() == b"retried"

    assert server.accepted == 3
    assert server.requests[2] == server.requests[3]


async def test_the_retry_happens_only_once(pool: ConnectionPool) -> None:
    async def script(peer: Peer) -> None:
        await peer.request()
        if peer.number == 1:
            peer.send(reply())
            await peer.request()

    async with serve(script) as server:
        await (await get(pool, server.url + "/")).read()
        with pytest.raises(ProtocolError):
            await get(pool, server.url + "/")

    assert server.accepted == 2


async def test_no_retry_once_the_response_head_has_started(pool: ConnectionPool) -> None:
    async def script(peer: Peer) -> None:
        await peer.request()
        peer.send(reply())
        await peer.request()
        peer.send(b"HTTP/1.1 200 OK\r\ncontent-")

    async with serve(script) as server:
        await (await get(pool, server.url + "/")).read()
        with pytest.raises(ProtocolError):
            await get(pool, server.url + "/")

    assert server.accepted == 1


async def test_no_retry_when_a_new_connection_closes_before_the_head(pool: ConnectionPool) -> None:
    async def script(peer: Peer) -> None:
        await peer.request()

    async with serve(script) as server:
        with pytest.raises(ProtocolError, match="closed before the response head"):
            await get(pool, server.url + "/")

    assert server.accepted == 1


async def test_waiters_for_a_connection_are_served_first_come_first_served() -> None:
    pool = ConnectionPool(max_connections=1)
    async with serve(answering(reply())) as server:

        async def fetch(path: str) -> None:
            await (await get(pool, server.url + path)).read()

        tasks = []
        for path in ["/1", "/2", "/3", "/4"]:
            tasks.append(asyncio.create_task(fetch(path)))
            await asyncio.sleep(0)
        await asyncio.gather(*tasks)
    await pool.aclose()

    assert [r.split(b" ")[1] for r in server.requests] == [b"/1", b"/2", b"/3", b"/4"]
    assert server.accepted == 1


async def test_pool_timeout_when_every_connection_is_busy() -> None:
    pool = ConnectionPool(max_connections=1)
    async with serve(answering(reply())) as server:
        busy = await get(pool, server.url + "/")
        with pytest.raises(PoolTimeout):
            await get(pool, server.url + "/", timeouts=Timeouts(pool=0.05))
        await busy.aclose()
        assert (
            await (await get(pool, server.url + "/", timeouts=Timeouts(pool=0.05))).read() == b"ok"
        )
    await pool.aclose()

    assert pool.in_flight == 0


async def test_max_connections_counts_every_origin() -> None:
    pool = ConnectionPool(max_connections=1)
    a_closed = asyncio.Event()

    async def script_a(peer: Peer) -> None:
        await answering(reply(b"a"))(peer)
        a_closed.set()

    async with serve(script_a) as a, serve(answering(reply(b"b"))) as b:
        busy = await get(pool, a.url + "/")
        with pytest.raises(PoolTimeout):
            await get(pool, b.url + "/", timeouts=Timeouts(pool=0.05))
        await busy.read()  # a's connection goes idle: b's request closes it to make room
        assert await (await get(pool, b.url + "/", timeouts=Timeouts(pool=0.05))).read() == b"b"
        await asyncio.wait_for(a_closed.wait(), 1)
    await pool.aclose()


async def test_closing_an_unread_response_closes_its_connection(pool: ConnectionPool) -> None:
    async def script(peer: Peer) -> None:
        while await peer.request() is not None:
            peer.send(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\npart")

    async with serve(script) as server:
        response = await get(pool, server.url + "/")
        await response.aclose()
        await response.aclose()  # idempotent
        assert pool.in_flight == 0
        await (await get(pool, server.url + "/")).aclose()

    assert server.accepted == 2


@pytest.mark.parametrize("later", [False, True], ids=["same-read", "while-idle"])
async def test_bytes_after_a_complete_response_mean_the_connection_is_not_reused(
    pool: ConnectionPool, later: bool
) -> None:
    async def script(peer: Peer) -> None:
        while await peer.request() is not None:
            peer.send(reply())
            if later:
                await peer.writer.drain()
                await asyncio.sleep(0.01)
            peer.send(b"HTTP/1.1 408 Request Timeout\r\n")

    async with serve(script) as server:
        await (await get(pool, server.url + "/")).read()
        await asyncio.sleep(0.03)
        await (await get(pool, server.url + "/")).read()

    assert server.accepted == 2


async def test_an_answer_before_the_request_body_was_sent_closes_the_connection(
    pool: ConnectionPool,
) -> None:
    async def script(peer: Peer) -> None:
        if peer.number == 1:
            await peer.reader.readuntil(b"\r\n\r\n")
            peer.send(reply(b"too large", "413 Payload Too Large"))
            await asyncio.sleep(10)
        await answering(reply())(peer)

    async with serve(script) as server:
        response = await call(
            pool,
            "POST",
            server.url + "/",
            body=b"x" * (16 * 1024 * 1024),
            timeouts=Timeouts(read=1),
        )
        assert (response.status, await response.read()) == (413, b"too large")
        assert await (await get(pool, server.url + "/")).read() == b"ok"

    assert server.accepted == 2


async def test_in_flight_counts_requests_until_their_response_is_closed(
    pool: ConnectionPool,
) -> None:
    async with serve(answering(reply())) as server:
        assert pool.in_flight == 0
        response = await get(pool, server.url + "/")
        assert pool.in_flight == 1
        await response.read()
        assert pool.in_flight == 0


async def test_a_closed_pool_refuses_requests_and_closes_idle_connections() -> None:
    pool = ConnectionPool()
    client_closed = asyncio.Event()

    async def script(peer: Peer) -> None:
        await answering(reply())(peer)
        client_closed.set()

    async with serve(script) as server:
        await (await get(pool, server.url + "/")).read()
        await pool.aclose()
        await asyncio.wait_for(client_closed.wait(), 1)
        with pytest.raises(TransportError, match="pool closed"):
            await get(pool, server.url + "/")


# --- Flow control -----------------------------------------------------------------------------


async def test_reading_pauses_while_the_body_is_not_consumed(pool: ConnectionPool) -> None:
    size = 16 * 1024 * 1024
    sent_all = asyncio.Event()

    async def script(peer: Peer) -> None:
        await peer.request()
        peer.send(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % size)
        block = b"x" * (1024 * 1024)
        for _ in range(size // len(block)):
            peer.send(block)
            await peer.writer.drain()
        sent_all.set()

    async with serve(script) as server:
        response = await get(pool, server.url + "/")
        await asyncio.sleep(0.1)
        assert not sent_all.is_set()  # the client stopped reading: the server is held back
        assert len(await response.read()) == size
        assert sent_all.is_set()


async def test_a_large_request_body_is_sent_whole(pool: ConnectionPool) -> None:
    body = bytes(range(256)) * 32 * 1024  # 8 MiB

    async def script(peer: Peer) -> None:
        request = await peer.request()
        assert request is not None
        peer.send(reply(str(zlib.crc32(request.partition(b"\r\n\r\n")[2])).encode()))

    async with serve(script) as server:
        response = await call(
            pool, "POST", server.url + "/", body=body, timeouts=Timeouts(write=2, read=2)
        )
        assert await response.read() == str(zlib.crc32(body)).encode()


async def test_write_timeout_when_the_server_does_not_take_the_body(pool: ConnectionPool) -> None:
    async def script(peer: Peer) -> None:
        await peer.reader.readuntil(b"\r\n\r\n")
        await asyncio.sleep(10)

    async with serve(script) as server:
        with pytest.raises(WriteTimeout):
            await call(
                pool,
                "POST",
                server.url + "/",
                body=b"x" * (16 * 1024 * 1024),
                timeouts=Timeouts(write=0.1, read=1),
            )

    assert pool.in_flight == 0


# --- Timeouts and errors ----------------------------------------------------------------------


async def test_read_timeout_waiting_for_the_head(pool: ConnectionPool) -> None:
    async def script(peer: Peer) -> None:
        await peer.request()
        await asyncio.sleep(10)

    async with serve(script) as server:
        with pytest.raises(ReadTimeout):
            await get(pool, server.url + "/", timeouts=Timeouts(read=0.05))

    assert pool.in_flight == 0


async def test_read_timeout_mid_body_closes_the_connection(pool: ConnectionPool) -> None:
    async def script(peer: Peer) -> None:
        while await peer.request() is not None:
            peer.send(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc")

    async with serve(script) as server:
        response = await get(pool, server.url + "/", timeouts=Timeouts(read=0.05))
        with pytest.raises(ReadTimeout):
            await response.read()
        assert pool.in_flight == 0
        response = await get(pool, server.url + "/", timeouts=Timeouts(read=0.05))
        with pytest.raises(ReadTimeout):
            await read_pieces(response)

    assert server.accepted == 2


async def test_each_wait_on_a_reused_connection_has_its_own_read_timeout(
    pool: ConnectionPool,
) -> None:
    """A connection's timer left by an earlier wait neither cuts a later one short nor
    stretches it."""

    async def script(peer: Peer) -> None:
        count = 0
        while await peer.request() is not None:
            count += 1
            if count == 2:
                await asyncio.sleep(0.15)  # past the first wait's deadline, within its own
            if count < 3:
                peer.send(reply())

    async with serve(script) as server:
        await (await get(pool, server.url + "/", timeouts=Timeouts(read=0.2))).read()
        await asyncio.sleep(0.1)
        response = await get(pool, server.url + "/", timeouts=Timeouts(read=1))
        assert await response.read() == b"ok"
        started = asyncio.get_running_loop().time()
        with pytest.raises(ReadTimeout):
            await get(pool, server.url + "/", timeouts=Timeouts(read=0.05))
        assert 0.04 <= asyncio.get_running_loop().time() - started < 0.15

    assert server.accepted == 1


async def test_a_wait_without_a_read_limit_outlasts_an_earlier_wait_limit(
    pool: ConnectionPool,
) -> None:
    async def script(peer: Peer) -> None:
        count = 0
        while await peer.request() is not None:
            count += 1
            if count == 2:
                await asyncio.sleep(0.2)
            peer.send(reply())

    async with serve(script) as server:
        await (await get(pool, server.url + "/", timeouts=Timeouts(read=0.1))).read()
        response = await get(pool, server.url + "/", timeouts=Timeouts())
        assert await response.read() == b"ok"

    assert server.accepted == 1


async def test_connect_timeout(pool: ConnectionPool, monkeypatch: pytest.MonkeyPatch) -> None:
    async def never_connects(*args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(10)

    monkeypatch.setattr(asyncio.get_running_loop(), "create_connection", never_connects)
    with pytest.raises(ConnectTimeout):
        await get(pool, "http://example.test/", timeouts=Timeouts(connect=0.05))

    assert pool.in_flight == 0


async def test_a_refused_connection_is_a_connect_error(pool: ConnectionPool) -> None:
    with pytest.raises(ConnectError):
        await get(pool, f"http://127.0.0.1:{closed_port()}/")


async def test_a_dns_failure_is_a_connect_error(
    pool: ConnectionPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def unknown_host(*args: Any, **kwargs: Any) -> Any:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(asyncio.get_running_loop(), "create_connection", unknown_host)
    with pytest.raises(ConnectError, match="Name or service not known"):
        await get(pool, "http://unknown.test/")


async def test_a_malformed_response_is_a_protocol_error(pool: ConnectionPool) -> None:
    async with serve(answering(b"HTTP/1.1 abc\r\n\r\n")) as server:
        with pytest.raises(ProtocolError, match="malformed response"):
            await get(pool, server.url + "/")


async def test_a_connection_closed_mid_body_is_a_read_error(pool: ConnectionPool) -> None:
    async def script(peer: Peer) -> None:
        await peer.request()
        peer.send(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc")

    async with serve(script) as server:
        response = await get(pool, server.url + "/")
        with pytest.raises(ReadError):
            await response.read()

    assert pool.in_flight == 0


SECRET = "sk-SECRET-123"


def secret_free(error: BaseException) -> bool:
    seen: BaseException | None = error
    while seen is not None:
        if SECRET in str(seen) or SECRET in repr(seen):
            return False
        seen = seen.__cause__ or seen.__context__
    return True


@pytest.mark.parametrize(
    ("script", "headers", "timeouts"),
    [
        (None, {"authorization": f"Bearer {SECRET}"}, Timeouts()),
        (answering(b"garbage\r\n\r\n"), {"x-api-key": SECRET}, Timeouts()),
        (answering(b""), {"x-api-key": SECRET}, Timeouts(read=0.05)),
        (answering(reply()), {"x-api-key": f"{SECRET}\r\nx: 1"}, Timeouts()),
    ],
    ids=["refused", "malformed", "read-timeout", "injection"],
)
async def test_error_messages_hold_no_header_values_nor_the_query(
    pool: ConnectionPool, script: Script | None, headers: dict[str, str], timeouts: Timeouts
) -> None:
    async with serve(script or answering(reply())) as server:
        url = server.url if script else f"http://127.0.0.1:{closed_port()}"
        with pytest.raises(TransportError) as caught:
            await get(pool, f"{url}/v1/models?key={SECRET}", headers=headers, timeouts=timeouts)

    assert secret_free(caught.value)


async def test_unsupported_scheme_error_holds_no_query(pool: ConnectionPool) -> None:
    with pytest.raises(TransportError) as caught:
        await get(pool, f"ftp://example.test/file?key={SECRET}")

    assert secret_free(caught.value)


# --- Cancellation -----------------------------------------------------------------------------


def stray_tasks(server: Server) -> set[asyncio.Task[Any]]:
    return {
        t for t in asyncio.all_tasks() if t is not asyncio.current_task() and t not in server.tasks
    }


async def test_cancelling_while_waiting_for_the_head_closes_the_connection(
    pool: ConnectionPool,
) -> None:
    client_closed = asyncio.Event()

    async def script(peer: Peer) -> None:
        await peer.request()
        if await peer.request() is None:
            client_closed.set()

    async with serve(script) as server:
        requesting = asyncio.create_task(get(pool, server.url + "/"))
        await asyncio.sleep(0.02)
        requesting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await requesting
        await asyncio.wait_for(client_closed.wait(), 1)

        assert pool.in_flight == 0
        assert not stray_tasks(server)


async def test_cancelling_a_body_read_closes_the_connection(pool: ConnectionPool) -> None:
    client_closed = asyncio.Event()

    async def script(peer: Peer) -> None:
        await peer.request()
        peer.send(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc")
        if await peer.request() is None:
            client_closed.set()

    async with serve(script) as server:
        response = await get(pool, server.url + "/")
        reading = asyncio.create_task(response.read())
        await asyncio.sleep(0.02)
        reading.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reading
        await asyncio.wait_for(client_closed.wait(), 1)

        assert pool.in_flight == 0
        assert not stray_tasks(server)


async def test_cancelling_a_stream_closes_the_connection(pool: ConnectionPool) -> None:
    client_closed = asyncio.Event()

    async def script(peer: Peer) -> None:
        await peer.request()
        peer.send(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n")
        if await peer.request() is None:
            client_closed.set()

    async with serve(script) as server:
        response = await get(pool, server.url + "/")

        async def stream() -> None:
            await read_pieces(response)

        streaming = asyncio.create_task(stream())
        await asyncio.sleep(0.02)
        streaming.cancel()
        with pytest.raises(asyncio.CancelledError):
            await streaming
        await asyncio.wait_for(client_closed.wait(), 1)

        assert pool.in_flight == 0
        assert not stray_tasks(server)


# --- Timing -----------------------------------------------------------------------------------


async def test_waited_counts_the_time_spent_awaiting_the_network(pool: ConnectionPool) -> None:
    async def script(peer: Peer) -> None:
        await peer.request()
        await asyncio.sleep(0.05)
        peer.send(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nab")
        await peer.writer.drain()
        await asyncio.sleep(0.05)
        peer.send(b"cd")

    async with serve(script) as server:
        response = await get(pool, server.url + "/")
        head_waited = response.waited
        await response.read()

    assert 0.05 <= head_waited < 0.1
    assert response.waited >= head_waited + 0.05
