"""``POST /v1/responses``: parse, route, normalize, call upstream, emit — streamed or whole."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from gateway.canonical import CanonicalRequest
from gateway.errors import GatewayError
from gateway.providers.adapter import ProviderAdapter
from gateway.providers.call import UpstreamError, UpstreamStream, call_whole, open_stream
from gateway.responses.emitter import ResponseEmitter
from gateway.responses.normalize import normalize, parse_body
from gateway.responses.sse import encode_events

if TYPE_CHECKING:
    from gateway.app import GatewayState
    from gateway.config.build import Runtime
    from gateway.routing import Target

logger = logging.getLogger("gateway.responses")

JSON_HEADERS = {"content-type": "application/json"}
SSE_HEADERS = {
    "content-type": "text/event-stream",
    "cache-control": "no-cache",
    "x-accel-buffering": "no",
}


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refusing early when it is over the limit (by header or while reading)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise GatewayError(
            413,
            f"Request body is {declared} bytes; the limit is {limit} bytes.",
            code="request_too_large",
        )
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise GatewayError(
                413, f"Request body is over the limit of {limit} bytes.", code="request_too_large"
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _prepare(
    runtime: Runtime, target: Target, parsed: Any
) -> tuple[ProviderAdapter, CanonicalRequest]:
    adapter = runtime.providers[target.provider]
    return adapter, normalize(parsed, target.model, dict(target.params) if target.params else None)


async def create_response(request: Request) -> Response:
    started = time.perf_counter()
    state: GatewayState = request.app.state.gateway
    runtime = state.store.current  # this request's snapshot, to the end
    raw = await read_body(request, runtime.limits.max_body_bytes)
    parsed = parse_body(raw, runtime.limits)
    route = runtime.router.resolve(parsed.model)
    target = route.targets[0]
    adapter, req = _prepare(runtime, target, parsed)
    client = state.transports.client_for(adapter)
    headers = {
        "x-gateway-config-version": runtime.version,
        "x-gateway-provider": target.provider,
        "x-gateway-upstream-model": target.model,
        "x-gateway-attempts": "1",
    }
    emitter = ResponseEmitter(
        model=parsed.model,
        body=parsed.body,
        finish_reasons=adapter.finish_reasons,
        stream=parsed.stream,
    )

    if not parsed.stream:
        upstream_started = time.perf_counter()
        try:
            events = await call_whole(adapter, client, req)
        except UpstreamError as exc:
            raise _with_headers(exc.failure.error, headers) from None
        upstream_seconds = time.perf_counter() - upstream_started
        for event in events:
            emitter.feed(event)
        emitter.end_of_stream(requires_done=False)
        response = emitter.response
        if response["status"] == "failed":
            error = response["error"] or {}
            raise _with_headers(
                GatewayError(
                    502, str(error.get("message")), type="server_error", code=str(error.get("code"))
                ),
                headers,
            )
        overhead = time.perf_counter() - started - upstream_seconds
        headers["x-gateway-overhead-ms"] = f"{overhead * 1000:.3f}"
        return Response(orjson.dumps(response), 200, headers={**headers, **JSON_HEADERS})

    try:
        upstream = await open_stream(adapter, client, req)
    except UpstreamError as exc:
        raise _with_headers(exc.failure.error, headers) from None
    headers["x-gateway-overhead-ms"] = f"{(time.perf_counter() - started) * 1000:.3f}"
    return StreamingResponse(_relay(upstream, emitter), 200, headers={**headers, **SSE_HEADERS})


async def _relay(upstream: UpstreamStream, emitter: ResponseEmitter) -> AsyncIterator[bytes]:
    """Upstream events → Responses SSE bytes; always ends with exactly one terminal event."""
    requires_done = upstream.adapter.stream.requires_done
    try:
        yield encode_events(emitter.start())
        async for event in upstream.events():
            out = emitter.feed(event)
            if out:
                yield encode_events(out)
            if emitter.done:
                break
        if not emitter.done:
            yield encode_events(emitter.end_of_stream(requires_done=requires_done))
    except Exception as exc:  # a mapping bug must still end the client's stream properly
        logger.exception("stream from provider '%s' failed", upstream.adapter.name)
        if not emitter.done:
            yield encode_events(
                emitter.fail(
                    "server_error", f"The gateway failed while streaming: {type(exc).__name__}"
                )
            )
    finally:
        await upstream.aclose()


def _with_headers(error: GatewayError, headers: dict[str, str]) -> GatewayError:
    error.headers = {**headers, **error.headers}
    return error
