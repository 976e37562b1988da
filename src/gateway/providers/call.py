"""One upstream attempt: send the rendered request, turn the answer into canonical events.

Errors before the answer starts (connection refused, HTTP 4xx/5xx) raise ``UpstreamError`` so
the caller can retry, fall back or answer with a plain JSON error. Errors after the stream has
started become canonical ``error`` events, so the emitter ends the client's stream properly.
"""

from __future__ import annotations

from time import perf_counter

import orjson

from gateway.canonical import CanonicalEvent, CanonicalRequest
from gateway.errors import GatewayError
from gateway.providers.adapter import ProviderAdapter, UpstreamFailure
from gateway.providers.decoding import make_decoder
from gateway.providers.http1 import Timeout, Timeouts, TransportError
from gateway.providers.transport import UpstreamClient, UpstreamResponse


class UpstreamError(Exception):
    """An attempt failed before its answer started; ``status`` is the upstream's HTTP status
    (None when no answer came), ``waited`` the seconds spent blocked on the upstream."""

    def __init__(
        self, failure: UpstreamFailure, *, status: int | None = None, waited: float = 0.0
    ) -> None:
        super().__init__(failure.error.message)
        self.failure = failure
        self.status = status
        self.waited = waited


def _transport_failure(
    adapter: ProviderAdapter, exc: TransportError, waited: float
) -> UpstreamError:
    if isinstance(exc, Timeout):
        error = GatewayError(
            504,
            f"Upstream provider '{adapter.name}' timed out ({type(exc).__name__}).",
            type="timeout_error",
            code="upstream_timeout",
        )
        return UpstreamError(UpstreamFailure(error, "timeout"), waited=waited)
    error = GatewayError(
        502,
        f"Could not reach upstream provider '{adapter.name}': {type(exc).__name__}.",
        type="server_error",
        code="upstream_unreachable",
    )
    return UpstreamError(UpstreamFailure(error, "server_error"), waited=waited)


def _bad_body(adapter: ProviderAdapter, status: int, waited: float) -> UpstreamError:
    error = GatewayError(
        502,
        f"Upstream provider '{adapter.name}' sent a body that is not JSON.",
        type="server_error",
        code="bad_gateway",
    )
    return UpstreamError(UpstreamFailure(error, "server_error"), status=status, waited=waited)


class WholeAnswer:
    """A non-streaming attempt's answer: its canonical events, and what the wait cost.

    Built per request: a plain class (README, "The hot path, compiled").
    """

    def __init__(self, status: int, events: list[CanonicalEvent], waited: float) -> None:
        self.status = status
        self.events = events
        self.waited = waited


async def _send(
    adapter: ProviderAdapter, client: UpstreamClient, req: CanonicalRequest, timeouts: Timeouts
) -> UpstreamResponse:
    """Send the request; the response once its head says the upstream accepted it (an HTTP
    error answer is read, classified and raised)."""
    upstream = adapter.build_request(req)
    started = perf_counter()
    try:
        response = await client.request(
            upstream.method,
            upstream.url,
            headers=upstream.headers,
            body=upstream.body,
            timeouts=timeouts,
        )
    except TransportError as exc:
        raise _transport_failure(adapter, exc, perf_counter() - started) from None
    if response.status >= 400:
        raise await _refusal(adapter, response)
    return response


async def _refusal(adapter: ProviderAdapter, response: UpstreamResponse) -> UpstreamError:
    """An HTTP error answer, read and classified (the body names the error)."""
    try:
        content = await response.read()
    except TransportError:
        content = b""
    finally:
        await response.aclose()
    failure = adapter.classify_error(response.status, response.headers, content)
    return UpstreamError(failure, status=response.status, waited=response.waited)


async def call_whole(
    adapter: ProviderAdapter, client: UpstreamClient, req: CanonicalRequest, timeouts: Timeouts
) -> WholeAnswer:
    """A non-streaming attempt: the whole answer as canonical events."""
    response = await _send(adapter, client, req, timeouts)
    try:
        content = await response.read()
    except TransportError as exc:
        await response.aclose()
        raise _transport_failure(adapter, exc, response.waited) from None
    try:
        body = orjson.loads(content)
    except orjson.JSONDecodeError:
        raise _bad_body(adapter, response.status, response.waited) from None
    return WholeAnswer(response.status, adapter.events_from_body(body, req), response.waited)


class UpstreamStream:
    """An upstream stream whose status line has been checked; read with ``next_batch``."""

    def __init__(
        self, adapter: ProviderAdapter, response: UpstreamResponse, req: CanonicalRequest
    ) -> None:
        self.adapter = adapter
        self.response = response
        self.req = req
        self._decoder = make_decoder(adapter.stream.framing)
        self._ended = False

    @property
    def waited(self) -> float:
        """Seconds blocked on the upstream so far (head and every read)."""
        return self.response.waited

    async def next_batch(self) -> list[CanonicalEvent] | None:
        """The canonical events of the next network read, together (one client write per
        read); ``None`` at the end. A connection that fails mid-stream is one ``error`` event,
        then the end. The caller closes the stream (``aclose``) however it stops reading."""
        if self._ended:
            return None
        adapter, req, decoder = self.adapter, self.req, self._decoder
        batch: list[CanonicalEvent] = []
        try:
            while chunk := await self.response.read_some():
                for name, data in decoder.feed(chunk):
                    batch.extend(adapter.events_from_chunk(name, data, req))
                if batch:
                    return batch
            for name, data in decoder.close():
                batch.extend(adapter.events_from_chunk(name, data, req))
        except TransportError as exc:
            batch = [
                {
                    "type": "error",
                    "code": "server_error",
                    "message": f"The connection to upstream provider '{adapter.name}' failed mid-stream ({type(exc).__name__}).",
                }
            ]
        self._ended = True
        return batch or None

    async def aclose(self) -> None:
        await self.response.aclose()


async def open_stream(
    adapter: ProviderAdapter, client: UpstreamClient, req: CanonicalRequest, timeouts: Timeouts
) -> UpstreamStream:
    """Send a streaming request and check its status before any byte goes to the client."""
    response = await _send(adapter, client, req, timeouts)
    return UpstreamStream(adapter, response, req)
