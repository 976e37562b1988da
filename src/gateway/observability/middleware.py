"""The ASGI middleware that opens a ``RequestRecord`` per request and closes it after the last
byte: it sees the real status, the time the client took to accept the bytes, and the end of a
stream, none of which a route handler can see.

It also gives every request, probes included, its request id: the client's ``X-Request-ID``
(cut to 128 characters) or a new one, returned on the answer and carried by the record."""

from __future__ import annotations

import asyncio
from time import perf_counter
from typing import TYPE_CHECKING

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.ids import random_hex
from gateway.observability.context import reset_current, set_current
from gateway.observability.record import RequestRecord

if TYPE_CHECKING:
    from gateway.observability.hub import Observability

#: Error bodies up to this size are read for the error type and code of the log line.
MAX_ERROR_BODY = 65_536


class ObservabilityMiddleware:
    def __init__(self, app: ASGIApp, hub: Observability) -> None:
        self.app = app
        self.hub = hub

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        if scope["path"] in self.hub.quiet_paths:
            await self.app(scope, receive, _with_request_id(send, request_id))
            return
        hub = self.hub
        record = hub.open(scope)
        token = set_current(record)
        json_error = False
        request_id_header = (b"x-request-id", request_id)

        async def observed_send(message: Message) -> None:
            nonlocal json_error
            if message["type"] == "http.response.start":
                status = record.status = int(message["status"])
                extra = hub.response_headers(record)
                message["headers"] = [*message.get("headers", ()), *extra, request_id_header]
                if status >= 400:
                    json_error = any(
                        name == b"content-type" and b"json" in value
                        for name, value in message["headers"]
                    )
            elif json_error and record.error_type is None:
                _read_error(record, message.get("body", b""))
                json_error = False
            started = perf_counter()
            await send(message)
            record.client_seconds += perf_counter() - started

        try:
            await self.app(scope, receive, observed_send)
        except BaseException as exc:
            if record.status == 0:
                # 499: the client went away before the answer (nginx's convention).
                record.status = 499 if isinstance(exc, asyncio.CancelledError) else 500
            record.error(type(exc).__name__)
            # The context is left set so the outer error handler's log line still carries the
            # request id; the task ends with the request.
            raise
        else:
            reset_current(token)
        finally:
            principal = scope["state"].get("principal")  # set by access control, if any
            if principal is not None and record.key_name is None:
                name = getattr(principal, "name", None)
                record.key_name = None if name is None else str(name)
            hub.close(record)


def _request_id(scope: Scope) -> bytes:
    """The client's ``X-Request-ID`` (at most 128 bytes) or a new one; in ``state`` too."""
    request_id = b""
    headers: list[tuple[bytes, bytes]] = scope["headers"]  # typed: mypyc unpacks by index
    for name, value in headers:
        if name == b"x-request-id":
            request_id = value[:128]
            break
    if not request_id:
        request_id = b"req_" + random_hex()[:24].encode()
    scope.setdefault("state", {})["request_id"] = request_id.decode("latin-1")
    return request_id


def _with_request_id(send: Send, request_id: bytes) -> Send:
    async def send_with_id(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", ()), (b"x-request-id", request_id)]
        await send(message)

    return send_with_id


def _read_error(record: RequestRecord, body: bytes) -> None:
    if not body or len(body) > MAX_ERROR_BODY:
        return
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return
    error = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(error, dict):
        error_type, code = error.get("type"), error.get("code")
        record.error(
            str(error_type) if error_type is not None else None,
            str(code) if code is not None else None,
        )
