"""One upstream attempt: send the rendered request, turn the answer into canonical events.

Errors before the answer starts (connection refused, HTTP 4xx/5xx) raise ``UpstreamError`` so
the caller can retry, fall back or answer with a plain JSON error. Errors after the stream has
started become canonical ``error`` events, so the emitter ends the client's stream properly.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import orjson

from gateway.canonical import CanonicalEvent, CanonicalRequest
from gateway.errors import GatewayError
from gateway.providers.adapter import ProviderAdapter, UpstreamFailure
from gateway.providers.decoding import make_decoder


class UpstreamError(Exception):
    def __init__(self, failure: UpstreamFailure) -> None:
        super().__init__(failure.error.message)
        self.failure = failure


def _transport_failure(adapter: ProviderAdapter, exc: Exception) -> UpstreamError:
    if isinstance(exc, httpx.TimeoutException):
        error = GatewayError(
            504,
            f"Upstream provider '{adapter.name}' timed out ({type(exc).__name__}).",
            type="timeout_error",
            code="upstream_timeout",
        )
        return UpstreamError(UpstreamFailure(error, "timeout"))
    error = GatewayError(
        502,
        f"Could not reach upstream provider '{adapter.name}': {type(exc).__name__}.",
        type="server_error",
        code="upstream_unreachable",
    )
    return UpstreamError(UpstreamFailure(error, "server_error"))


def _bad_body(adapter: ProviderAdapter) -> UpstreamError:
    error = GatewayError(
        502,
        f"Upstream provider '{adapter.name}' sent a body that is not JSON.",
        type="server_error",
        code="bad_gateway",
    )
    return UpstreamError(UpstreamFailure(error, "server_error"))


async def call_whole(
    adapter: ProviderAdapter,
    client: httpx.AsyncClient,
    req: CanonicalRequest,
    *,
    timeout: httpx.Timeout | None = None,
) -> list[CanonicalEvent]:
    """A non-streaming attempt: the whole answer as canonical events."""
    upstream = adapter.build_request(req)
    try:
        response = await client.request(
            upstream.method,
            upstream.url,
            headers=upstream.headers,
            content=upstream.body,
            timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
        )
    except httpx.HTTPError as exc:
        raise _transport_failure(adapter, exc) from None
    if response.status_code >= 400:
        raise UpstreamError(
            adapter.classify_error(response.status_code, response.headers, response.content)
        )
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        raise _bad_body(adapter) from None
    return adapter.events_from_body(body, req)


@dataclass
class UpstreamStream:
    """An upstream stream whose status line has been checked; iterate ``batches()`` once."""

    adapter: ProviderAdapter
    response: httpx.Response
    req: CanonicalRequest

    async def batches(self) -> AsyncIterator[list[CanonicalEvent]]:
        """The canonical events of each network read, together: one client write per read."""
        decoder = make_decoder(self.adapter.stream.framing)
        adapter, req = self.adapter, self.req
        try:
            async for chunk in self.response.aiter_raw():
                batch: list[CanonicalEvent] = []
                for name, data in decoder.feed(chunk):
                    batch.extend(adapter.events_from_chunk(name, data, req))
                if batch:
                    yield batch
            tail: list[CanonicalEvent] = []
            for name, data in decoder.close():
                tail.extend(adapter.events_from_chunk(name, data, req))
            if tail:
                yield tail
        except httpx.HTTPError as exc:
            yield [
                {
                    "type": "error",
                    "code": "server_error",
                    "message": f"The connection to upstream provider '{adapter.name}' failed mid-stream ({type(exc).__name__}).",
                }
            ]
        finally:
            await self.response.aclose()

    async def aclose(self) -> None:
        await self.response.aclose()


async def open_stream(
    adapter: ProviderAdapter,
    client: httpx.AsyncClient,
    req: CanonicalRequest,
    *,
    timeout: httpx.Timeout | None = None,
) -> UpstreamStream:
    """Send a streaming request and check its status before any byte goes to the client."""
    upstream = adapter.build_request(req)
    request = client.build_request(
        upstream.method,
        upstream.url,
        headers=upstream.headers,
        content=upstream.body,
        timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
    )
    try:
        response = await client.send(request, stream=True)
    except httpx.HTTPError as exc:
        raise _transport_failure(adapter, exc) from None
    if response.status_code >= 400:
        try:
            content = await response.aread()
        except httpx.HTTPError:
            content = b""
        finally:
            await response.aclose()
        raise UpstreamError(adapter.classify_error(response.status_code, response.headers, content))
    return UpstreamStream(adapter, response, req)
