"""Several workers: with PROMETHEUS_MULTIPROC_DIR, any worker's /metrics has the totals.

Two real processes count into one directory, as uvicorn workers do; the scrape combines them.
(A run of ``gateway serve --workers 2`` with the same check takes 5-10 s to start here, too
slow for the suite; the workers share nothing else with this path.)
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gateway.observability.metrics import GatewayMetrics
from tests.observability.conftest import Samples, value

WORKER = textwrap.dedent(
    """
    import sys
    from gateway.observability.metrics import GatewayMetrics

    requests, breaker, depth = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    metrics = GatewayMetrics()
    for _ in range(requests):
        metrics.requests.labels("echo", "echo", "200").inc()
        metrics.in_flight.inc()
        metrics.in_flight.dec()
    metrics.tokens.labels("echo", "echo", "output").inc(2 * requests)
    metrics.breaker("claude", breaker)
    metrics.config_version("9c1e0a2b7d4f")
    metrics.inbox_depth.labels("coder").inc(depth)
    """
)


def _parse(text: bytes) -> Samples:
    from prometheus_client.parser import text_string_to_metric_families

    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text.decode())
        for sample in family.samples
    }


def test_two_workers_report_the_totals_of_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    workers = [
        subprocess.Popen([sys.executable, "-c", WORKER, *args])
        for args in (("5", "open", "1"), ("7", "closed", "-1"))  # one sends, one delivers
    ]
    assert [worker.wait(timeout=30) for worker in workers] == [0, 0]
    assert len(list(tmp_path.glob("counter_*.db"))) == 2  # a file per worker

    body, content_type = GatewayMetrics().render("text/plain")
    samples = _parse(body)
    assert content_type.startswith("text/plain")
    assert (
        value(samples, "gateway_requests_total", provider="echo", model="echo", status="200") == 12
    )
    assert (
        value(samples, "gateway_tokens_total", provider="echo", model="echo", kind="output") == 24
    )
    assert value(samples, "gateway_requests_in_flight") == 0
    assert value(samples, "gateway_breaker_state", provider="claude") == 2  # the worst worker
    assert value(samples, "gateway_config_info", version="9c1e0a2b7d4f") == 1
    assert value(samples, "gateway_agent_inbox_depth", agent="coder") == 0
