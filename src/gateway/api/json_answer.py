"""``JsonAnswer``: a whole Responses API answer, already serialized, as an ASGI app.

What Starlette's ``Response`` does for a ready body, without its header normalization and
media-type passes: the answer's headers are the gateway's own, ASCII. Errors keep Starlette's
``Response``, which the exception handlers' types ask for.
"""

from __future__ import annotations

from starlette.types import Receive, Scope, Send

_JSON = (b"content-type", b"application/json")


class JsonAnswer:
    def __init__(
        self, body: bytes, status: int = 200, headers: dict[str, str] | None = None
    ) -> None:
        self.body = body
        self.status = status
        self.raw_headers = [(b"content-length", str(len(body)).encode()), _JSON]
        if headers:
            self.raw_headers += [
                (name.lower().encode("latin-1"), value.encode("latin-1"))
                for name, value in headers.items()
            ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": self.status, "headers": self.raw_headers}
        )
        await send({"type": "http.response.body", "body": self.body})
