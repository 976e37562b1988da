"""``EventStream``: a ``text/event-stream`` response relayed chunk by chunk.

Starlette's ``StreamingResponse`` runs an anyio task group per response to notice a client
that leaves, which costs more than relaying a short stream. Here ``CancelOnDisconnect``
does that job with one watcher task; a client that leaves cancels the relay, and closing the
body iterator runs its cleanup (the upstream connection, the request's record).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping

from starlette.types import Receive, Scope, Send

from gateway.api.disconnect import CancelOnDisconnect, ClientDisconnected


class EventStream:
    def __init__(self, body: AsyncGenerator[bytes, None], headers: Mapping[str, str]) -> None:
        self.body = body
        self.raw_headers = [
            (name.encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            async with CancelOnDisconnect(receive):
                await send(
                    {"type": "http.response.start", "status": 200, "headers": self.raw_headers}
                )
                async for chunk in self.body:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except ClientDisconnected:
            pass  # nobody to tell; the body's cleanup has run (below, if not already)
        finally:
            await self.body.aclose()
