"""Prometheus metrics, served at ``GET /metrics``.

Each app owns its registry, so several gateways in one process (tests) count separately.
With ``PROMETHEUS_MULTIPROC_DIR`` set (several uvicorn workers), prometheus_client keeps the
values in files shared by the workers and ``/metrics`` answers with the totals of all of them,
whichever worker serves the scrape. An exemplar (trace id, request id) is attached to the
latency histogram; it appears when the scraper asks for OpenMetrics and is not kept in
multi-process mode (a prometheus_client limit).

The per-request metrics go through a ``RequestTally``: counted in plain Python as requests
end, handed to prometheus_client in batches (before every scrape, and within a second).
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from bisect import bisect_left
from collections.abc import Iterable, Mapping
from typing import Any, Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.samples import Exemplar
from starlette.requests import Request
from starlette.responses import Response

LATENCY_BUCKETS: Final = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300)
TTFT_BUCKETS: Final = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30)
OVERHEAD_BUCKETS: Final = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
)
TOKEN_KINDS: Final = ("input", "output", "cached_input")  # the ``kind`` label of gateway_tokens
BREAKER_STATES: Final = {"closed": 0, "half_open": 1, "open": 2}
#: Distinct model label values kept before new ones are counted as "other": the model name
#: comes from the client, and a metric series per made-up name would grow without bound.
MAX_MODELS: Final = 500
NONE: Final = "none"
#: Exemplar label sets are limited to 128 characters; a long client request id is cut.
EXEMPLAR_REQUEST_ID_CHARS: Final = 64
#: Ended requests held before they are handed to prometheus_client at the latest, and the
#: seconds they may wait for it: the staleness a scrape of another worker can see.
TALLY_BATCH: Final = 1024
TALLY_SECONDS: Final = 1.0


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class LabelGuard:
    """Bounds the distinct values of one label; thread-safe, allocation-free once seen."""

    def __init__(self, limit: int) -> None:
        self._seen: set[str] = set()
        self._limit = limit
        self._lock = threading.Lock()

    def __call__(self, value: str | None) -> str:
        if value is None or value == "":
            return NONE
        if value in self._seen:
            return value
        with self._lock:
            if len(self._seen) < self._limit:
                self._seen.add(value)
                return value
        return "other"


class GatewayMetrics:
    """Every metric the gateway exports, registered on one registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self.multiprocess = multiprocess_dir() is not None
        self.model_label = LabelGuard(MAX_MODELS)
        r = self.registry
        self.requests = Counter(
            "gateway_requests",
            "Responses API requests by provider, upstream model and HTTP status.",
            ["provider", "model", "status"],
            registry=r,
        )
        self.in_flight = Gauge(
            "gateway_requests_in_flight",
            "Responses API requests being handled (streams until their last byte).",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.latency = Histogram(
            "gateway_request_duration_seconds",
            "Whole request time, to the last byte of a stream.",
            ["provider", "model", "stream"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "gateway_time_to_first_token_seconds",
            "Time from the request to the first content delta of a stream.",
            ["provider", "model"],
            buckets=TTFT_BUCKETS,
            registry=r,
        )
        self.overhead = Histogram(
            "gateway_overhead_seconds",
            "Time spent in the gateway itself: the whole request less the time blocked on "
            "upstream reads, on writes to the client, and in retry back-off.",
            ["stream"],
            buckets=OVERHEAD_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "gateway_tokens",
            "Tokens by provider, upstream model and kind (input, output, cached_input).",
            ["provider", "model", "kind"],
            registry=r,
        )
        self.cost = Counter(
            "gateway_cost_usd",
            "Cost in USD computed from real usage and the prices table.",
            ["provider", "model"],
            registry=r,
        )
        self.upstream_errors = Counter(
            "gateway_upstream_errors",
            "Failed upstream attempts by provider and error class.",
            ["provider", "class"],
            registry=r,
        )
        self.retries = Counter(
            "gateway_retries",
            "Upstream attempts that repeated the previous target.",
            ["provider"],
            registry=r,
        )
        self.fallbacks = Counter(
            "gateway_fallbacks",
            "Upstream attempts that moved to another target of an alias.",
            ["alias", "from_provider", "to_provider"],
            registry=r,
        )
        self.breaker_state = Gauge(
            "gateway_breaker_state",
            "Circuit breaker per provider: 0 closed, 1 half-open, 2 open (worst worker).",
            ["provider"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.reloads = Counter(
            "gateway_config_reloads",
            "Config reload attempts by result (each worker reloads the file itself).",
            ["result"],
            registry=r,
        )
        self.config_info = Gauge(
            "gateway_config_info",
            "1 for the config version a live worker runs.",
            ["version"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.agent_sent = Counter(
            "gateway_agent_messages_sent",
            "Agent messages accepted, by channel ('direct' for direct messages).",
            ["channel"],
            registry=r,
        )
        self.agent_delivered = Counter(
            "gateway_agent_messages_delivered",
            "Agent messages handed to a reader (long poll, page or SSE), by channel.",
            ["channel"],
            registry=r,
        )
        self.inbox_depth = Gauge(
            "gateway_agent_inbox_depth",
            "Messages accepted for an agent and not yet delivered to it.",
            ["agent"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self._version: str | None = None
        self._breakers: dict[str, str] = {}
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        self.tally = RequestTally(self)

    def child(self, metric: MetricWrapperBase, *values: str) -> Any:
        """``metric.labels(*values)``, remembered: ``labels`` validates and locks on every
        call, which is most of the cost of counting a request."""
        key = (id(metric), values)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*values)
        return found

    # ------------------------------------------------------------------ events

    def config_version(self, version: str) -> None:
        if version == self._version:
            return
        if self._version is not None:
            self.config_info.labels(self._version).set(0)
        self._version = version
        self.config_info.labels(version).set(1)

    def breaker(self, provider: str, state: str) -> str | None:
        """Set a provider's breaker state; returns the state it had (None: first seen)."""
        previous = self._breakers.get(provider)
        if previous != state:
            self._breakers[provider] = state
            self.breaker_state.labels(provider).set(BREAKER_STATES.get(state, 0))
        return previous

    def agent_message_sent(self, channel: str | None, recipients: Iterable[str]) -> None:
        self.agent_sent.labels(channel or "direct").inc()
        for agent in recipients:
            self.inbox_depth.labels(agent).inc()

    def agent_messages_delivered(self, agent: str, channels: Mapping[str | None, int]) -> None:
        """``channels``: how many newly delivered messages came from each channel."""
        total = 0
        for channel, count in channels.items():
            self.agent_delivered.labels(channel or "direct").inc(count)
            total += count
        if total:
            self.inbox_depth.labels(agent).dec(total)

    # ------------------------------------------------------------------ exposition

    def render(self, accept: str | None) -> tuple[bytes, str]:
        """The exposition for a scrape: OpenMetrics (with exemplars) when asked for it."""
        encoder, content_type = choose_encoder(accept or "")
        self.tally.flush()  # this worker's scrape sees every request ended before it
        if not self.multiprocess:
            return encoder(self.registry), content_type
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        collector: Any = multiprocess.MultiProcessCollector  # untyped in prometheus_client
        collector(registry)
        return encoder(registry), content_type

    async def endpoint(self, request: Request) -> Response:
        body, content_type = self.render(request.headers.get("accept"))
        return Response(body, 200, headers={"content-type": content_type})


class EndedRequest:
    """What the metrics keep of one ended ``/v1/responses`` request.

    Built per request: a plain class (README, "The hot path, compiled").
    """

    def __init__(
        self,
        provider: str,
        model: str,
        status: str,
        stream: str,  # "true" | "false"
        duration: float,
        overhead: float,
        ttft: float | None,
        input_tokens: int | None,
        output_tokens: int | None,
        cached_tokens: int | None,
        cost_usd: float | None,
        trace_id: str,  # the exemplar on its latency bucket (single process only)
        request_id: str,
    ) -> None:
        self.provider: Final = provider
        self.model: Final = model
        self.status: Final = status
        self.stream: Final = stream
        self.duration: Final = duration
        self.overhead: Final = overhead
        self.ttft: Final = ttft
        self.input_tokens: Final = input_tokens
        self.output_tokens: Final = output_tokens
        self.cached_tokens: Final = cached_tokens
        self.cost_usd: Final = cost_usd
        self.trace_id: Final = trace_id
        self.request_id: Final = request_id


class RequestTally:
    """The per-request metrics, counted as plain Python and handed to prometheus_client in
    batches.

    prometheus_client locks, validates and scans buckets on every ``inc`` and ``observe``:
    about 20 µs for the half dozen updates of one request, a tenth of the gateway's own cost
    per request. Here an ended request is one tuple appended; ``flush`` adds a batch up and
    applies one update per label set and bucket. A scrape flushes first, so it sees every
    request that ended before it; a timer flushes within ``TALLY_SECONDS`` so that, with
    several workers, a scrape served by one sees the others' requests too.
    """

    def __init__(
        self, metrics: GatewayMetrics, batch: int = TALLY_BATCH, seconds: float = TALLY_SECONDS
    ) -> None:
        self._metrics = metrics
        self._batch = batch
        self._seconds = seconds
        self._pending: list[EndedRequest] = []
        self._timer: asyncio.TimerHandle | None = None
        self.in_flight = 0

    def started(self) -> None:
        self.in_flight += 1
        self._schedule()

    def ended(self, request: EndedRequest | None) -> None:
        """A request ended; ``None`` when metrics are off in its config (it is still out of
        flight)."""
        self.in_flight -= 1
        if request is None:
            self._schedule()
            return
        pending = self._pending
        pending.append(request)
        if len(pending) >= self._batch:
            self.flush()
        else:
            self._schedule()

    def _schedule(self) -> None:
        if self._timer is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # counted outside an event loop: nothing to wait for
            self.flush()
            return
        self._timer = loop.call_later(self._seconds, self.flush)

    def flush(self) -> None:
        """Apply the pending requests and the in-flight count to the metrics."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        metrics = self._metrics
        metrics.in_flight.set(self.in_flight)
        pending, self._pending = self._pending, []
        if not pending:
            return
        requests: dict[tuple[str, ...], int] = {}
        # (provider, model) → input, output and cached-input tokens, and cost: one entry a
        # request, whatever it used.
        usage: dict[tuple[str, str], list[float]] = {}
        exemplars = not metrics.multiprocess
        latency = _Histograms(metrics.latency)
        overhead = _Histograms(metrics.overhead)
        ttft = _Histograms(metrics.ttft)
        for request in pending:
            provider, model, stream = request.provider, request.model, request.stream
            key = (provider, model, request.status)
            requests[key] = requests.get(key, 0) + 1
            # Each request is its latency bucket's exemplar candidate; the last one stays.
            latency.add((provider, model, stream), request.duration, request if exemplars else None)
            overhead.add((stream,), request.overhead)
            if request.ttft is not None:
                ttft.add((provider, model), request.ttft)
            route = (provider, model)
            totals = usage.get(route)
            if totals is None:
                totals = usage[route] = [0, 0, 0, 0.0]
            totals[0] += request.input_tokens or 0
            totals[1] += request.output_tokens or 0
            totals[2] += request.cached_tokens or 0
            totals[3] += request.cost_usd or 0.0
        child = metrics.child
        for labels, count in requests.items():
            child(metrics.requests, *labels).inc(count)
        for (provider, model), totals in usage.items():
            for kind, used in zip(TOKEN_KINDS, totals[:3], strict=True):
                if used:
                    child(metrics.tokens, provider, model, kind).inc(used)
            if totals[3]:
                child(metrics.cost, provider, model).inc(totals[3])
        now = time.time()  # the exemplars' timestamp: within a tally interval of their request
        for histograms in (latency, overhead, ttft):
            histograms.apply(child, now)


class _Observations:
    """One label set's observations of a batch: a count per bucket, the sum, exemplars."""

    __slots__ = ("counts", "exemplars", "total")

    def __init__(self, buckets: int) -> None:
        self.counts = [0] * buckets
        self.total = 0.0
        # Bucket → the last request observed in it, and its value: the exemplar is built once,
        # when the batch is applied, not for every request.
        self.exemplars: dict[int, tuple[EndedRequest, float]] = {}


class _Histograms:
    """A batch of observations for one histogram, applied one update per bucket.

    Applying reaches into prometheus_client's histogram child (``_upper_bounds``,
    ``_buckets``, ``_sum``) to do what ``Histogram.observe`` does, a count at a time; the
    version is pinned, and the scrape tests read the result back.
    """

    def __init__(self, histogram: Histogram) -> None:
        self._histogram = histogram
        self._bounds: list[float] = list(histogram._upper_bounds)  # ends with +Inf
        self._by_labels: dict[tuple[str, ...], _Observations] = {}

    def add(
        self, labels: tuple[str, ...], value: float, request: EndedRequest | None = None
    ) -> None:
        """Count ``value``; ``request``, when given, is its bucket's exemplar candidate."""
        observations = self._by_labels.get(labels)
        if observations is None:
            observations = self._by_labels[labels] = _Observations(len(self._bounds))
        bucket = bisect_left(self._bounds, value)  # the first bound >= value, as observe
        observations.counts[bucket] += 1
        observations.total += value
        if request is not None:
            observations.exemplars[bucket] = (request, value)

    def apply(self, child: Any, now: float) -> None:
        for labels, observations in self._by_labels.items():
            target = child(self._histogram, *labels)
            target._sum.inc(observations.total)
            buckets = target._buckets
            for bucket, count in enumerate(observations.counts):
                if count:
                    buckets[bucket].inc(count)
            for bucket, (request, value) in observations.exemplars.items():
                exemplar = {
                    "trace_id": request.trace_id,
                    "request_id": request.request_id[:EXEMPLAR_REQUEST_ID_CHARS],
                }
                buckets[bucket].set_exemplar(Exemplar(exemplar, value, now))
