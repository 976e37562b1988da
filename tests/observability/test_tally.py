"""The request tally: requests counted in plain Python reach prometheus_client in batches,
with the values ``Histogram.observe`` and ``Counter.inc`` would have given one at a time."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CollectorRegistry, Histogram

from gateway.observability.metrics import (
    LATENCY_BUCKETS,
    OVERHEAD_BUCKETS,
    EndedRequest,
    GatewayMetrics,
    RequestTally,
)


def ended(
    duration: float,
    *,
    overhead: float = 0.0002,
    status: str = "200",
    stream: str = "false",
    ttft: float | None = None,
    tokens: tuple[int | None, int | None, int | None] = (10, 5, None),
    cost: float | None = None,
) -> EndedRequest:
    return EndedRequest(
        "openai", "gpt-4o", status, stream, duration, overhead, ttft, *tokens, cost, "t" * 32, "r"
    )


def sample(metrics: GatewayMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_a_flush_gives_what_observing_one_at_a_time_gives() -> None:
    metrics = GatewayMetrics(CollectorRegistry())
    reference = Histogram("reference", "", buckets=LATENCY_BUCKETS, registry=CollectorRegistry())
    # On bucket bounds, between them, below the first and past the last.
    durations = [0.05, 0.05, 0.07, 0.1, 0.0, 2.5, 299.0, 300.0, 301.0, 1e9]
    for duration in durations:
        metrics.tally.started()
        metrics.tally.ended(ended(duration))
        reference.observe(duration)
    metrics.tally.flush()

    expected = {
        sample.labels["le"]: sample.value
        for sample in reference.collect()[0].samples
        if sample.name.endswith("_bucket")
    }
    for bound, count in expected.items():
        got = sample(
            metrics,
            "gateway_request_duration_seconds_bucket",
            provider="openai",
            model="gpt-4o",
            stream="false",
            le=bound,
        )
        assert got == count, bound
    assert sample(
        metrics,
        "gateway_request_duration_seconds_sum",
        provider="openai",
        model="gpt-4o",
        stream="false",
    ) == pytest.approx(sum(durations))
    assert sample(
        metrics, "gateway_requests_total", provider="openai", model="gpt-4o", status="200"
    ) == len(durations)
    assert sample(
        metrics, "gateway_tokens_total", provider="openai", model="gpt-4o", kind="input"
    ) == 10 * len(durations)
    assert (
        sample(
            metrics, "gateway_tokens_total", provider="openai", model="gpt-4o", kind="cached_input"
        )
        is None
    )


def test_label_sets_stream_ttft_and_cost_are_kept_apart() -> None:
    metrics = GatewayMetrics(CollectorRegistry())
    tally = metrics.tally
    for request in (
        ended(0.2, status="200", stream="true", ttft=0.03, cost=0.5),
        ended(0.2, status="200", stream="true", ttft=0.2, cost=0.25),
        ended(0.2, status="502", overhead=0.3),
    ):
        tally.started()
        tally.ended(request)
    tally.flush()

    labels = {"provider": "openai", "model": "gpt-4o"}
    assert sample(metrics, "gateway_requests_total", **labels, status="200") == 2
    assert sample(metrics, "gateway_requests_total", **labels, status="502") == 1
    assert sample(metrics, "gateway_time_to_first_token_seconds_count", **labels) == 2
    assert sample(metrics, "gateway_time_to_first_token_seconds_bucket", **labels, le="0.05") == 1
    assert sample(metrics, "gateway_cost_usd_total", **labels) == pytest.approx(0.75)
    assert sample(metrics, "gateway_overhead_seconds_count", stream="true") == 2
    assert sample(metrics, "gateway_overhead_seconds_bucket", stream="false", le="0.25") == 0
    assert sample(metrics, "gateway_overhead_seconds_bucket", stream="false", le="+Inf") == 1
    assert OVERHEAD_BUCKETS[-1] == 0.25  # the last finite bound the 0.3 s overhead is past


def test_a_scrape_sees_every_ended_request_and_the_requests_in_flight() -> None:
    metrics = GatewayMetrics(CollectorRegistry())
    for _ in range(3):
        metrics.tally.started()
    metrics.tally.ended(ended(0.1))

    body, _ = metrics.render("text/plain")

    text = body.decode()
    assert 'gateway_requests_total{model="gpt-4o",provider="openai",status="200"} 1.0' in text
    assert "gateway_requests_in_flight 2.0" in text


def test_an_openmetrics_scrape_carries_the_request_exemplar() -> None:
    metrics = GatewayMetrics(CollectorRegistry())
    metrics.tally.started()
    metrics.tally.ended(ended(0.07))

    body, _ = metrics.render("application/openmetrics-text")

    bucket = next(
        line
        for line in body.decode().splitlines()
        if line.startswith("gateway_request_duration_seconds_bucket") and 'le="0.1"' in line
    )
    assert f'# {{request_id="r",trace_id="{"t" * 32}"}} 0.07' in bucket


async def test_requests_reach_the_metrics_within_a_second_without_a_scrape() -> None:
    """Another worker's scrape reads the shared files: a worker must not sit on its counts."""
    metrics = GatewayMetrics(CollectorRegistry())
    metrics.tally = RequestTally(metrics, seconds=0.05)
    metrics.tally.started()
    metrics.tally.ended(ended(0.1))
    labels = {"provider": "openai", "model": "gpt-4o", "status": "200"}
    assert sample(metrics, "gateway_requests_total", **labels) is None  # not yet applied

    await asyncio.sleep(0.2)

    assert sample(metrics, "gateway_requests_total", **labels) == 1
    assert sample(metrics, "gateway_requests_in_flight") == 0


async def test_a_full_batch_is_applied_at_once() -> None:
    metrics = GatewayMetrics(CollectorRegistry())
    metrics.tally = RequestTally(metrics, batch=4)
    for _ in range(4):
        metrics.tally.started()
        metrics.tally.ended(ended(0.1))

    assert (
        sample(metrics, "gateway_requests_total", provider="openai", model="gpt-4o", status="200")
        == 4
    )
