"""Smoke run of the benchmark (``python -m bench --quick``) so bench/ cannot rot.

A few seconds of tiny load through every scenario; the figures are checked for sanity only
(something was measured, nothing failed), never for speed: the benchmark is not a timed test.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from gateway import native

ROOT = Path(__file__).resolve().parents[1]
TARGETS = ("direct", "relay", "gateway")


def _run_quick(out: Path) -> dict[str, Any]:
    assert shutil.which("wrk"), (
        "wrk is not installed: it is the benchmark's load generator "
        "(apt-get install wrk; .ci/run installs it)"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--output", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, f"bench failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    results: dict[str, Any] = json.loads(out.read_text())
    return results


def test_quick_benchmark_measures_every_target(tmp_path: Path) -> None:
    results = _run_quick(tmp_path / "bench.json")

    assert results["startup_errors"] == {}
    assert results["meta"]["quick"] is True
    scenarios = results["scenarios"]
    assert set(scenarios) == {
        "ns-c1",
        "ns-c32",
        "ns-c128",
        "stream-c32",
        "anthropic-stream-c32",
        "slow-streams",
    }
    for name, scenario in scenarios.items():
        assert set(scenario["targets"]) == set(TARGETS), name
        for target, res in scenario["targets"].items():
            where = f"{name}/{target}"
            if "skipped" in res:  # only until the gateway bundles an Anthropic preset
                assert (name, target) == ("anthropic-stream-c32", "gateway"), where
                continue
            assert "error" not in res, f"{where}: {res.get('error')}"
            assert res["errors"] == 0, f"{where}: {res.get('error_detail')}"
            assert res["rps"] > 0, where
            if scenario["kind"] == "streams":
                assert res["completed"] == res["streams"] > 0, where
                assert res["max_open"] == res["streams"], where
                assert res["first_token_ms"]["p50"] > 0, where
            else:
                assert res["requests"] > 0, where
                assert 0 < res["latency_ms"]["p50"] <= res["latency_ms"]["p99"], where
            if scenario["stream"]:
                assert res["chunks_per_s"] > 0, where
            if target != "direct":
                assert res["rss_mb"] > 0, where

    for key in ("rps_gateway_over_relay", "gateway_added_p50_ms", "gateway_added_p99_ms"):
        assert scenarios["ns-c32"]["ratios"][key] is not None, key
    assert scenarios["stream-c32"]["ratios"]["chunks_gateway_over_relay"] is not None
    # wrk scenarios run every target in turn, round after round; the ratio is the median's.
    per_round = scenarios["ns-c32"]["ratios"]["rps_gateway_over_relay_rounds"]
    assert len(per_round) == 2
    assert scenarios["ns-c32"]["ratios"]["rps_gateway_over_relay"] == min(per_round)  # of two
    assert [r["rps"] for r in scenarios["ns-c32"]["targets"]["gateway"]["rounds"]]
    assert scenarios["ns-c1"]["targets"]["gateway"]["overhead_headers"], "no own-time header"

    soak = results["soak"]
    assert "error" not in soak, soak.get("error")
    assert soak["requests"] > 0 and soak["errors"] == 0
    assert soak["rss_first_window_mb"] > 0 and soak["rss_end_mb"] > 0

    # Every target of the issue got a measured value (pass or fail is for the full run).
    for target in results["targets"]:
        assert target["value"] is not None, target["name"]


def _bench_module(module: str, *args: str) -> str:
    """``python -m bench.MODULE ARGS``'s output; it must succeed."""
    proc = subprocess.run(
        [sys.executable, "-m", f"bench.{module}", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return proc.stdout


def _hotpath(*args: str) -> str:
    return _bench_module("hotpath", *args)


def test_the_hot_path_microbenchmark_times_every_stage() -> None:
    stdout = _hotpath("--quick", "--preset", "anthropic")
    for stage in ("parse_body", "build_request", "events_from_body", "events_from_chunk"):
        assert stage in stdout
    assert "jinja:" not in stdout  # no template of the preset falls back to Jinja
    assert f"hot path: {len(native.COMPILED)} modules compiled, 0 from source, 0 stale" in stdout


def test_the_hot_path_counts_instructions_per_stage() -> None:
    """``--instructions``: callgrind's count of instructions per call of each stage."""
    assert shutil.which("valgrind"), (
        "valgrind is not installed: --instructions counts under it "
        "(apt-get install valgrind; .ci/run installs it)"
    )
    totals = _instructions(_hotpath("--instructions", "--quick", "--preset", "openai-chat"))
    assert set(totals) == {"request hello", "request agent", "chunk (of 50)"}
    for label, count in totals.items():
        assert 5_000 < count < 5_000_000, (label, count)  # per call, not the whole run
    # Each count is its own stage's: the agent turn (four items, a tool) costs more than hello.
    assert totals["request agent"] > 1.3 * totals["request hello"]


def _instructions(stdout: str) -> dict[str, float]:
    """``label total N instructions = ...`` rows → ``{label: N}``."""
    totals = {}
    for line in stdout.splitlines():
        label, total, rest = line.partition(" total ")
        if total and "instructions" in rest:
            totals[label.strip()] = float(rest.split()[0].replace(",", ""))
    return totals


def _inprocess(*args: str) -> str:
    return _bench_module("inprocess", *args)


def _per_request(stdout: str, unit: str) -> float:
    """``N ... requests at c=C, openai-chat: X <unit> a request`` → X."""
    for line in stdout.splitlines():
        if line.endswith(f"{unit} a request"):
            return float(line.rsplit(": ", 1)[1].split()[0].replace(",", ""))
    raise AssertionError(f"no '{unit} a request' line in:\n{stdout}")


def test_the_app_in_process_costs_cpu_per_request() -> None:
    """Requests through the whole ASGI app, no server: CPU time per request, streams too."""
    whole = _inprocess("--requests", "64", "--warmup", "32")
    assert "64 non-streaming requests at c=32" in whole
    assert 10 < _per_request(whole, "µs CPU") < 100_000
    streams = _inprocess("--stream", "--chunks", "5", "--requests", "32", "--warmup", "32")
    assert "32 5-chunk streams at c=32" in streams
    assert 10 < _per_request(streams, "µs CPU") < 100_000


def test_the_app_in_process_counts_instructions_per_request() -> None:
    """``--instructions``: the measured requests' instructions under callgrind, per request."""
    assert shutil.which("valgrind"), "valgrind is not installed (.ci/run installs it)"
    stdout = _inprocess("--instructions", "--requests", "32", "--warmup", "32")
    assert f"hot path: {len(native.COMPILED)} modules compiled, 0 from source" in stdout
    # Per request, not the whole run: the warm-up and start-up are in the first dump.
    assert 100_000 < _per_request(stdout, "instructions") < 5_000_000
