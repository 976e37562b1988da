"""The whole gateway app in process: CPU time or instructions per request, with no server.

Run: ``python -m bench.inprocess`` (``--stream`` for 50-chunk streams, ``--instructions`` to
count under callgrind).

It drives the gateway's ASGI app directly, ``--concurrency`` requests at a time, against the
fake upstream on a local socket (openai-chat preset), so a figure covers everything the
gateway does for a request except the HTTP server's protocol, which the relay shares: the
access and observability middlewares, parsing, routing, the templates, the upstream client,
the emitter and the answer. Warm-up requests run first and are not counted.

CPU time moves with the host (±10% a minute on a shared machine). ``--instructions`` runs the
same under valgrind's callgrind (as ``bench.hotpath --instructions`` does) and reports
instructions per request, the same from one run to the next within half a percent: that is how
docs/benchmark.md compares rounds. Under callgrind a request takes ~50 times longer, so the
disconnect watcher, which starts once a request has run 50 ms, is counted where a real run of
a fast upstream never starts it: about 15k instructions a request.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import uvloop

from bench import procs
from bench.hotpath import count_instructions, read_dump
from gateway import native
from gateway.app import create_app

PATH = "/v1/responses"


def _config(upstream_port: int) -> str:
    return (
        "default_provider: fake\n"
        "providers:\n"
        "  fake: {preset: openai-chat, "
        f'base_url: "http://127.0.0.1:{upstream_port}/v1", api_key: bench}}\n'
    )


def _body(chunks: int, stream: bool) -> bytes:
    model = f"fake:bench-c{chunks}-d0"
    return f'{{"model":"{model}","input":"hello there","stream":{str(stream).lower()}}}'.encode()


async def _one(app: Any, body: bytes) -> None:
    """One request through the app, as uvicorn would hand it over; its answer read whole."""
    done = asyncio.Event()
    sent = False
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await done.wait()  # what uvicorn does once the body is read: wait for the end
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif not message.get("more_body"):
            done.set()

    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": PATH,
        "raw_path": PATH.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"gateway"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }
    await app(scope, receive, send)
    if status != 200:
        raise procs.BenchError(f"the gateway answered {status}")


async def _drive(config: Path, body: bytes, args: argparse.Namespace) -> tuple[float, int]:
    """Warm up, then the measured requests: (CPU seconds they took, how many ran)."""
    app = create_app(str(config), watch=False)
    per_worker = max(args.requests // args.concurrency, 1)
    warm_per_worker = max(args.warmup // args.concurrency, 1)

    async def worker(count: int) -> None:
        for _ in range(count):
            await _one(app, body)

    async with app.router.lifespan_context(app):
        await asyncio.gather(*(worker(warm_per_worker) for _ in range(args.concurrency)))
        os.getppid()  # under callgrind: the dump before the measured requests
        started = _cpu_seconds()
        await asyncio.gather(*(worker(per_worker) for _ in range(args.concurrency)))
        used = _cpu_seconds() - started
        os.getppid()  # ... and after them
    return used, per_worker * args.concurrency


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--stream", action="store_true", help="50-chunk streams")
    parser.add_argument("--chunks", type=int, default=50, help="chunks a stream (--stream)")
    parser.add_argument("--requests", type=int, default=640, help="measured requests")
    parser.add_argument("--warmup", type=int, default=640, help="requests before measuring")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="count instructions per request under valgrind's callgrind, instead of timing",
    )
    parser.add_argument("--upstream-port", type=int, help=argparse.SUPPRESS)  # set by the parent
    parser.add_argument("--count-into", help=argparse.SUPPRESS)  # set by --instructions
    args = parser.parse_args(argv)
    if args.upstream_port is None:  # the parent: the fake upstream, then this module again
        raise SystemExit(_with_fake_upstream(args, sys.argv[1:] if argv is None else argv))
    os.environ.setdefault("GATEWAY_LOG_LEVEL", "warning")
    body = _body(args.chunks if args.stream else 1, args.stream)
    with tempfile.TemporaryDirectory() as folder:
        config = Path(folder) / "gateway.yaml"
        config.write_text(_config(args.upstream_port))
        used, requests = uvloop.run(_drive(config, body, args))
    found = native.status()
    print(
        f"hot path: {len(found.compiled)} modules compiled, {len(found.source)} from source,"
        f" {len(found.stale)} stale"
    )
    kind = f"{args.chunks}-chunk streams" if args.stream else "non-streaming requests"
    label = f"{requests} {kind} at c={args.concurrency}, openai-chat"
    if args.count_into:
        print(f"{label}: {read_dump(args.count_into, 2) // requests:,} instructions a request")
    else:
        print(f"{label}: {used / requests * 1e6:,.1f} µs CPU a request")


def _with_fake_upstream(args: argparse.Namespace, argv: list[str]) -> int:
    """Run this module again against a fake upstream of its own (under callgrind if asked)."""
    port = procs.free_port()
    with tempfile.TemporaryDirectory() as folder:
        upstream = procs.start(
            "upstream",
            [sys.executable, "-m", "bench.fake_upstream", "--port", str(port)],
            port=port,
            cpu=None,
            log_dir=Path(folder),
            env=dict(os.environ),
        )
        try:
            procs.wait_listening(upstream, 15)
            child = [arg for arg in argv if arg != "--instructions"]
            child += ["--upstream-port", str(port)]
            if args.instructions:
                return count_instructions(child, module="bench.inprocess")
            command = [sys.executable, "-m", "bench.inprocess", *child]
            return subprocess.run(command, check=False).returncode
        finally:
            upstream.stop()


if __name__ == "__main__":
    main()
