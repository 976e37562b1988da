"""Figures into ratios, ratios against the issue's targets, and a compact table."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

Result = dict[str, Any]


def percentiles(values: Sequence[float]) -> dict[str, float] | None:
    """Nearest-rank p50/p90/p99 and max, in the values' unit, rounded to microseconds."""
    if not values:
        return None
    ordered = sorted(values)

    def rank(p: float) -> float:
        return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]

    return {
        "p50": round(rank(50), 3),
        "p90": round(rank(90), 3),
        "p99": round(rank(99), 3),
        "max": round(ordered[-1], 3),
    }


def _get(result: Result | None, *path: str) -> float | None:
    cur: Any = result
    for key in path:
        if not isinstance(cur, dict) or key not in cur:
            return None
        cur = cur[key]
    return float(cur) if isinstance(cur, int | float) else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def _minus(a: float | None, b: float | None) -> float | None:
    return round(a - b, 3) if a is not None and b is not None else None


def ratios(kind: str, targets: dict[str, Result]) -> dict[str, float | None]:
    """Gateway against relay and direct, relay against direct, for one scenario."""
    d, r, g = (targets.get(t) for t in ("direct", "relay", "gateway"))
    if kind == "streams":
        out: dict[str, float | None] = {}
        for who, res in (("gateway", g), ("relay", r)):
            for what in ("first_byte_ms", "first_token_ms"):
                for p in ("p50", "p99"):
                    out[f"{who}_{what.removesuffix('_ms')}_overhead_{p}_ms"] = _minus(
                        _get(res, what, p), _get(d, what, p)
                    )
        return out
    out = {
        "rps_gateway_over_relay": _ratio(_get(g, "rps"), _get(r, "rps")),
        "rps_gateway_over_direct": _ratio(_get(g, "rps"), _get(d, "rps")),
        "rps_relay_over_direct": _ratio(_get(r, "rps"), _get(d, "rps")),
        "gateway_added_p50_ms": _minus(_get(g, "latency_ms", "p50"), _get(d, "latency_ms", "p50")),
        "gateway_added_p99_ms": _minus(_get(g, "latency_ms", "p99"), _get(d, "latency_ms", "p99")),
        "relay_added_p50_ms": _minus(_get(r, "latency_ms", "p50"), _get(d, "latency_ms", "p50")),
        "relay_added_p99_ms": _minus(_get(r, "latency_ms", "p99"), _get(d, "latency_ms", "p99")),
    }
    g_cpu, r_cpu = _get(g, "cpu_ms_per_request"), _get(r, "cpu_ms_per_request")
    out["cpu_per_request_gateway_over_relay"] = _ratio(g_cpu, r_cpu)
    out["gateway_own_cpu_ms_per_request"] = _minus(g_cpu, r_cpu)
    out["gateway_capacity_rps_one_core"] = round(1000 / g_cpu, 1) if g_cpu else None
    out["relay_capacity_rps_one_core"] = round(1000 / r_cpu, 1) if r_cpu else None
    if _get(g, "chunks_per_s") is not None or _get(r, "chunks_per_s") is not None:
        out["chunks_gateway_over_relay"] = _ratio(_get(g, "chunks_per_s"), _get(r, "chunks_per_s"))
        g_chunk = _get(g, "cpu_us_per_chunk")
        out["gateway_capacity_chunks_one_core"] = round(1e6 / g_chunk) if g_chunk else None
    if _get(g, "ttfb", "first_token_ms", "p50") is not None:
        for p in ("p50", "p99"):
            out[f"gateway_first_token_overhead_{p}_ms"] = _minus(
                _get(g, "ttfb", "first_token_ms", p), _get(d, "ttfb", "first_token_ms", p)
            )
    return out


def median_round(runs: Sequence[Result]) -> Result:
    """One target's rounds of a wrk scenario: the round with the median requests/s, and
    each round's headline figures under ``rounds``."""
    ordered = sorted(runs, key=lambda res: float(res.get("rps") or 0.0))
    chosen = dict(ordered[(len(ordered) - 1) // 2])
    if len(runs) > 1:
        chosen["rounds"] = [
            {k: res[k] for k in ("rps", "cpu_ms_per_request", "chunks_per_s") if k in res}
            for res in runs
        ]
    return chosen


def round_ratios(runs: dict[str, Sequence[Result]]) -> dict[str, Any]:
    """Gateway over relay in each round (measured seconds apart), and their median: the
    ratio that a drift in the machine's speed between two runs moves least."""
    out: dict[str, Any] = {}
    gateway, relay = runs.get("gateway", ()), runs.get("relay", ())
    for key, name in (
        ("rps", "rps_gateway_over_relay"),
        ("chunks_per_s", "chunks_gateway_over_relay"),
    ):
        per_round = [
            ratio
            for g, r in zip(gateway, relay, strict=False)
            if (ratio := _ratio(_get(g, key), _get(r, key))) is not None
        ]
        if per_round:
            out[name] = sorted(per_round)[(len(per_round) - 1) // 2]
            out[f"{name}_rounds"] = per_round
    return out


def _target(
    name: str,
    value: float | None,
    op: str,
    limit: float,
    unit: str,
    where: str,
    cpu_estimate: float | None = None,
) -> dict[str, Any]:
    passed = None if value is None else (value >= limit if op == ">=" else value <= limit)
    out = {
        "name": name,
        "value": value,
        "op": op,
        "limit": limit,
        "unit": unit,
        "scenario": where,
        "pass": passed,
    }
    if cpu_estimate is not None:  # what one whole core would do, from CPU time per unit
        out["cpu_estimate"] = cpu_estimate
    return out


def evaluate(scenarios: dict[str, Result], soak: Result | None) -> list[dict[str, Any]]:
    """The issue's targets, each with the measured value and pass/fail (None: not measured)."""

    def sc(name: str, *path: str) -> float | None:
        return _get(scenarios.get(name), *path)

    slow = scenarios.get("slow-streams", {}).get("targets", {}).get("gateway")
    held: float | None = None
    if isinstance(slow, dict) and "streams" in slow:
        held = float(slow["errors"] == 0 and slow["max_open"] >= slow["streams"])
    growth = _get(soak, "rss_growth_pct")
    return [
        _target(
            "non-streaming c=32 requests/s",
            sc("ns-c32", "targets", "gateway", "rps"),
            ">=",
            2000,
            "req/s",
            "ns-c32",
            sc("ns-c32", "ratios", "gateway_capacity_rps_one_core"),
        ),
        _target(
            "non-streaming c=32 gateway/relay",
            sc("ns-c32", "ratios", "rps_gateway_over_relay"),
            ">=",
            0.60,
            "ratio",
            "ns-c32",
        ),
        _target(
            "added latency c=1 p50",
            sc("ns-c1", "ratios", "gateway_added_p50_ms"),
            "<=",
            1.0,
            "ms",
            "ns-c1",
        ),
        _target(
            "added latency c=1 p99",
            sc("ns-c1", "ratios", "gateway_added_p99_ms"),
            "<=",
            3.0,
            "ms",
            "ns-c1",
        ),
        _target(
            "relayed chunks/s (50-chunk streams, c=32)",
            sc("stream-c32", "targets", "gateway", "chunks_per_s"),
            ">=",
            40000,
            "chunks/s",
            "stream-c32",
            sc("stream-c32", "ratios", "gateway_capacity_chunks_one_core"),
        ),
        _target("slow streams all held open, no error", held, ">=", 1, "bool", "slow-streams"),
        _target(
            "slow streams first-token overhead p99",
            sc("slow-streams", "ratios", "gateway_first_token_overhead_p99_ms"),
            "<=",
            5.0,
            "ms",
            "slow-streams",
        ),
        _target("soak RSS growth (end vs first minute)", growth, "<=", 10.0, "%", "soak"),
    ]


# --- table ------------------------------------------------------------------------------


def _fmt(v: float | None, digits: int = 1) -> str:
    if v is None:
        return "-"
    if abs(v) >= 10_000:
        return f"{v:,.0f}"
    return f"{v:.{digits}f}"


def _pct(v: float | None) -> float | None:
    return None if v is None else v * 100


def table(results: Result) -> str:
    rows = [
        f"{'scenario':<21}{'target':<9}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'1st tok p99':>12}{'chunks/s':>11}{'RSS MB':>8}{'cpu%':>6}{'noise%':>7}"
        f"{'cpu ms/req':>11}{'errors':>7}"
    ]
    for name, sc in results["scenarios"].items():
        first = True
        for target, res in sc["targets"].items():
            label = name if first else ""
            first = False
            if "skipped" in res:
                rows.append(f"{label:<21}{target:<9}  skipped: {res['skipped']}")
                continue
            if "error" in res:
                rows.append(f"{label:<21}{target:<9}  ERROR: {str(res['error'])[:80]}")
                continue
            lat = res.get("latency_ms") or res.get("stream_ms") or {}
            tok = res.get("first_token_ms") or (res.get("ttfb") or {}).get("first_token_ms") or {}
            rows.append(
                f"{label:<21}{target:<9}{_fmt(res.get('rps')):>9}{_fmt(lat.get('p50'), 2):>9}"
                f"{_fmt(lat.get('p99'), 2):>9}{_fmt(tok.get('p99'), 2):>12}"
                f"{_fmt(res.get('chunks_per_s'), 0):>11}{_fmt(res.get('rss_mb')):>8}"
                f"{_fmt(_pct(res.get('cpu_util')), 0):>6}{_fmt(_pct(res.get('core_other_util')), 0):>7}"
                f"{_fmt(res.get('cpu_ms_per_request'), 3):>11}{res.get('errors', 0):>7}"
            )
        r = sc.get("ratios", {})
        bits = [
            f"{k}={v}"
            for k, v in r.items()
            if v is not None and (k.startswith(("rps_gateway", "gateway_", "chunks_")))
        ]
        if bits:
            rows.append(f"{'':<21}  " + "  ".join(bits))
    soak = results.get("soak")
    if soak and "error" not in soak:
        rows.append(
            f"soak {soak['seconds']}s: RSS {soak['rss_first_window_mb']} MB after "
            f"{soak['first_window_s']}s -> {soak['rss_end_mb']} MB at end "
            f"({soak['rss_growth_pct']:+.1f}%), peak {soak['rss_peak_mb']} MB, "
            f"{soak['requests']} streams, {soak['errors']} errors"
        )
    elif soak:
        rows.append(f"soak: ERROR {soak['error']}")
    noise = [
        res["core_other_util"]
        for sc in results["scenarios"].values()
        for res in sc["targets"].values()
        if res.get("core_other_util") is not None
    ]
    if noise and max(noise) > 0.05:
        rows.append(
            f"WARNING: other processes used up to {max(noise):.0%} of the gateway's core during "
            "runs (noise%): these figures are disturbed, run again on a quiet machine"
        )
    rows.append("")
    for t in results["targets"]:
        mark = {True: "PASS", False: "FAIL", None: "n/a "}[t["pass"]]
        line = f"[{mark}] {t['name']}: {_fmt(t['value'], 3)} (target {t['op']} {t['limit']})"
        if t.get("cpu_estimate") is not None:
            line += f"; one whole core, from CPU time: {_fmt(t['cpu_estimate'], 0)}"
        rows.append(line)
    return "\n".join(rows)
