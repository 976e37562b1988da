"""httpx event hooks that time how long a request is blocked on its upstream.

The request hook starts the clock; the response hook stops it when the head arrives and wraps
the body stream, so every later read (a whole body, or each chunk of a stream) adds the time
spent waiting for bytes. What is left of a request's time, less its writes to the client, is
the gateway's own overhead. The hooks find the request through the context variable, so one
pooled client serves every request.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from time import perf_counter
from typing import Any

import httpx

from gateway.observability.context import current_record
from gateway.observability.record import RequestRecord


class TimedStream(httpx.AsyncByteStream):
    """An upstream body whose reads are charged to a request's upstream time."""

    def __init__(self, inner: httpx.AsyncByteStream, record: RequestRecord) -> None:
        self._inner = inner
        self._record = record

    async def __aiter__(self) -> AsyncIterator[bytes]:
        record = self._record
        iterator = self._inner.__aiter__()
        while True:
            started = perf_counter()
            try:
                chunk = await iterator.__anext__()
            except StopAsyncIteration:
                return
            finally:
                record.upstream_seconds += perf_counter() - started
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()


async def on_request(request: httpx.Request) -> None:
    record = current_record()
    if record is not None:
        record.upstream_since = perf_counter()


async def on_response(response: httpx.Response) -> None:
    record = current_record()
    if record is None:
        return
    if record.upstream_since is not None:
        record.upstream_seconds += perf_counter() - record.upstream_since
        record.upstream_since = None
    attempt = record.attempt
    if attempt is not None and not attempt.ended:
        attempt.status = response.status_code
    if isinstance(response.stream, httpx.AsyncByteStream):
        response.stream = TimedStream(response.stream, record)


def event_hooks() -> dict[str, list[Callable[..., Any]]]:
    """The hooks to pass as ``httpx.AsyncClient(event_hooks=...)``."""
    return {"request": [on_request], "response": [on_response]}
