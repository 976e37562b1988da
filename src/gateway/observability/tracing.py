"""OpenTelemetry traces: a server span per request, a client span per upstream attempt.

The SDK is imported only when tracing is enabled (``observability.tracing.enabled`` or an
``OTEL_EXPORTER_OTLP_*ENDPOINT`` variable): with it off, the gateway never imports
``opentelemetry`` and pays nothing. Spans follow the GenAI semantic conventions
(``gen_ai.*``). The gateway keeps its own ``TracerProvider`` rather than replacing the global
one, so an embedding application's tracing is left as it is.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from gateway import __version__
from gateway.observability.settings import TracingSettings

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Span, Tracer

logger = logging.getLogger("gateway.tracing")

AttributeValue = str | bool | int | float | list[str]


class Tracing:
    """The tracer of one app, rebuilt when a reload changes the tracing settings."""

    def __init__(self) -> None:
        self.tracer: Tracer | None = None
        self._provider: TracerProvider | None = None
        self._key: tuple[Any, ...] | None = None
        self._pinned = False

    @property
    def enabled(self) -> bool:
        return self.tracer is not None

    def configure(self, settings: TracingSettings) -> None:
        if self._pinned or settings.key() == self._key:
            return
        self._key = settings.key()
        old = self._provider
        if settings.enabled:
            try:
                self._provider = _provider(settings, None)
            except ImportError:
                logger.error(
                    "tracing is enabled but the OpenTelemetry SDK is not installed: "
                    "pip install 'gateway[otel]'"
                )
                self._provider = None
        else:
            self._provider = None
        self.tracer = self._tracer()
        if old is not None:
            _shutdown_later(old)
        if self._provider is not None:
            logger.info(
                "tracing on: OTLP to %s, service %s, sample ratio %s",
                settings.endpoint or "the OTEL_EXPORTER_OTLP_* endpoint",
                settings.service_name,
                "default" if settings.sample_ratio is None else settings.sample_ratio,
            )

    def use_exporter(self, exporter: SpanExporter, sample_ratio: float | None = None) -> None:
        """Export every span synchronously to ``exporter`` (tests, embedding); ignores reloads."""
        old = self._provider
        self._pinned = True
        self._provider = _provider(
            TracingSettings(enabled=True, sample_ratio=sample_ratio), exporter
        )
        self.tracer = self._tracer()
        if old is not None:
            _shutdown_later(old)

    def _tracer(self) -> Tracer | None:
        if self._provider is None:
            return None
        return self._provider.get_tracer("gateway", __version__)

    def start_server_span(
        self, name: str, carrier: Mapping[str, str], attributes: Mapping[str, AttributeValue]
    ) -> Span:
        """A SERVER span continuing the client's ``traceparent``/``tracestate``, if any."""
        from opentelemetry.trace import SpanKind
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        assert self.tracer is not None
        context = TraceContextTextMapPropagator().extract(carrier) if carrier else None
        return self.tracer.start_span(
            name, context=context, kind=SpanKind.SERVER, attributes=attributes
        )

    def start_client_span(
        self, name: str, parent: Span, attributes: Mapping[str, AttributeValue]
    ) -> Span:
        from opentelemetry.trace import SpanKind, set_span_in_context

        assert self.tracer is not None
        return self.tracer.start_span(
            name, context=set_span_in_context(parent), kind=SpanKind.CLIENT, attributes=attributes
        )

    def shutdown(self) -> None:
        if self._provider is not None:
            self._provider.shutdown()
            self._provider = None
            self.tracer = None


def span_ids(span: Span) -> tuple[str, str, bool]:
    """(trace id, span id, sampled) as W3C hex strings."""
    context = span.get_span_context()
    return f"{context.trace_id:032x}", f"{context.span_id:016x}", bool(context.trace_flags & 1)


def mark_error(span: Span, error_type: str, message: str | None = None) -> None:
    from opentelemetry.trace import Status, StatusCode

    span.set_attribute("error.type", error_type)
    span.set_status(Status(StatusCode.ERROR, message))


def _provider(settings: TracingSettings, exporter: SpanExporter | None) -> TracerProvider:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    resource = Resource.create({"service.name": settings.service_name})
    if settings.sample_ratio is None:
        provider = TracerProvider(resource=resource)  # sampler from OTEL_TRACES_SAMPLER*
    else:
        sampler = ParentBased(TraceIdRatioBased(settings.sample_ratio))
        provider = TracerProvider(resource=resource, sampler=sampler)
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        return provider
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    endpoint = settings.endpoint
    if endpoint is not None and not endpoint.rstrip("/").endswith("/v1/traces"):
        endpoint = endpoint.rstrip("/") + "/v1/traces"
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    return provider


def _shutdown_later(provider: TracerProvider) -> None:
    """Flush and close a replaced provider off the event loop (it may wait on the network)."""
    threading.Thread(target=provider.shutdown, name="otel-shutdown", daemon=True).start()
