"""CPU microbenchmark of the gateway's pure-Python hot path, in process, with no network.

Run: ``python -m bench.hotpath`` (``--quick`` for fewer iterations, ``--preset NAME`` to pick).

For each bundled preset it times, in µs, the stages the API drives:

* per request (non-streaming): ``parse_body`` → ``normalize`` → ``build_request``, then the
  upstream's whole answer through ``orjson.loads`` + ``events_from_body`` → ``ResponseEmitter``
  → ``orjson.dumps`` of the Response;
* per stream chunk, over a 50-chunk SSE stream: ``decoder.feed`` → ``events_from_chunk`` →
  ``emitter.feed`` → ``encode_events`` (the emitter's creation and its terminal events are
  counted into the per-chunk figure).

Each figure is the best of several runs of many iterations, timed on the thread's own CPU
clock (``time.thread_time``) so that other processes on a shared machine do not count. Template
strings that Jinja renders instead of compiled closures (tens of µs each) are listed.

On a shared machine timings move by ±30% from one minute to the next, more than most single
changes gain. ``--instructions`` counts instead of timing: the same stages run under
valgrind's callgrind, and each figure is the number of instructions per call, the same from
one run to the next. It is how a small change is judged (a drop in instructions tracks a drop
in CPU time on the interpreter's own work); it needs ``valgrind``, about 35 s a preset.
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import orjson
from jinja2.parser import Parser
from ruamel.yaml import YAML

from bench.fake_upstream import _anthropic_events, _anthropic_json, _chat_events, _chat_json
from gateway import native, templating
from gateway.canonical import CanonicalEvent
from gateway.config.build import build_runtime
from gateway.config.loader import parse_yaml
from gateway.expressions import compile_fast
from gateway.providers.adapter import ProviderAdapter
from gateway.providers.decoding import make_decoder
from gateway.responses.emitter import ResponseEmitter, ResponsesEvent
from gateway.responses.normalize import RequestLimits, normalize, parse_body
from gateway.responses.sse import encode_events
from gateway.templating import _SINGLE_EXPRESSION, ENV, template_strings

CHUNKS = 50
PRESETS = ("openai-chat", "anthropic", "gemini", "openai")
MODELS = {
    "openai-chat": "gpt-4o-mini",
    "anthropic": "claude-sonnet-4-5",
    "gemini": "gemini-2.5-flash",
    "openai": "gpt-5-mini",
}

#: The benchmark's own request (bench/scenarios.py) and a small agent turn with a tool.
HELLO = {"model": "bench", "input": "hello"}
AGENT = {
    "model": "bench",
    "instructions": "You are a helpful assistant.",
    "input": [
        {"role": "user", "content": "What is the weather in Paris?"},
        {
            "type": "function_call",
            "call_id": "call_1",
            "name": "get_weather",
            "arguments": '{"city": "Paris"}',
        },
        {"type": "function_call_output", "call_id": "call_1", "output": "18C, cloudy"},
        {"role": "user", "content": [{"type": "input_text", "text": "And tomorrow?"}]},
    ],
    "tools": [
        {
            "type": "function",
            "name": "get_weather",
            "description": "The weather in a city.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        }
    ],
    "max_output_tokens": 512,
    "temperature": 0.5,
}


def _word(i: int) -> str:
    return f"tok{i} "


def _data(event: dict[str, Any], name: str | None = None) -> bytes:
    head = b"event: " + name.encode() + b"\n" if name else b""
    return head + b"data: " + orjson.dumps(event) + b"\n\n"


def _gemini_chunk(i: int, n: int) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"parts": [{"text": _word(i)}], "role": "model"}}
    if i == n - 1:
        candidate["finishReason"] = "STOP"
    return {
        "candidates": [candidate],
        "usageMetadata": {"promptTokenCount": 8, "candidatesTokenCount": i + 1},
        "modelVersion": "gemini-2.5-flash",
    }


def _gemini_events(n: int) -> list[bytes]:
    return [_data(_gemini_chunk(i, n)) for i in range(n)]


def _gemini_json(n: int) -> bytes:
    body = _gemini_chunk(0, 1)
    body["candidates"][0]["content"]["parts"][0]["text"] = "".join(map(_word, range(n)))
    return orjson.dumps(body)


def _responses_output(n: int) -> dict[str, Any]:
    return {
        "id": "msg_up",
        "type": "message",
        "status": "completed",
        "role": "assistant",
        "content": [{"type": "output_text", "text": "".join(map(_word, range(n)))}],
    }


def _responses_json(n: int) -> bytes:
    usage = {"input_tokens": 8, "output_tokens": n, "total_tokens": 8 + n}
    body = {"id": "resp_up", "status": "completed", "output": [_responses_output(n)]}
    return orjson.dumps({**body, "usage": usage})


def _responses_events(n: int) -> list[bytes]:
    def event(kind: str, **fields: Any) -> bytes:
        return _data({"type": kind, **fields}, kind)

    events = [
        event("response.output_text.delta", output_index=0, content_index=0, delta=_word(i))
        for i in range(n)
    ]
    item = {**_responses_output(0), "status": "in_progress", "content": []}
    events[0] = (
        event("response.created", response={"id": "resp_up", "status": "in_progress"})
        + event("response.output_item.added", output_index=0, item=item)
        + events[0]
    )
    usage = {"input_tokens": 8, "output_tokens": n, "total_tokens": 8 + n}
    final = {"id": "resp_up", "status": "completed", "output": [_responses_output(n)]}
    events[-1] += event("response.output_item.done", output_index=0, item=final["output"][0])
    events[-1] += event("response.completed", response={**final, "usage": usage})
    return events


#: preset → (whole upstream body, upstream stream as one byte string per network read)
UPSTREAM: dict[str, Callable[[], tuple[bytes, list[bytes]]]] = {
    "openai-chat": lambda: (_chat_json(CHUNKS), _chat_events(CHUNKS, usage=True)),
    "anthropic": lambda: (_anthropic_json(CHUNKS), _anthropic_events(CHUNKS)),
    "gemini": lambda: (_gemini_json(CHUNKS), _gemini_events(CHUNKS)),
    "openai": lambda: (_responses_json(CHUNKS), _responses_events(CHUNKS)),
}


def load_adapters(names: tuple[str, ...]) -> dict[str, ProviderAdapter]:
    """Adapters compiled the way the gateway compiles them, from a config naming each preset."""
    lines = ["providers:"]
    lines += [
        f'  {name}: {{preset: {name}, base_url: "http://upstream", api_key: k}}' for name in names
    ]
    document = parse_yaml("\n".join(lines) + "\n", "hotpath.yaml")
    runtime = build_runtime(document, source="hotpath.yaml", environ={})
    return {name: runtime.providers[name] for name in names}


def jinja_fallbacks(name: str) -> list[str]:
    """The preset's template strings that Jinja renders instead of a compiled closure."""
    text = resources.files("gateway").joinpath(f"presets/{name}.yaml").read_text()
    slow = []
    for where, source in template_strings(YAML(typ="safe").load(text)):
        single = _SINGLE_EXPRESSION.match(source)
        expression = single.group("expr") if single else None
        if expression is None or "{{" in expression or "}}" in expression:
            if templating._substitutions(ENV.parse(source)) is None:
                slow.append(f"{'.'.join(map(str, where))}: {source.strip()[:60]} (text)")
            continue
        node = Parser(ENV, expression.strip(), state="variable").parse_expression()
        if compile_fast(node, ENV) is None:
            slow.append(f"{'.'.join(map(str, where))}: {expression.strip()[:60]}")
    return slow


#: How a stage is measured: ``(function, number, repeat)`` → its cost per call.
Clock = Callable[[Callable[[], object], int, int], float]


def best_us(function: Callable[[], object], number: int, repeat: int) -> float:
    """Best-of-``repeat`` µs per call of ``function`` over ``number`` calls."""
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        started = time.thread_time()
        for _ in range(number):
            function()
        best = min(best, time.thread_time() - started)
    return best / number * 1e6


#: The C function whose entry makes callgrind dump its counters (``--dump-before``): a call
#: with no other use here, so every dump marks a stage's edge.
MARKER = "os_getppid"


class InstructionCount:
    """A ``Clock`` for a process run under callgrind: instructions per call of a stage.

    Calling ``os.getppid`` makes callgrind write the instructions counted since its last
    dump to ``<out>.<n>`` and start again from zero; one call before and one after the stage's
    ``number`` calls leave the stage alone in a dump.
    """

    def __init__(self, out: str) -> None:
        self.out = out
        self.dumps = 0

    def __call__(self, function: Callable[[], object], number: int, repeat: int) -> float:
        function()  # first-call costs (caches, compiled regexes) out of the count
        self._dump()  # what came before: the warm-up, reading the last count
        for _ in range(number):
            function()
        self._dump()
        return self._read() / number

    def _dump(self) -> None:
        os.getppid()
        self.dumps += 1

    def _read(self) -> int:
        return read_dump(self.out, self.dumps)


def read_dump(out: str, number: int) -> int:
    """The instructions counted in callgrind's ``number``-th dump to ``out``."""
    dump = Path(f"{out}.{number}")
    if not dump.exists():
        raise SystemExit(f"callgrind wrote no dump at {MARKER}: run with --instructions")
    with dump.open() as lines:
        for line in lines:
            if line.startswith("summary:"):
                return int(line.split()[1])
    raise SystemExit(f"no summary line in {dump}")


def count_instructions(argv: list[str], module: str = "bench.hotpath") -> int:
    """Run ``module`` under callgrind, counting (``--count-into``) instead of timing."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise SystemExit("--instructions needs valgrind (apt-get install valgrind)")
    with tempfile.TemporaryDirectory() as folder:
        out = str(Path(folder) / "callgrind.out")
        command = [
            valgrind,
            "--tool=callgrind",
            f"--dump-before={MARKER}",
            f"--callgrind-out-file={out}",
            sys.executable,
            "-m",
            module,
            *argv,
            "--count-into",
            out,
        ]
        return subprocess.run(command, stderr=subprocess.DEVNULL, check=False).returncode


@dataclass
class Case:
    name: str
    adapter: ProviderAdapter
    model: str
    whole: bytes
    stream: list[bytes]


def _emitter(case: Case, body: dict[str, Any], stream: bool) -> ResponseEmitter:
    return ResponseEmitter(
        model=case.model, body=body, finish_reasons=case.adapter.finish_reasons, stream=stream
    )


def request_stages(
    case: Case, body: dict[str, Any], number: int, repeat: int, clock: Clock = best_us
) -> dict[str, float]:
    adapter, limits = case.adapter, RequestLimits()
    raw = orjson.dumps(body)
    parsed = parse_body(raw, limits)
    req = normalize(parsed, case.model)
    answer = orjson.loads(case.whole)
    events = adapter.events_from_body(answer, req)

    def emit() -> ResponseEmitter:
        emitter = _emitter(case, parsed.body, stream=False)
        for event in events:
            emitter.feed(event)
        emitter.end_of_stream(requires_done=False)
        return emitter

    response = emit().response
    stages = {
        "parse_body": lambda: parse_body(raw, limits),
        "normalize": lambda: normalize(parsed, case.model),
        "build_request": lambda: adapter.build_request(req),
        "events_from_body": lambda: adapter.events_from_body(orjson.loads(case.whole), req),
        "emitter": emit,
        "dumps": lambda: orjson.dumps(response),
    }
    return {stage: clock(function, number, repeat) for stage, function in stages.items()}


def stream_stages(case: Case, number: int, repeat: int, clock: Clock = best_us) -> dict[str, float]:
    adapter = case.adapter
    parsed = parse_body(orjson.dumps({**HELLO, "stream": True}), RequestLimits())
    req = normalize(parsed, case.model)

    def decode() -> list[list[tuple[str | None, str]]]:
        decoder = make_decoder(adapter.stream.framing)
        reads = [list(decoder.feed(chunk)) for chunk in case.stream]
        reads[-1].extend(decoder.close())
        return reads

    reads = decode()

    def translate() -> list[list[CanonicalEvent]]:
        return [
            [event for name, data in frames for event in adapter.events_from_chunk(name, data, req)]
            for frames in reads
        ]

    batches = translate()

    def emit() -> list[list[ResponsesEvent]]:
        emitter = _emitter(case, parsed.body, stream=True)
        writes: list[list[ResponsesEvent]] = []
        for batch in batches:
            out: list[ResponsesEvent] = []
            for event in batch:
                out.extend(emitter.feed(event))
            writes.append(out)
        writes.append(emitter.end_of_stream(requires_done=adapter.stream.requires_done))
        return writes

    writes = emit()
    stages = {
        "decode": decode,
        "events_from_chunk": translate,
        "emitter": emit,
        "encode_events": lambda: [encode_events(out) for out in writes if out],
    }
    chunks = len(case.stream)
    return {stage: clock(function, number, repeat) / chunks for stage, function in stages.items()}


def _row(label: str, stages: dict[str, float], unit: str) -> str:
    spec = "7.2f" if unit == "µs" else "8,.0f"  # µs, or a count of instructions
    parts = "  ".join(f"{stage} {value:{spec}}" for stage, value in stages.items())
    return f"  {label:<16} total {sum(stages.values()):{spec}} {unit} = {parts}"


def measure(
    case: Case, number: int, repeat: int, clock: Clock = best_us
) -> dict[str, dict[str, float]]:
    return {
        "request hello": request_stages(case, HELLO, number, repeat, clock),
        "request agent": request_stages(case, AGENT, number, repeat, clock),
        f"chunk (of {CHUNKS})": stream_stages(case, max(number // 20, 2), repeat, clock),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", action="append", choices=PRESETS)
    parser.add_argument("--rounds", type=int, default=3, help="keep each figure's best round")
    parser.add_argument("--quick", action="store_true", help="fewer iterations (a smoke run)")
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="count instructions per call under valgrind's callgrind, instead of timing",
    )
    parser.add_argument("--count-into", help=argparse.SUPPRESS)  # set by --instructions
    args = parser.parse_args(argv)
    if args.instructions:  # this module again, under callgrind, with the same choices
        presets = [arg for name in args.preset or () for arg in ("--preset", name)]
        raise SystemExit(count_instructions([*presets, *(["--quick"] if args.quick else [])]))
    names = tuple(args.preset or PRESETS)
    adapters = load_adapters(names)
    cases = [Case(name, adapters[name], MODELS[name], *UPSTREAM[name]()) for name in names]
    if args.count_into:  # under callgrind: one count per stage, the same every run
        count = InstructionCount(args.count_into)
        number = 5 if args.quick else 20
        best = {case.name: measure(case, number, 1, count) for case in cases}
        unit = "instructions"
    else:
        best = _best_of_rounds(cases, args.quick, args.rounds)
        unit = "µs"
    found = native.status()
    print(
        f"hot path: {len(found.compiled)} modules compiled, {len(found.source)} from source,"
        f" {len(found.stale)} stale"
    )
    for case in cases:
        print(f"{case.name}:")
        for label, stages in best[case.name].items():
            print(_row(label, stages, unit))
        for slow in jinja_fallbacks(case.name):
            print(f"  jinja: {slow}")


def _best_of_rounds(
    cases: list[Case], quick: bool, rounds: int
) -> dict[str, dict[str, dict[str, float]]]:
    """Each figure's best over rounds of all cases: a burst of load elsewhere spoils one round."""
    number, repeat, rounds = (20, 2, 1) if quick else (300, 10, rounds)
    for case in cases:  # warm up (caches, CPU clock) so the first figures are not the worst
        measure(case, 20, 2)
    best: dict[str, dict[str, dict[str, float]]] = {}
    for _ in range(rounds):
        for case in cases:
            figures = best.setdefault(case.name, {})
            for label, stages in measure(case, number, repeat).items():
                kept = figures.setdefault(label, stages)
                figures[label] = {stage: min(kept[stage], us) for stage, us in stages.items()}
    return best


if __name__ == "__main__":
    main()
