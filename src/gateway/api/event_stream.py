"""``EventStream``: a ``text/event-stream`` response relayed chunk by chunk.

Starlette's ``StreamingResponse`` runs an anyio task group per response to notice a client
that leaves, which costs more than relaying a short stream. Here ``CancelOnDisconnect``
does that job with one watcher task; a client that leaves cancels the relay, and closing the
body runs its cleanup (the upstream connection, the request's record).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from starlette.types import Receive, Scope, Send

from gateway.api.disconnect import CancelOnDisconnect, ClientDisconnected


class StreamBody(Protocol):
    async def next_chunk(self) -> bytes | None: ...  # None: the body has ended

    async def aclose(self) -> None: ...  # its cleanup, however the stream ended; idempotent


class EventStream:
    def __init__(self, body: StreamBody, headers: Mapping[str, str]) -> None:
        self.body = body
        self.raw_headers = [
            (name.encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = self.body
        try:
            async with CancelOnDisconnect(receive):
                await send(
                    {"type": "http.response.start", "status": 200, "headers": self.raw_headers}
                )
                while (chunk := await body.next_chunk()) is not None:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except ClientDisconnected:
            pass  # nobody to tell; the body's cleanup runs below
        finally:
            await body.aclose()
