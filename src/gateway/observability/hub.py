"""``Observability``: one per app; opens and closes request records, owns metrics and tracing.

``install(app)`` adds ``GET /metrics`` and ``middleware(app)`` the per-request records; ``watch(store)`` follows config
reloads (settings, prices, tracing exporter, log format, reload metrics). Everything a closed
record produces (the log line, the metrics, the end of the server span) happens in ``close``.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Callable
from time import perf_counter
from typing import TYPE_CHECKING, Any, Final

from starlette.types import ASGIApp, Scope

from gateway.observability.context import (
    new_span_id,
    new_trace_and_span_ids,
    parse_traceparent,
)
from gateway.observability.logs import set_log_format
from gateway.observability.metrics import EndedRequest, GatewayMetrics
from gateway.observability.record import RequestRecord
from gateway.observability.settings import ObservabilitySettings
from gateway.observability.tracing import Tracing, mark_error, span_ids

if TYPE_CHECKING:
    from fastapi import FastAPI

    from gateway.agents.bus import AgentBus
    from gateway.config.build import Runtime
    from gateway.config.store import RuntimeStore
    from gateway.resilience import BreakerBoard

request_logger = logging.getLogger("gateway.request")
breaker_logger = logging.getLogger("gateway.breaker")

LLM_PATH: Final = "/v1/responses"
_SETTINGS_KEPT: Final = 4


class Observability:
    def __init__(self, quiet_paths: frozenset[str] = frozenset({"/metrics", "/healthz"})) -> None:
        self.metrics = GatewayMetrics()
        self.tracing = Tracing()
        self.quiet_paths = quiet_paths
        self.metrics_path = "/metrics"
        self._settings: dict[str, ObservabilitySettings] = {}
        self.current = ObservabilitySettings()
        self.breakers: BreakerBoard | None = None  # the app's circuit breakers, read after requests

    # ------------------------------------------------------------------ wiring

    def install(self, app: FastAPI) -> None:
        """Add ``GET /metrics``; the app wraps its routes in ``middleware`` itself."""
        app.state.observability = self
        app.router.add_route(self.metrics_path, self.metrics.endpoint, methods=["GET"])

    def middleware(self, app: ASGIApp) -> ASGIApp:
        """``app`` with a record opened and closed around every request it serves."""
        from gateway.observability.middleware import ObservabilityMiddleware

        return ObservabilityMiddleware(app, hub=self)

    def watch(self, store: RuntimeStore) -> None:
        """Apply the current config, and every config a reload swaps in; count reloads."""
        self.apply(store.current)
        store.on_swap(lambda old, new: self.apply(new))
        reload: Callable[[], bool] = store.reload

        def counted_reload() -> bool:
            ok = reload()
            self.metrics.reloads.labels("ok" if ok else "failed").inc()
            return ok

        # The store has no reload-result hook yet; wrapping the bound method keeps store.py
        # untouched and every caller (watcher, admin endpoint, signal) counted.
        setattr(store, "reload", counted_reload)  # noqa: B010

    def apply(self, runtime: Runtime) -> None:
        settings = self.settings_for(runtime)
        self.current = settings
        self.tracing.configure(settings.tracing)
        set_log_format(settings.logs.format)
        self.metrics.config_version(runtime.version)

    def settings_for(self, runtime: Runtime) -> ObservabilitySettings:
        """A runtime's settings, parsed once per config version (a request keeps its own)."""
        settings = self._settings.get(runtime.version)
        if settings is None:
            raw = runtime.raw
            settings = ObservabilitySettings.from_config(
                raw.get("observability"), raw.get("prices")
            )
            if len(self._settings) >= _SETTINGS_KEPT:
                self._settings.pop(next(iter(self._settings)))
            self._settings[runtime.version] = settings
        return settings

    def instrument_bus(self, bus: AgentBus) -> AgentBus:
        from gateway.observability.agents import InstrumentedBus

        return InstrumentedBus(bus, self.metrics)

    def breaker_changed(self, provider: str, state: str, reason: str | None = None) -> None:
        """A circuit breaker changed state: the gauge, and one log line per transition."""
        previous = self.metrics.breaker(provider, state)
        if previous != state and (previous is not None or state != "closed"):
            level = logging.WARNING if state == "open" else logging.INFO
            breaker_logger.log(
                level,
                "breaker for provider '%s': %s -> %s",
                provider,
                previous or "closed",
                state,
                extra={
                    "gateway": {
                        "event": "breaker",
                        "provider": provider,
                        "state": state,
                        "reason": reason,
                    }
                },
            )

    def shutdown(self) -> None:
        self.metrics.tally.flush()  # the last second's requests, before the worker goes
        self.tracing.shutdown()
        if self.metrics.multiprocess:
            from prometheus_client import multiprocess

            mark_dead: Any = multiprocess.mark_process_dead  # untyped in prometheus_client
            mark_dead(os.getpid())

    # ------------------------------------------------------------------ records

    def open(self, scope: Scope) -> RequestRecord:
        state = scope.setdefault("state", {})
        request_id = str(state.get("request_id") or "")
        traceparent = tracestate = None
        headers: list[tuple[bytes, bytes]] = scope["headers"]  # typed: mypyc unpacks by index
        for name, value in headers:
            if name == b"traceparent":
                traceparent = value.decode("latin-1")
            elif name == b"tracestate":
                tracestate = value.decode("latin-1")
        path: str = scope["path"]
        method: str = scope["method"]
        span = None
        if self.tracing.tracer is not None:  # an attribute: compiled code calls a property
            carrier = {"traceparent": traceparent} if traceparent else {}
            if traceparent and tracestate:
                carrier["tracestate"] = tracestate
            span = self.tracing.start_server_span(
                f"{method} {path}",
                carrier,
                {
                    "http.request.method": method,
                    "url.path": path,
                    "gateway.request_id": request_id,
                },
            )
            trace_id, span_id, sampled = span_ids(span)
        else:
            parent = parse_traceparent(traceparent)
            if parent is None:
                (trace_id, span_id), sampled = new_trace_and_span_ids(), False
            else:
                trace_id, span_id, sampled = parent[0], new_span_id(), parent[2]
        record = RequestRecord(self, request_id, trace_id, span_id, sampled, method, path)
        record.span = span
        record.settings = self.current
        if path == LLM_PATH:
            record.is_llm = True
            self.metrics.tally.started()
        state["gateway.record"] = record
        return record

    def response_headers(self, record: RequestRecord) -> list[tuple[bytes, bytes]]:
        headers = [
            (b"x-trace-id", record.trace_id.encode()),
            (b"traceparent", record.traceparent().encode()),
        ]
        if record.cost_usd is not None:
            headers.append((b"x-gateway-cost-usd", f"{record.cost_usd:.8f}".encode()))
        return headers

    def close(self, record: RequestRecord) -> None:
        """The last byte went out (or the request failed): log, count, end the spans."""
        ended = perf_counter()
        for attempt in record.attempts:
            attempt.end()
        if record.stream and record.outcome is None and record.status == 200:
            record.outcome = "disconnected"  # the stream stopped before its terminal event
        duration = ended - record.started
        overhead = max(
            duration - record.upstream_seconds - record.client_seconds - record.wait_seconds, 0.0
        )
        settings = record.settings or self.current
        if record.is_llm:
            if self.breakers is not None and record.attempts:
                self._breaker_states(record)
            self._count(record, duration, overhead, settings.metrics.enabled)
        if record.span is not None:
            self._end_span(record)
        if settings.logs.requests:
            self._log(record, duration, overhead, settings)

    def _breaker_states(self, record: RequestRecord) -> None:
        """Breakers change state inside the request flow; look at those it used."""
        assert self.breakers is not None
        for provider in {attempt.provider for attempt in record.attempts}:
            snapshot = self.breakers.state(provider)
            if snapshot is not None:
                self.breaker_changed(
                    provider, str(snapshot.get("state")), reason=record.error_class
                )

    def _count(
        self, record: RequestRecord, duration: float, overhead: float, enabled: bool
    ) -> None:
        metrics = self.metrics
        if not enabled:
            metrics.tally.ended(None)  # still out of flight
            return
        provider = record.provider or "none"
        model = metrics.model_label(record.upstream_model)
        first_token = record.first_token_at
        metrics.tally.ended(
            EndedRequest(
                provider,
                model,
                str(record.status),
                "true" if record.stream else "false",
                duration,
                overhead,
                None if first_token is None else first_token - record.started,
                record.input_tokens,
                record.output_tokens,
                record.cached_tokens,
                record.cost_usd,
                record.trace_id,
                record.request_id,
            )
        )
        attempts = record.attempts
        if len(attempts) == 1 and attempts[0].error_class is None:
            return
        child = metrics.child
        for attempt in attempts:
            if attempt.error_class is not None:
                child(metrics.upstream_errors, attempt.provider, attempt.error_class).inc()
        for before, after in itertools.pairwise(attempts):
            if (before.provider, before.model) == (after.provider, after.model):
                child(metrics.retries, after.provider).inc()
            else:
                alias = record.alias or "none"
                child(metrics.fallbacks, alias, before.provider, after.provider).inc()

    def _end_span(self, record: RequestRecord) -> None:
        span = record.span
        assert span is not None
        span.set_attribute("http.response.status_code", record.status)
        if record.provider is not None:
            span.set_attribute("gateway.provider", record.provider)
            span.set_attribute("gen_ai.response.model", record.upstream_model or "")
        if record.attempts:
            span.set_attribute("gateway.attempts", len(record.attempts))
        if record.input_tokens is not None:
            span.set_attribute("gen_ai.usage.input_tokens", record.input_tokens)
            span.set_attribute("gen_ai.usage.output_tokens", record.output_tokens or 0)
        if record.cost_usd is not None:
            span.set_attribute("gateway.cost_usd", record.cost_usd)
        if record.status >= 500 or record.outcome == "failed":
            mark_error(span, record.error_code or record.error_type or str(record.status))
        span.end()

    def _log(
        self,
        record: RequestRecord,
        duration: float,
        overhead: float,
        settings: ObservabilitySettings,
    ) -> None:
        level = logging.WARNING if record.status >= 500 else logging.INFO
        if not request_logger.isEnabledFor(level):
            return
        fields: dict[str, Any] = {
            "event": "request",
            "method": record.method,
            "path": record.path,
            "status": record.status,
            "latency_ms": round(duration * 1000, 3),
            "key": record.key_name,
        }
        if record.is_llm:
            ttft = record.first_token_at
            fields.update(
                model=record.requested_model,
                alias=record.alias,
                provider=record.provider,
                upstream_model=record.upstream_model,
                stream=record.stream,
                attempts=len(record.attempts),
                ttft_ms=None if ttft is None else round((ttft - record.started) * 1000, 3),
                overhead_ms=round(overhead * 1000, 3),
                input_tokens=record.input_tokens,
                output_tokens=record.output_tokens,
                cached_tokens=record.cached_tokens,
                cost_usd=record.cost_usd,
                config_version=record.config_version,
                outcome=record.outcome,
                finish_reason=record.finish_reason,
            )
        fields.update(
            error_type=record.error_type,
            error_code=record.error_code,
            error_class=record.error_class,
        )
        if settings.logs.content and record.is_llm:
            fields.update(input=record.input_content, output=record.output_content)
        request_logger.log(
            level,
            "%s %s %s %.1fms",
            record.method,
            record.path,
            record.status,
            duration * 1000,
            extra={"gateway": fields, "request_id": record.request_id, "trace_id": record.trace_id},
        )
