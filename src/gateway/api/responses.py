"""``POST /v1/responses``: parse, route, normalize, call upstream (with retries and fallbacks),
emit — streamed or whole.

Until the first byte of an answer goes to the client, any upstream failure may be retried or
fall back to the next target; after it, a failure ends the stream with ``response.failed`` and
the ``error`` event. A client that disconnects cancels the upstream call and pending retries.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Final, TypeVar

import orjson
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope

from gateway.access.guard import Grant, admit
from gateway.api.body import TooLarge, read_body
from gateway.api.disconnect import CancelOnDisconnect, ClientDisconnected
from gateway.api.event_stream import EventStream
from gateway.api.json_answer import JsonAnswer
from gateway.canonical import CanonicalEvent, CanonicalRequest
from gateway.errors import GatewayError
from gateway.observability import RequestRecord, record_for
from gateway.providers.adapter import RETRYABLE_CLASSES, ProviderAdapter, UpstreamFailure
from gateway.providers.call import UpstreamError, UpstreamStream, call_whole, open_stream
from gateway.providers.http1 import Timeouts
from gateway.resilience import class_of_stream_error, retry_after_seconds
from gateway.responses.emitter import ResponseEmitter, ResponsesEvent
from gateway.responses.normalize import ResponsesRequest, normalize, parse_body
from gateway.responses.sse import encode_events
from gateway.routing import Route, Target

if TYPE_CHECKING:
    from gateway.app import GatewayState
    from gateway.config.build import Runtime

logger = logging.getLogger("gateway.responses")

SSE_HEADERS = {
    "content-type": "text/event-stream",
    "cache-control": "no-cache",
    "x-accel-buffering": "no",
}
T = TypeVar("T")


class Flow:
    """One request's journey; what operators see in headers (and observability records).

    A plain class, not a dataclass: compiled, a dataclass needs its field types at import,
    and ``Runtime`` and ``GatewayState`` are imported for type checking only
    (``gateway.app``, where ``GatewayState`` lives, imports this module).
    """

    def __init__(
        self,
        runtime: Runtime,
        state: GatewayState,
        parsed: ResponsesRequest,
        route: Route,
        started: float,
        record: RequestRecord,  # observability: logs, metrics, spans, cost
    ) -> None:
        self.runtime = runtime
        self.state = state
        self.parsed = parsed
        self.route = route
        self.started = started
        self.record = record
        self.attempts = 0
        self.targets_tried = 0
        self.target: Target | None = None

    def headers(self) -> dict[str, str]:
        headers = {
            "x-gateway-config-version": self.runtime.version,
            "x-gateway-attempts": str(self.attempts),
        }
        if self.target is not None:
            headers["x-gateway-provider"] = self.target.provider
            headers["x-gateway-upstream-model"] = self.target.model
        if self.targets_tried > 1:
            headers["x-gateway-fallbacks"] = str(self.targets_tried - 1)
        return headers


def _too_large(limit: int) -> TooLarge:
    def refusal(declared: int | None) -> GatewayError:
        message = (
            f"Request body is over the limit of {limit} bytes."
            if declared is None
            else f"Request body is {declared} bytes; the limit is {limit} bytes."
        )
        return GatewayError(413, message, code="request_too_large")

    return refusal


async def create_response(scope: Scope, receive: Receive, state: GatewayState) -> ASGIApp:
    """``POST /v1/responses``: the answer to send, whole or streamed (a fast-lane endpoint)."""
    started = time.perf_counter()
    runtime = state.store.current  # this request's snapshot, to the end
    limit = runtime.limits.max_body_bytes
    try:
        raw = await read_body(scope, receive, limit, _too_large(limit))
    except ClientDisconnected:
        return Response(status_code=499)
    parsed = parse_body(raw, runtime.limits)
    record = record_for(scope)
    record.begin(runtime, requested_model=parsed.model, stream=parsed.stream, body=parsed.body)
    flow = Flow(runtime, state, parsed, runtime.router.resolve(parsed.model), started, record)
    record.routed(flow.route.alias)
    grant = await admit(scope, state.limiter, runtime, flow.route)  # 403 / 429 before upstream
    try:
        if parsed.stream:
            async with CancelOnDisconnect(receive):
                primed = await _with_fallbacks(flow, _open_primed_stream)
            record.first_token()
            headers = {
                **flow.headers(),
                **grant.headers,
                **SSE_HEADERS,
                "x-gateway-overhead-ms": _overhead_ms(flow, primed.upstream.waited),
            }
            return EventStream(Relay(flow, primed, grant), headers)
        async with CancelOnDisconnect(receive):
            emitter = await _with_fallbacks(flow, _complete_whole)
    except ClientDisconnected:
        return Response(status_code=499)
    except GatewayError as error:
        error.headers = {**flow.headers(), **grant.headers, **error.headers}
        raise
    record.finish(emitter.response, emitter.finish_reason)  # before the head: cost header
    await grant.settle(emitter.response.get("usage"))  # tokens per minute: the real usage
    headers = {
        **flow.headers(),
        **grant.headers,
        "x-gateway-overhead-ms": _overhead_ms(flow),
    }
    return JsonAnswer(orjson.dumps(emitter.response), 200, headers)


def _overhead_ms(flow: Flow, streaming_wait: float = 0.0) -> str:
    """The gateway's own time so far: not blocked on the upstream, not backing off."""
    record = flow.record
    spent = time.perf_counter() - flow.started
    own = spent - record.upstream_seconds - record.wait_seconds - streaming_wait
    return f"{own * 1000:.3f}"


# --------------------------------------------------------------------------- attempts


async def _with_fallbacks(
    flow: Flow, attempt: Callable[[Flow, Target, ProviderAdapter], Awaitable[T]]
) -> T:
    """Try the route's targets in plan order, retrying each per its policy."""
    runtime, state = flow.runtime, flow.state
    last: UpstreamFailure | None = None
    for target in flow.route.plan():
        if last is not None and last.error_class not in target.on:
            break
        adapter = runtime.providers[target.provider]
        breaker = state.breakers.get(target.provider, runtime.breakers[target.provider])
        flow.targets_tried += 1
        if not breaker.allow():
            last = UpstreamFailure(
                GatewayError(
                    503,
                    f"Provider '{target.provider}' is unavailable: its circuit breaker is open after repeated failures.",
                    type="server_error",
                    code="circuit_open",
                ),
                "overloaded",
            )
            continue
        policy = flow.route.retry or runtime.retry[target.provider]
        for number in range(1, policy.attempts + 1):
            flow.attempts += 1
            flow.target = target
            observed = flow.record.start_attempt(
                target.provider, target.model, base_url=adapter.base_url
            )
            try:
                result = await attempt(flow, target, adapter)
            except UpstreamError as exc:
                flow.record.upstream_answer(exc.status, exc.waited)
                last = exc.failure
                observed.failed(last.error_class, last.error.status, last.error.message)
                if last.error_class in RETRYABLE_CLASSES:
                    breaker.record_failure()
                else:
                    breaker.release_probe()
                if last.error_class not in policy.on or number == policy.attempts:
                    break
                delay = policy.delay(number, retry_after_seconds(last.error.headers))
                if delay is None or not breaker.allow():
                    break
                logger.info(
                    "retrying %s:%s in %.2fs after %s",
                    target.provider,
                    target.model,
                    delay,
                    last.error_class,
                )
                flow.record.waited(delay)  # back-off: neither upstream time nor overhead
                await asyncio.sleep(delay)
                continue
            except BaseException:
                breaker.release_probe()
                raise
            breaker.record_success()
            return result
    assert last is not None
    raise last.error


def _request_for(flow: Flow, target: Target) -> CanonicalRequest:
    return normalize(flow.parsed, target.model, dict(target.params) if target.params else None)


def _timeouts(flow: Flow, adapter: ProviderAdapter) -> tuple[Timeouts, float | None, float | None]:
    """Per-request transport timeouts (alias over provider), the total limit, and the limit
    until the first answer: the sooner of total and first-token (None: no limit)."""
    base = adapter.timeouts
    alias = flow.route.timeouts
    timeouts = Timeouts(
        connect=alias.get("connect", base.connect),
        read=alias.get("read", base.read),
        write=alias.get("write", base.write),
        pool=alias.get("pool", base.pool),
    )
    total = alias.get("total", base.total) or None
    first_token = alias.get("first_token", base.first_token) or None
    if first_token is None or (total is not None and total < first_token):
        return timeouts, total, total
    return timeouts, total, first_token


class _NoLimit:
    """What ``contextlib.nullcontext`` does in ``async with``, compiled (that one is Python)."""

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc_info: object) -> None:
        return None


_NO_LIMIT: Final = _NoLimit()


def _time_limit(seconds: float | None) -> AbstractAsyncContextManager[object]:
    """``asyncio.timeout``, skipped when there is no limit (most requests): it costs a
    task lookup and a reschedule each time, even with ``None``."""
    return _NO_LIMIT if seconds is None else asyncio.timeout(seconds)


def _time_limit_at(deadline: float | None) -> AbstractAsyncContextManager[object]:
    return _NO_LIMIT if deadline is None else asyncio.timeout_at(deadline)


def _timed_out(adapter: ProviderAdapter, what: str, seconds: float, waited: float) -> UpstreamError:
    error = GatewayError(
        504,
        f"Upstream provider '{adapter.name}' timed out: no {what} within {seconds:g}s.",
        type="timeout_error",
        code="upstream_timeout",
    )
    return UpstreamError(UpstreamFailure(error, "timeout"), waited=waited)


def _failure_from_event(adapter: ProviderAdapter, event: CanonicalEvent) -> UpstreamError:
    code = str(event.get("code") or "server_error")
    # A preset may classify its error events itself (``class``); else guess from the code.
    error_class = str(event.get("class") or class_of_stream_error(code))
    status = {"rate_limited": 429, "overloaded": 503, "timeout": 504, "client_error": 400}.get(
        error_class, 502
    )
    message = adapter.redact(
        f"Upstream provider '{adapter.name}' failed: {event.get('message') or code}"
    )
    error_type = (
        "invalid_request_error"
        if status == 400
        else "rate_limit_error"
        if status == 429
        else "server_error"
    )
    return UpstreamError(
        UpstreamFailure(GatewayError(status, message, type=error_type, code=code), error_class)
    )


async def _complete_whole(flow: Flow, target: Target, adapter: ProviderAdapter) -> ResponseEmitter:
    req = _request_for(flow, target)
    timeouts, _, limit = _timeouts(flow, adapter)
    client = flow.state.transports.client_for(adapter)
    upstream_started = time.perf_counter()
    try:
        async with _time_limit(limit):
            answer = await call_whole(adapter, client, req, timeouts)
    except TimeoutError:
        waited = time.perf_counter() - upstream_started
        raise _timed_out(adapter, "answer", limit or 0, waited) from None
    flow.record.upstream_answer(answer.status, answer.waited)
    emitter = ResponseEmitter(
        model=flow.parsed.model,
        body=flow.parsed.body,
        finish_reasons=adapter.finish_reasons,
        stream=False,
    )
    for event in answer.events:
        if event.get("type") == "error":
            raise _failure_from_event(adapter, event)
        emitter.feed(event)
    emitter.end_of_stream(requires_done=False)
    if emitter.response["status"] == "failed":
        error = emitter.response["error"] or {}
        raise _failure_from_event(
            adapter, {"code": error.get("code"), "message": error.get("message")}
        )
    return emitter


class PrimedStream:
    """An upstream stream that has produced its first content: safe to commit to the client.

    Built per request: a plain class (README, "The hot path, compiled").
    """

    def __init__(
        self,
        upstream: UpstreamStream,
        emitter: ResponseEmitter,
        primed: list[ResponsesEvent],
        deadline: float | None,
    ) -> None:
        self.upstream = upstream
        self.emitter = emitter
        self.primed = primed
        self.deadline = deadline


async def _open_primed_stream(flow: Flow, target: Target, adapter: ProviderAdapter) -> PrimedStream:
    """Open the upstream stream and read until the first content (or the end).

    Nothing has been sent to the client yet, so a failure here can still be retried.
    """
    req = _request_for(flow, target)
    timeouts, total, limit = _timeouts(flow, adapter)
    client = flow.state.transports.client_for(adapter)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + total if total else None
    emitter = ResponseEmitter(
        model=flow.parsed.model,
        body=flow.parsed.body,
        finish_reasons=adapter.finish_reasons,
        stream=True,
    )
    primed: list[ResponsesEvent] = []
    upstream_started = time.perf_counter()
    upstream: UpstreamStream | None = None
    try:
        async with _time_limit(limit):
            upstream = await open_stream(adapter, client, req, timeouts)
            flow.record.upstream_answer(upstream.response.status, 0.0)  # waits: at its close
            saw_finish = False
            while (batch := await upstream.next_batch()) is not None:
                for event in batch:
                    if event.get("type") == "error" and not emitter.emitted_content:
                        raise _failure_from_event(adapter, event)
                    saw_finish = saw_finish or event.get("type") == "finish"
                    primed.extend(emitter.feed(event))
                if emitter.emitted_content or emitter.done:
                    break
            else:
                if not emitter.emitted_content and not saw_finish:
                    error = GatewayError(
                        502,
                        f"Upstream provider '{adapter.name}' ended the stream without an answer.",
                        type="server_error",
                        code="upstream_empty_stream",
                    )
                    raise UpstreamError(UpstreamFailure(error, "server_error"))
                if not emitter.emitted_content:
                    # Finished with nothing to show (a blocked prompt): that is the answer.
                    primed.extend(emitter.end_of_stream(requires_done=adapter.stream.requires_done))
                    if emitter.response["status"] == "failed":
                        raise _failure_from_event(adapter, emitter.response["error"] or {})
    except TimeoutError:
        if upstream is not None:
            await upstream.aclose()
        waited = time.perf_counter() - upstream_started
        raise _timed_out(adapter, "first token", limit or 0, waited) from None
    except UpstreamError as exc:
        if upstream is not None:  # an error event of the opened stream
            await upstream.aclose()
            exc.waited = exc.waited + upstream.waited  # (mypyc: no augmented assignment here)
        raise
    except BaseException:
        if upstream is not None:
            await upstream.aclose()
        raise
    return PrimedStream(upstream, emitter, primed, deadline)


class Relay:
    """Upstream events → Responses SSE bytes, a read at a time; always ends with exactly one
    terminal event.

    ``EventStream`` pulls ``next_chunk`` until ``None`` and closes it however the stream ends.
    A class rather than an async generator: mypyc compiles it, and the stream's cleanup (the
    upstream connection, the request's record, the token grant) runs even if the client
    leaves before the first chunk.
    """

    def __init__(self, flow: Flow, stream: PrimedStream, grant: Grant | None = None) -> None:
        self.flow = flow
        self.upstream = stream.upstream
        self.emitter = stream.emitter
        self.deadline = stream.deadline
        self.grant = grant
        self._primed: bytes | None = encode_events(stream.primed)
        self._closed = False  # at the end of the stream, or when the client left: no more

    async def next_chunk(self) -> bytes | None:
        """The next SSE bytes for the client, ``None`` once the terminal event has gone."""
        primed = self._primed
        if primed is not None:
            self._primed = None
            return primed
        if self._closed:
            return None
        emitter, upstream = self.emitter, self.upstream
        try:
            while not emitter.done:
                async with _time_limit_at(self.deadline):
                    batch = await upstream.next_batch()
                if batch is None:
                    break
                out: list[ResponsesEvent] = []
                for event in batch:
                    out.extend(emitter.feed(event))
                if out:
                    return encode_events(out)
            tail = emitter.end_of_stream(requires_done=upstream.adapter.stream.requires_done)
        except TimeoutError:
            tail = emitter.fail(
                "upstream_timeout",
                f"Upstream provider '{upstream.adapter.name}' exceeded its total time limit.",
            )
        except Exception as exc:  # a mapping bug must still end the client's stream properly
            logger.exception("stream from provider '%s' failed", upstream.adapter.name)
            tail = (
                []
                if emitter.done
                else emitter.fail(
                    "server_error", f"The gateway failed while streaming: {type(exc).__name__}"
                )
            )
        await self.aclose()  # before the terminal event goes: the record is complete
        return encode_events(tail) if tail else None  # [] when already finished

    async def aclose(self) -> None:
        """Release the upstream and complete the request's record; once, however it ends."""
        if self._closed:
            return
        self._closed = True
        upstream, emitter, record = self.upstream, self.emitter, self.flow.record
        try:
            await upstream.aclose()
        finally:
            record.upstream_answer(None, upstream.waited)
            record.finish(emitter.response, emitter.finish_reason)
            if self.grant is not None:
                self.grant.settle_soon(emitter.response.get("usage"))
