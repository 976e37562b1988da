"""What one request did: filled in by the request flow, turned into a log line, metrics and spans.

The middleware opens a ``RequestRecord`` for every request and closes it after the last byte
is sent; between the two the request flow tells it what happened::

    record = current_record()          # or record_for(scope)
    record.begin(runtime, requested_model=..., stream=..., body=...)
    record.routed(route.alias)
    attempt = record.start_attempt(provider, upstream_model, base_url=adapter.base_url)
    attempt.failed(failure.error_class, failure.error.status, failure.error.message)  # or not
    record.first_token()               # first content delta of a stream
    record.finish(emitter.response, finish_reason=...)

Every method is cheap, does no I/O and never raises into the request path.
"""

from __future__ import annotations

from collections.abc import Mapping
from time import perf_counter
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from gateway.observability.context import current_record
from gateway.observability.settings import ObservabilitySettings

if TYPE_CHECKING:
    from opentelemetry.trace import Span
    from starlette.types import Scope

    from gateway.config.build import Runtime
    from gateway.observability.hub import Observability

OPERATION = "chat"


class Attempt:
    """One upstream call; its span stays open until it fails or the request ends.

    It does not point back at its record: a record and its attempts would be a reference
    cycle per request, left for the cyclic collector instead of freed on the spot.

    Built per request: a plain class (README, "The hot path, compiled").
    """

    def __init__(self, number: int, provider: str, model: str, started: float) -> None:
        self.number = number
        self.provider = provider
        self.model = model
        self.started = started
        self.span: Span | None = None
        self.status: int | None = None  # upstream HTTP status
        self.error_class: str | None = None
        self.ended = False

    def failed(
        self, error_class: str, status: int | None = None, message: str | None = None
    ) -> None:
        """The attempt failed before its answer started (the request may retry or fall back)."""
        self.error_class = error_class
        if status is not None and self.status is None:
            self.status = status
        if self.span is not None:
            from gateway.observability.tracing import mark_error

            mark_error(self.span, error_class, message)
        self.end()

    def end(self) -> None:
        if self.ended:
            return
        self.ended = True
        if self.span is not None:
            if self.status is not None:
                self.span.set_attribute("http.response.status_code", self.status)
            self.span.end()


class RequestRecord:
    """One request, as the request flow reports it.

    Built per request: a plain class (README, "The hot path, compiled").
    """

    def __init__(
        self,
        hub: Observability | None,
        request_id: str,
        trace_id: str,
        span_id: str,
        sampled: bool,
        method: str,
        path: str,
    ) -> None:
        self.hub = hub
        self.request_id = request_id
        self.trace_id = trace_id
        self.span_id = span_id
        self.sampled = sampled
        self.method = method
        self.path = path
        self.started = perf_counter()
        self.span: Span | None = None
        self.is_llm = False
        self.runtime: Runtime | None = None
        self.settings: ObservabilitySettings | None = None
        self.key_name: str | None = None
        self.requested_model: str | None = None
        self.alias: str | None = None
        self.provider: str | None = None
        self.upstream_model: str | None = None
        self.stream = False
        self.config_version: str | None = None
        self.status = 0
        self.attempts: list[Attempt] = []
        self.error_type: str | None = None
        self.error_code: str | None = None
        self.outcome: str | None = None  # completed | incomplete | failed (the Response's status)
        self.finish_reason: str | None = None
        self.input_tokens: int | None = None
        self.output_tokens: int | None = None
        self.cached_tokens: int | None = None
        self.cache_write_tokens: int | None = None
        self.reasoning_tokens: int | None = None
        self.cost_usd: float | None = None
        self.first_token_at: float | None = None
        self.upstream_seconds = 0.0  # blocked on upstream reads
        self.client_seconds = 0.0  # blocked on writes to the client
        self.wait_seconds = 0.0  # deliberate waits: retry back-off
        self.input_content: Any = None  # only with observability.logs.content
        self.output_content: Any = None

    # ------------------------------------------------------------------ the request flow

    def begin(
        self,
        runtime: Runtime,
        *,
        requested_model: str,
        stream: bool,
        body: Mapping[str, Any] | None = None,
    ) -> None:
        """The request is parsed; it runs against ``runtime`` (its config snapshot)."""
        self.runtime = runtime
        self.config_version = runtime.version
        self.requested_model = requested_model
        self.stream = stream
        settings = self.settings = (
            self.hub.settings_for(runtime) if self.hub is not None else ObservabilitySettings()
        )
        if settings.logs.content and body is not None:
            self.input_content = {
                "instructions": body.get("instructions"),
                "input": body.get("input"),
            }
        span = self.span
        if span is not None:
            span.set_attribute("gen_ai.operation.name", OPERATION)
            span.set_attribute("gen_ai.request.model", requested_model)
            span.set_attribute("gateway.config_version", runtime.version)
            span.set_attribute("gateway.stream", stream)

    def routed(self, alias: str | None) -> None:
        """The model name resolved; ``alias`` when it was one of ``models:``."""
        self.alias = alias
        if alias is not None and self.span is not None:
            self.span.set_attribute("gateway.alias", alias)

    def start_attempt(
        self,
        provider: str,
        model: str,
        *,
        base_url: str | None = None,
        request: Mapping[str, Any] | None = None,
    ) -> Attempt:
        """An upstream attempt begins; a previous one still open is ended first."""
        if self.attempts:
            self.attempts[-1].end()
        self.provider = provider
        self.upstream_model = model
        attempt = Attempt(len(self.attempts) + 1, provider, model, perf_counter())
        if self.span is not None and self.hub is not None and self.hub.tracing.enabled:
            attempt.span = self.hub.tracing.start_client_span(
                f"{OPERATION} {model}",
                self.span,
                self._attempt_attributes(attempt, base_url, request),
            )
        self.attempts.append(attempt)
        return attempt

    def _attempt_attributes(
        self, attempt: Attempt, base_url: str | None, request: Mapping[str, Any] | None
    ) -> dict[str, Any]:
        system = self._provider_system(attempt.provider)
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": OPERATION,
            "gen_ai.provider.name": system,
            "gen_ai.system": system,
            "gen_ai.request.model": attempt.model,
            "gateway.provider": attempt.provider,
            "gateway.attempt": attempt.number,
        }
        if base_url:
            url = urlsplit(base_url)
            if url.hostname and url.scheme in ("http", "https"):  # not builtin:// upstreams
                attributes["server.address"] = url.hostname
                attributes["server.port"] = url.port or (443 if url.scheme == "https" else 80)
        if request is not None:
            for source, name in (
                ("max_output_tokens", "gen_ai.request.max_tokens"),
                ("temperature", "gen_ai.request.temperature"),
                ("top_p", "gen_ai.request.top_p"),
            ):
                value = request.get(source)
                if value is not None:
                    attributes[name] = value
        return attributes

    def _provider_system(self, provider: str) -> str:
        """The preset a provider extends names its API family (data, not code); else its name."""
        entries = self.runtime.raw.get("providers") if self.runtime is not None else None
        entry = entries.get(provider) if isinstance(entries, Mapping) else None
        preset = entry.get("preset") if isinstance(entry, Mapping) else None
        return str(preset or provider)

    @property
    def error_class(self) -> str | None:
        """The class of the last upstream failure (a request that recovered keeps it)."""
        for attempt in reversed(self.attempts):
            if attempt.error_class is not None:
                return attempt.error_class
        return None

    @property
    def attempt(self) -> Attempt | None:
        return self.attempts[-1] if self.attempts else None

    def upstream_answer(self, status: int | None, waited: float) -> None:
        """The current attempt's upstream answered ``status`` (None: no new status), after
        ``waited`` seconds blocked on it: upstream time, not the gateway's overhead."""
        self.upstream_seconds += waited
        attempt = self.attempt
        if status is not None and attempt is not None and not attempt.ended:
            attempt.status = status

    def first_token(self) -> None:
        if self.first_token_at is None:
            self.first_token_at = perf_counter()

    def waited(self, seconds: float) -> None:
        """Time spent on purpose (retry back-off): not upstream time, not gateway overhead."""
        self.wait_seconds += seconds

    def error(self, error_type: str | None, code: str | None = None) -> None:
        if self.error_type is None:
            self.error_type = error_type
            self.error_code = code

    def finish(self, response: dict[str, Any], finish_reason: str | None = None) -> None:
        """The final Response object: usage, outcome and cost (before the head is sent, when
        not streaming, so the cost can go into a response header)."""
        status = response.get("status")
        # A stream the client left is still "in_progress": no outcome (closed as disconnected).
        self.outcome = status if status in ("completed", "incomplete", "failed") else None
        self.finish_reason = finish_reason
        error = response.get("error")
        if self.outcome == "failed" and isinstance(error, dict):
            self.error("server_error", error.get("code"))
        usage = response.get("usage")
        if isinstance(usage, dict):  # not Mapping: the ABC check costs more than the rest
            self.input_tokens = int(usage.get("input_tokens") or 0)
            self.output_tokens = int(usage.get("output_tokens") or 0)
            details = usage.get("input_tokens_details")
            if isinstance(details, dict):  # a dict's get is native code, an Any's a Python call
                self.cached_tokens = int(details.get("cached_tokens") or 0)
                self.cache_write_tokens = int(details.get("cache_write_tokens") or 0)
            else:
                self.cached_tokens = self.cache_write_tokens = 0
            output_details = usage.get("output_tokens_details")
            self.reasoning_tokens = (
                int(output_details.get("reasoning_tokens") or 0)
                if isinstance(output_details, dict)
                else 0
            )
            self._cost()
        settings = self.settings
        if settings is not None and settings.logs.content:
            self.output_content = response.get("output")
        attempt = self.attempt
        if attempt is not None and attempt.span is not None:
            self._usage_attributes(attempt.span)
            if finish_reason is not None:
                attempt.span.set_attribute("gen_ai.response.finish_reasons", [finish_reason])
            if response.get("id"):
                attempt.span.set_attribute("gen_ai.response.id", str(response["id"]))

    def _cost(self) -> None:
        settings = self.settings
        if settings is None or not settings.prices:
            return
        price = settings.prices.lookup(self.alias, self.provider, self.upstream_model)
        if price is not None:
            self.cost_usd = price.cost(
                self.input_tokens or 0,
                self.output_tokens or 0,
                self.cached_tokens or 0,
                self.cache_write_tokens or 0,
            )

    def _usage_attributes(self, span: Span) -> None:
        span.set_attribute("gen_ai.response.model", self.upstream_model or "")
        if self.input_tokens is not None:
            span.set_attribute("gen_ai.usage.input_tokens", self.input_tokens)
        if self.output_tokens is not None:
            span.set_attribute("gen_ai.usage.output_tokens", self.output_tokens)
        if self.cost_usd is not None:
            span.set_attribute("gateway.cost_usd", self.cost_usd)

    # ------------------------------------------------------------------ derived

    def traceparent(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-{'01' if self.sampled else '00'}"


def record_for(scope: Scope) -> RequestRecord:
    """The record the middleware opened for the request; a detached one when there is none
    (an app assembled without the middleware), so the request flow never needs to check."""
    record = current_record()
    if record is not None:
        return record
    state = scope.setdefault("state", {})
    detached = state.get("gateway.record")
    if isinstance(detached, RequestRecord):
        return detached
    from gateway.observability.context import new_span_id, new_trace_id

    detached = RequestRecord(
        None,
        str(state.get("request_id") or ""),
        new_trace_id(),
        new_span_id(),
        False,
        str(scope.get("method", "")),
        str(scope.get("path", "")),
    )
    state["gateway.record"] = detached
    return detached
