"""Reading a request body with a size limit, straight from the ASGI ``receive``.

A body over the limit is refused as soon as that is known: from ``content-length`` before
anything is read, else once the bytes read pass it. A client that leaves while its body is
being read raises ``ClientDisconnected``, as it does during the work that follows.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.types import Receive, Scope

from gateway.api.disconnect import ClientDisconnected
from gateway.errors import GatewayError

#: Builds the refusal for a body over the limit; gets the declared size when there was one.
TooLarge = Callable[[int | None], GatewayError]


async def read_body(scope: Scope, receive: Receive, limit: int, too_large: TooLarge) -> bytes:
    """The whole body of the request, at most ``limit`` bytes, else ``too_large``'s error."""
    headers: list[tuple[bytes, bytes]] = scope["headers"]  # typed: unpacked by index
    for name, value in headers:
        if name == b"content-length":
            if value.isdigit() and int(value) > limit:
                raise too_large(int(value))
            break
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        chunk: bytes = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise too_large(None)
            chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)
