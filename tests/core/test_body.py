"""A request body is read to its end within a limit, refused as soon as it is known to be too
large, and a client that leaves while sending it is told apart from a bad body."""

from __future__ import annotations

import pytest
from starlette.types import Message, Receive, Scope

from gateway.api.body import read_body
from gateway.api.disconnect import ClientDisconnected
from gateway.errors import GatewayError


def refusal(declared: int | None) -> GatewayError:
    return GatewayError(413, f"too large: {declared}", code="request_too_large")


def request_from(
    messages: list[Message], headers: list[tuple[bytes, bytes]] | None = None
) -> tuple[Scope, Receive, list[Message]]:
    """A request whose ``receive`` hands out ``messages``; the list is what was read."""
    read: list[Message] = []

    async def receive() -> Message:
        message = messages[len(read)]
        read.append(message)
        return message

    scope = {"type": "http", "method": "POST", "path": "/", "headers": headers or []}
    return scope, receive, read


def body(data: bytes, more: bool = False) -> Message:
    return {"type": "http.request", "body": data, "more_body": more}


async def test_pieces_are_joined_in_order() -> None:
    scope, receive, _ = request_from([body(b'{"a":', True), body(b"", True), body(b"1}")])
    assert await read_body(scope, receive, 100, refusal) == b'{"a":1}'


async def test_an_empty_body_is_empty() -> None:
    scope, receive, _ = request_from([{"type": "http.request"}])
    assert await read_body(scope, receive, 100, refusal) == b""


async def test_a_declared_length_over_the_limit_is_refused_before_reading() -> None:
    scope, receive, read = request_from([body(b"x" * 11)], [(b"content-length", b"11")])
    with pytest.raises(GatewayError, match="too large: 11"):
        await read_body(scope, receive, 10, refusal)
    assert read == []


async def test_an_undeclared_body_is_cut_off_once_past_the_limit() -> None:
    scope, receive, read = request_from(
        [body(b"x" * 6, True), body(b"x" * 6, True), body(b"never")]
    )
    with pytest.raises(GatewayError, match="too large: None"):
        await read_body(scope, receive, 10, refusal)
    assert len(read) == 2  # the rest is never read


async def test_a_client_that_leaves_mid_body_is_a_disconnect_not_a_bad_body() -> None:
    scope, receive, _ = request_from([body(b"{", True), {"type": "http.disconnect"}])
    with pytest.raises(ClientDisconnected):
        await read_body(scope, receive, 100, refusal)
