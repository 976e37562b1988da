"""Run wrk with ``post.lua`` and parse the JSON line its ``done()`` prints."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from bench.procs import BenchError, pinned

LUA = Path(__file__).with_name("post.lua")


def wrk_path() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise BenchError(
            "wrk not found on PATH: the benchmark's load generator is the system package "
            "(apt-get install wrk); .ci/run installs it"
        )
    return path


def start_wrk(
    url: str,
    body_file: Path,
    *,
    concurrency: int,
    seconds: int,
    cpu: int | None,
    marker: bytes | None = None,
    end_marker: bytes | None = None,
    timeout_s: int = 30,
) -> subprocess.Popen[str]:
    argv = [
        wrk_path(),
        "-t1",
        f"-c{concurrency}",
        f"-d{max(1, seconds)}s",
        f"--timeout={timeout_s}s",
        "-s",
        str(LUA),
        url,
        "--",
        str(body_file),
    ]
    if marker is not None:
        argv += [marker.decode(), (end_marker or b"").decode()]
    return subprocess.Popen(
        pinned(argv, cpu), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def finish_wrk(popen: subprocess.Popen[str], seconds: int) -> dict[str, Any]:
    """Wait for wrk and turn its numbers into requests/s, latency ms, errors, markers/s."""
    out, _ = popen.communicate(timeout=seconds + 120)
    line = next((ln for ln in out.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if popen.returncode != 0 or line is None:
        raise BenchError(f"wrk failed (exit {popen.returncode}):\n{out[-2000:]}")
    raw = json.loads(line.removeprefix("BENCH_JSON "))
    duration = raw["duration_us"] / 1e6
    lat = raw["latency_us"]
    errors = dict(raw["errors"])
    # wrk counts statuses > 399; the script (for streams) counts every non-200: keep the larger.
    errors["status"] = max(errors["status"], raw["non200"])
    errors["incomplete"] = raw["incomplete"]
    return {
        "requests": raw["requests"],
        "duration_s": round(duration, 3),
        "rps": round(raw["requests"] / duration, 1) if duration else 0.0,
        "latency_ms": {k: round(lat[k] / 1000, 3) for k in ("mean", "p50", "p90", "p99", "p999")}
        | {"max": round(lat["max"] / 1000, 3)},
        "errors": sum(errors.values()),
        "error_detail": {k: v for k, v in errors.items() if v},
        "markers": raw["markers"],
        "bytes": raw["bytes"],
    }


def run_wrk(
    url: str,
    body_file: Path,
    *,
    concurrency: int,
    seconds: int,
    cpu: int | None,
    marker: bytes | None = None,
    end_marker: bytes | None = None,
) -> dict[str, Any]:
    popen = start_wrk(
        url,
        body_file,
        concurrency=concurrency,
        seconds=seconds,
        cpu=cpu,
        marker=marker,
        end_marker=end_marker,
    )
    return finish_wrk(popen, seconds)
