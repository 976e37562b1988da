"""The upstream client for ``builtin://NAME`` base URLs: calls an ASGI app in this process.

It answers like ``http1.ConnectionPool`` (same ``request`` signature, same response surface,
same error classes), so the request flow never knows whether the upstream is across the
network or the built-in echo. The app runs in a task of its own, as it would in a server, and
streams its body to the caller piece by piece.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, MutableMapping
from time import perf_counter
from typing import Any
from urllib.parse import unquote, urlsplit

from gateway.providers.builtin import ASGIApp
from gateway.providers.http1 import NO_TIMEOUTS, Headers, ProtocolError, ReadTimeout, Timeouts

_END = b""  # the queue's end-of-body marker (empty pieces are never queued)


class InProcessResponse:
    def __init__(self, client: InProcessClient, timeouts: Timeouts) -> None:
        self.status = 0
        self.reason = ""
        self.headers = Headers([])
        self.waited = 0.0
        self._client: InProcessClient | None = client
        self._task: asyncio.Task[None] | None = None  # the app serving this response
        self._read_timeout = timeouts.read
        self._pieces: asyncio.Queue[bytes | BaseException] = asyncio.Queue()

    async def read(self) -> bytes:
        pieces: list[bytes] = []
        while piece := await self.read_some():
            pieces.append(piece)
        return b"".join(pieces)

    async def read_some(self) -> bytes:
        if self._client is None:  # ended, read or closed
            return _END
        started = perf_counter()
        try:
            async with asyncio.timeout(self._read_timeout):
                piece = await self._pieces.get()
        except TimeoutError:
            await self.aclose()
            raise ReadTimeout("the built-in upstream sent nothing in time") from None
        except BaseException:  # cancelled: abandoned mid-body
            await self.aclose()
            raise
        finally:
            self.waited += perf_counter() - started
        if isinstance(piece, BaseException):
            await self.aclose()
            raise ProtocolError(f"the built-in upstream failed: {type(piece).__name__}")
        if piece is _END:
            await self.aclose()
        return piece

    async def aclose(self) -> None:
        if self._client is not None:
            self._client.in_flight -= 1
            self._client = None
        if self._task is not None and not self._task.done():
            self._task.cancel()


class InProcessClient:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.in_flight = 0

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        body: bytes | None = None,
        timeouts: Timeouts = NO_TIMEOUTS,
    ) -> InProcessResponse:
        parts = urlsplit(url)
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": unquote(parts.path),
            "raw_path": parts.path.encode(),
            "query_string": parts.query.encode(),
            "root_path": "",
            "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
            "server": (parts.hostname or "builtin", 80),
            "client": ("127.0.0.1", 0),
        }
        loop = asyncio.get_running_loop()
        head: asyncio.Future[None] = loop.create_future()
        response = InProcessResponse(self, timeouts)
        response._task = loop.create_task(self._serve(scope, body or b"", head, response))
        self.in_flight += 1
        started = perf_counter()
        try:
            await head
        except BaseException:
            await response.aclose()
            raise
        finally:
            response.waited += perf_counter() - started
        return response

    async def _serve(
        self,
        scope: dict[str, Any],
        body: bytes,
        head: asyncio.Future[None],
        response: InProcessResponse,
    ) -> None:
        received = False

        async def receive() -> MutableMapping[str, Any]:
            nonlocal received
            if received:
                await asyncio.Future()  # no more request messages: wait to be cancelled
            received = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                response.status = int(message["status"])
                response.headers = Headers(list(message.get("headers", [])))
                head.set_result(None)
            elif message["type"] == "http.response.body":
                piece = bytes(message.get("body", b""))
                if piece:
                    response._pieces.put_nowait(piece)
                if not message.get("more_body", False):
                    response._pieces.put_nowait(_END)

        try:
            await self.app(scope, receive, send)
        except Exception as exc:
            if not head.done():
                failure = f"the built-in upstream failed: {type(exc).__name__}"
                head.set_exception(ProtocolError(failure))
            else:
                response._pieces.put_nowait(exc)
        else:
            if not head.done():
                head.set_exception(ProtocolError("the built-in upstream sent no response"))

    async def aclose(self) -> None:
        """Nothing to close: the apps live with the process."""
