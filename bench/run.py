"""The benchmark in one command: ``python -m bench`` (see docs/benchmark.md).

Starts the fake upstream (core 1), the pass-through relay and the gateway (core 0, one worker
each), then for every scenario loads direct → relay → gateway with wrk (core 1) or with the
raw stream client, and writes figures, ratios and pass/fail against the targets as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import uvloop

from bench import report
from bench.procs import (
    BenchError,
    Proc,
    core_busy_s,
    free_port,
    pin_self,
    post,
    raise_nofile,
    set_priority,
    start,
    wait_listening,
)
from bench.scenarios import (
    ALL,
    NAMES,
    RESPONSES_MARKERS,
    TARGETS,
    Endpoint,
    Scenario,
    endpoint,
    gateway_has_preset,
    gateway_yaml,
    quick,
)
from bench.streams import StreamsReport, run_streams
from bench.wrk import finish_wrk, run_wrk, start_wrk, wrk_path
from gateway import native

DEFAULT_OUTPUT = Path(__file__).with_name("results") / "latest.json"
SERVER_CPU, LOAD_CPU = 0, 1  # gateway / relay on core 0; fake upstream, wrk, client on core 1

Log = Callable[[str], None]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--quick", action="store_true", help="tiny load, ~1 s per run (smoke test)")
    p.add_argument(
        "--scenarios",
        default="all",
        help=f"comma-separated subset of: {', '.join(NAMES)} (default all)",
    )
    p.add_argument(
        "--targets",
        default=",".join(TARGETS),
        help="comma-separated subset of direct,relay,gateway",
    )
    p.add_argument("--duration", type=int, default=5, help="seconds per measured wrk run")
    p.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="wrk scenarios: rounds of every target in turn (ratios: the median round's)",
    )
    p.add_argument("--warmup", type=int, default=2, help="seconds of warm-up before each run")
    p.add_argument("--soak-seconds", type=int, default=None, help="soak length (default 600)")
    p.add_argument("--slow-streams", type=int, default=None, help="streams in slow-streams")
    p.add_argument("--slow-chunks", type=int, default=None, help="chunks per slow stream")
    p.add_argument("--slow-delay-ms", type=int, default=None, help="ms between slow chunks")
    p.add_argument("--slow-ramp", type=float, default=None, help="seconds to open all streams")
    p.add_argument("--ttfb-streams", type=int, default=200, help="sequential streams for TTFB")
    p.add_argument(
        "--relay-client",
        choices=("raw", "httpx", "aiohttp"),
        default="raw",
        help="the relay's upstream client (default raw: the ceiling; httpx: like for like)",
    )
    p.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="JSON results path")
    p.add_argument("--no-pin", action="store_true", help="don't pin processes to cores")
    p.add_argument(
        "--nice",
        type=int,
        default=0,
        help="CPU priority for the bench's processes (e.g. -10, as root, on a shared machine)",
    )
    p.add_argument("--keep-logs", action="store_true", help="keep server logs (path printed)")
    p.add_argument("--strict", action="store_true", help="exit 1 when a target fails")
    args = p.parse_args(argv)
    names = NAMES if args.scenarios == "all" else tuple(args.scenarios.split(","))
    unknown = set(names) - set(NAMES)
    if unknown:
        p.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    args.scenario_names = names
    args.target_names = tuple(t for t in TARGETS if t in args.targets.split(","))
    if args.quick:
        args.duration, args.warmup, args.ttfb_streams, args.rounds = 1, 0, 5, 2
        args.soak_seconds = 3 if args.soak_seconds is None else args.soak_seconds
    if args.soak_seconds is None:
        args.soak_seconds = 600
    return args


class Bench:
    def __init__(self, args: argparse.Namespace, workdir: Path, log: Log) -> None:
        self.args = args
        self.workdir = workdir
        self.log = log
        pin = not args.no_pin and (os.cpu_count() or 1) >= 2
        self.server_cpu = SERVER_CPU if pin else None
        self.load_cpu = LOAD_CPU if pin else None
        self.procs: dict[str, Proc] = {}
        self.startup_errors: dict[str, str] = {}
        self.responses_marker: bytes | None = None
        self.anthropic = False  # the gateway has an Anthropic preset to point at the fake
        self.env = dict(os.environ, PYTHONUNBUFFERED="1")

    # --- processes -------------------------------------------------------------------

    def start_all(self) -> None:
        py = sys.executable
        up = free_port()
        fake = start(
            "fake-upstream",
            [py, "-m", "bench.fake_upstream", "--port", str(up)],
            port=up,
            cpu=self.load_cpu,
            log_dir=self.workdir,
            env=self.env,
        )
        self.procs["direct"] = fake
        wait_listening(fake, 20)
        if "relay" in self.args.target_names:
            port = free_port()
            relay = [py, "-m", "bench.relay", "--port", str(port)]
            relay += ["--upstream", f"http://127.0.0.1:{up}", "--client", self.args.relay_client]
            self._start_server("relay", relay, port)
        if "gateway" in self.args.target_names:
            config = self.workdir / "gateway.yaml"
            self.anthropic = gateway_has_preset("anthropic")
            config.write_text(gateway_yaml(up, anthropic=self.anthropic))
            port = free_port()
            gateway = [py, "-m", "gateway", "serve", "--config", str(config)]
            gateway += ["--host", "127.0.0.1", "--port", str(port)]
            gateway += ["--no-reload-config", "--log-level", "warning"]
            self._start_server("gateway", gateway, port)

    def _start_server(self, name: str, argv: list[str], port: int) -> None:
        proc = start(name, argv, port=port, cpu=self.server_cpu, log_dir=self.workdir, env=self.env)
        try:
            wait_listening(proc, 60)
        except BenchError as exc:
            proc.stop()
            self.startup_errors[name] = str(exc)
            self.log(f"!! {name} did not start: {exc}")
            return
        self.procs[name] = proc
        self.log(f"{name}: pid {proc.pid}, http://127.0.0.1:{port}")

    def stop_all(self) -> None:
        for name in ("gateway", "relay", "direct"):  # the fake last: in-flight calls finish
            if name in self.procs:
                self.procs[name].stop()

    def targets(self) -> list[str]:
        return [t for t in self.args.target_names if t in self.procs or t in self.startup_errors]

    # --- probes --------------------------------------------------------------------

    def probe(self, ep: Endpoint, s: Scenario) -> None:
        """One request before loading: the right status and shape, or a clear error."""
        answer = post(ep.port, ep.path, ep.body)
        if answer.status != 200:
            raise BenchError(
                f"probe {ep.target} {ep.path} -> HTTP {answer.status}: {answer.body[:300]!r}"
            )
        if not s.stream:
            if b"tok0" not in answer.body:
                raise BenchError(f"probe {ep.target}: no answer text in {answer.body[:300]!r}")
            return
        if ep.target == "gateway" and self.responses_marker is None:
            self.responses_marker = next(
                (m for m in RESPONSES_MARKERS if answer.body.count(m) == s.chunks), None
            )
            if self.responses_marker is None:
                raise BenchError(
                    f"probe gateway: no Responses delta marker seen {s.chunks} times in "
                    f"{answer.body[:600]!r}"
                )
            ep = endpoint("gateway", ep.port, s, self.responses_marker)
        assert ep.marker is not None and ep.end_marker is not None
        seen = answer.body.count(ep.marker)
        if seen != s.chunks or ep.end_marker not in answer.body:
            raise BenchError(
                f"probe {ep.target}: {seen} deltas of {s.chunks}, end marker "
                f"{'present' if ep.end_marker in answer.body else 'missing'}"
            )

    def endpoint(self, target: str, s: Scenario) -> Endpoint:
        return endpoint(target, self.procs[target].port, s, self.responses_marker)

    def body_file(self, ep: Endpoint, s: Scenario) -> Path:
        path = self.workdir / f"{s.name}-{ep.target}.json"
        path.write_bytes(ep.body)
        return path

    def rss(self, target: str) -> dict[str, float | None]:
        if target == "direct":  # no process in the middle
            return {"rss_mb": None, "peak_rss_mb": None}
        proc = self.procs[target]
        return {
            "rss_mb": round(proc.rss_kb() / 1024, 1),
            "peak_rss_mb": round(proc.peak_rss_kb() / 1024, 1),
        }

    def cpu_snapshot(self, target: str) -> tuple[float, float]:
        mine = self.procs[target].cpu_s() if target != "direct" else 0.0
        return mine, core_busy_s(self.server_cpu) if self.server_cpu is not None else 0.0

    def cpu_use(
        self, target: str, before: tuple[float, float], seconds: float, requests: int, chunks: int
    ) -> dict[str, float]:
        """The middle process's CPU use, and other processes' use of its core (noise).

        CPU time per request (and per chunk) is what the process's own work costs, and
        holds up far better than requests/s when other processes share the core.
        """
        if target == "direct" or not seconds:
            return {}
        mine, core = self.cpu_snapshot(target)
        used = mine - before[0]
        out = {"cpu_util": round(used / seconds, 3)}
        if requests:
            out["cpu_ms_per_request"] = round(used * 1000 / requests, 4)
        if chunks:
            out["cpu_us_per_chunk"] = round(used * 1e6 / chunks, 2)
        if self.server_cpu is not None:
            other = (core - before[1]) - (mine - before[0])
            out["core_other_util"] = round(max(0.0, other) / seconds, 3)
        return out

    def gateway_overhead_header(self, ep: Endpoint) -> dict[str, str]:
        """The gateway's own-time response header(s), if it sends any (issue 9, item 4)."""
        answer = post(ep.port, ep.path, ep.body)
        return {
            k: v
            for k, v in answer.headers.items()
            if any(w in k for w in ("overhead", "gateway-time", "server-timing"))
        }

    # --- scenarios -----------------------------------------------------------------

    def run_scenario(self, s: Scenario) -> dict[str, Any]:
        out: dict[str, Any] = {
            "about": s.about,
            "kind": s.kind,
            "api": s.api,
            "stream": s.stream,
            "chunks": s.chunks,
            "delay_ms": s.delay_ms,
            "concurrency": s.concurrency,
            "targets": {},
        }
        if s.kind == "streams":
            out["ramp_s"] = s.ramp_s
        # The machine's speed drifts within seconds on a shared host: wrk scenarios run every
        # target in turn, round after round, and each ratio is the median of the rounds'.
        rounds = 1 if s.kind == "streams" else max(1, self.args.rounds)
        runs: dict[str, list[report.Result]] = {}
        for number in range(1, rounds + 1):
            for target in self.targets():
                if target in out["targets"]:  # failed or skipped in an earlier round
                    continue
                if target in self.startup_errors:
                    out["targets"][target] = {"error": self.startup_errors[target]}
                    continue
                if target == "gateway" and s.api == "anthropic" and not self.anthropic:
                    out["targets"][target] = {"skipped": "the gateway has no 'anthropic' preset"}
                    continue
                self.log(f"-- {s.name} / {target}" + (f" (round {number})" if rounds > 1 else ""))
                try:
                    runs.setdefault(target, []).append(self.run_target(target, s))
                except (BenchError, OSError, subprocess.SubprocessError) as exc:
                    error = str(exc)
                    if target != "direct" and (tail := self.procs[target].log_tail(15)):
                        error += f"\n{target} log:\n{tail}"
                    self.log(f"!! {s.name} / {target}: {error}")
                    out["targets"][target] = {"error": error}
        for target, results in runs.items():
            if target not in out["targets"]:
                out["targets"][target] = report.median_round(results)
        out["ratios"] = report.ratios(s.kind, out["targets"])
        if rounds > 1:
            out["ratios"] |= report.round_ratios(
                {t: runs[t] for t in runs if "error" not in out["targets"][t]}
            )
        return out

    def run_target(self, target: str, s: Scenario) -> dict[str, Any]:
        fast = replace(s, delay_ms=0)  # same shape, no waiting
        self.probe(self.endpoint(target, fast), fast)
        ep = self.endpoint(target, s)  # the probe may have chosen the gateway's marker
        if s.kind == "streams":
            before = self.cpu_snapshot(target)
            res = self.run_stream_client(ep, s, n=s.concurrency, ramp_s=s.ramp_s, concurrency=None)
            use = self.cpu_use(target, before, res["wall_s"], res["completed"], res["markers"])
            return res | use | self.rss(target)
        body = self.body_file(ep, s)
        url = f"http://127.0.0.1:{ep.port}{ep.path}"
        common: dict[str, Any] = {
            "concurrency": s.concurrency,
            "cpu": self.load_cpu,
            "marker": ep.marker,
            "end_marker": ep.end_marker,
        }
        if self.args.warmup > 0:
            run_wrk(url, body, seconds=self.args.warmup, **common)
        before = self.cpu_snapshot(target)
        res = run_wrk(url, body, seconds=self.args.duration, **common)
        res |= self.cpu_use(target, before, res["duration_s"], res["requests"], res["markers"])
        if s.stream:
            res["chunks_per_s"] = round(res["markers"] / res["duration_s"], 1)
            res["ttfb"] = self.ttfb(ep, s)
        if target == "gateway" and s.name == "ns-c1":
            res["overhead_headers"] = self.gateway_overhead_header(ep)
        return res | self.rss(target)

    def ttfb(self, ep: Endpoint, s: Scenario) -> dict[str, Any]:
        """Time to first byte and first delta of streams one at a time (no queueing)."""
        n = self.args.ttfb_streams
        res = self.run_stream_client(ep, s, n=n, ramp_s=0.0, concurrency=1)
        return {k: res[k] for k in ("streams", "errors", "first_byte_ms", "first_token_ms")}

    def run_stream_client(
        self, ep: Endpoint, s: Scenario, *, n: int, ramp_s: float, concurrency: int | None
    ) -> dict[str, Any]:
        assert ep.marker is not None and ep.end_marker is not None
        rep: StreamsReport = uvloop.run(
            run_streams(
                "127.0.0.1",
                ep.port,
                ep.path,
                ep.body,
                n=n,
                ramp_s=ramp_s,
                marker=ep.marker,
                end_marker=ep.end_marker,
                concurrency=concurrency,
                timeout_s=60.0 + s.chunks * s.delay_ms / 1000,
            )
        )
        return {
            "streams": rep.streams,
            "completed": rep.completed,
            "errors": rep.errors,
            "error_detail": rep.error_kinds,
            "max_open": rep.max_open,
            "wall_s": round(rep.wall_s, 3),
            "rps": round(rep.completed / rep.wall_s, 1) if rep.wall_s else 0.0,
            "chunks_per_s": round(rep.markers / rep.wall_s, 1) if rep.wall_s else 0.0,
            "markers": rep.markers,
            "first_byte_ms": report.percentiles(rep.first_byte_ms),
            "first_token_ms": report.percentiles(rep.first_token_ms),
            "stream_ms": report.percentiles(rep.total_ms),
        }

    def soak(self, s: Scenario) -> dict[str, Any]:
        """Gateway streams for ``--soak-seconds`` while its RSS is sampled every few seconds."""
        if "gateway" not in self.procs:
            return {"error": self.startup_errors.get("gateway", "gateway not measured")}
        seconds = self.args.soak_seconds
        proc = self.procs["gateway"]
        self.probe(self.endpoint("gateway", s), s)
        ep = self.endpoint("gateway", s)
        every = 5.0 if seconds >= 60 else max(0.25, seconds / 12)
        window = 60.0 if seconds >= 300 else seconds * 0.2
        self.log(f"-- soak / gateway: {seconds}s, RSS every {every:g}s")
        started = time.monotonic()
        wrk = start_wrk(
            f"http://127.0.0.1:{ep.port}{ep.path}",
            self.body_file(ep, s),
            concurrency=s.concurrency,
            seconds=seconds,
            cpu=self.load_cpu,
            marker=ep.marker,
            end_marker=ep.end_marker,
        )
        samples: list[tuple[float, float]] = []
        deadline = started + seconds + 120
        while wrk.poll() is None and time.monotonic() < deadline:
            samples.append((round(time.monotonic() - started, 2), round(proc.rss_kb() / 1024, 1)))
            time.sleep(every)
        res = finish_wrk(wrk, seconds)
        samples.append((round(time.monotonic() - started, 2), round(proc.rss_kb() / 1024, 1)))
        first = next((mb for t, mb in samples if t >= window), samples[-1][1])
        end = samples[-1][1]
        return {
            "seconds": seconds,
            "requests": res["requests"],
            "rps": res["rps"],
            "chunks_per_s": round(res["markers"] / res["duration_s"], 1),
            "errors": res["errors"],
            "error_detail": res["error_detail"],
            "first_window_s": round(window, 1),
            "rss_first_window_mb": first,
            "rss_end_mb": end,
            "rss_peak_mb": max(mb for _, mb in samples),
            "rss_growth_pct": round((end / first - 1) * 100, 2) if first else None,
            "samples": samples,
        }

    # --- whole run -----------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        chosen = [
            quick(s) if self.args.quick else s for s in ALL if s.name in self.args.scenario_names
        ]
        slow = {
            "concurrency": self.args.slow_streams,
            "chunks": self.args.slow_chunks,
            "delay_ms": self.args.slow_delay_ms,
            "ramp_s": self.args.slow_ramp,
        }
        slow = {k: v for k, v in slow.items() if v is not None}
        chosen = [replace(s, **slow) if s.kind == "streams" else s for s in chosen]
        results: dict[str, Any] = {"meta": self.meta(), "scenarios": {}, "soak": None}
        self.start_all()
        try:
            for s in chosen:
                if s.kind == "soak":
                    try:
                        results["soak"] = self.soak(s)
                    except (BenchError, OSError, subprocess.SubprocessError) as exc:
                        results["soak"] = {"error": str(exc)}
                    continue
                results["scenarios"][s.name] = self.run_scenario(s)
        finally:
            self.stop_all()
        results["startup_errors"] = self.startup_errors
        results["targets"] = report.evaluate(results["scenarios"], results["soak"])
        return results

    def meta(self) -> dict[str, Any]:
        def git(*a: str) -> str | None:
            try:
                return subprocess.run(
                    ["git", *a], capture_output=True, text=True, check=True, timeout=10
                ).stdout.strip()
            except (OSError, subprocess.SubprocessError):
                return None

        cpu = next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            platform.processor(),
        )
        return {
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "loadavg_at_start": Path("/proc/loadavg").read_text().split()[:3],
            "commit": git("rev-parse", "--short", "HEAD"),
            "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
            "python": platform.python_version(),
            "native": asdict(native.status()),  # the hot path compiled, or from source
            "cpu": cpu,
            "cpus": os.cpu_count(),
            "wrk": wrk_path(),
            "quick": self.args.quick,
            "duration_s": self.args.duration,
            "warmup_s": self.args.warmup,
            "relay_client": self.args.relay_client,
            "nice": self.args.nice,
            "pinning": {"gateway_relay_cpu": self.server_cpu, "upstream_load_cpu": self.load_cpu},
        }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    try:
        wrk_path()
    except BenchError as exc:
        log(f"error: {exc}")
        return 2
    nofile = raise_nofile()
    if nofile < 4096:
        log(f"warning: open-files limit {nofile}; 1,000 streams need ~4,000")
    if not args.no_pin and (os.cpu_count() or 1) >= 2:
        pin_self(LOAD_CPU)
    if args.nice:
        set_priority(args.nice)
    workdir = Path(tempfile.mkdtemp(prefix="gateway-bench-"))
    if args.keep_logs:
        log(f"logs and configs in {workdir}")
    try:
        results = Bench(args, workdir, log).run()
    finally:
        if not args.keep_logs:
            shutil.rmtree(workdir, ignore_errors=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(report.table(results))
    print(f"\nresults: {args.output}")
    failed_runs = (
        bool(results["startup_errors"])
        or any("error" in t for sc in results["scenarios"].values() for t in sc["targets"].values())
        or bool(results["soak"] and "error" in results["soak"])
    )
    if failed_runs:
        return 1
    if args.strict and any(t["pass"] is False for t in results["targets"]):
        return 1
    return 0
