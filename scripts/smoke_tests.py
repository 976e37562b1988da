#!/usr/bin/env python3
"""Smoke-test every configured provider/model with real keys, one summary line each.

    python scripts/smoke_tests.py                     # gateway.yaml + .env, gateway in-process
    python scripts/smoke_tests.py --config my.yaml --tools
    python scripts/smoke_tests.py --url http://127.0.0.1:8000 --api-key $GATEWAY_KEY
    python scripts/smoke_tests.py --model openai:gpt-5-nano --model claude:claude-haiku-4-5

The checks go through the gateway exactly as a client's would, with the official ``openai``
SDK: by default a gateway is started in this process on a loopback port with the given config
(keys come from the environment and ``.env``, as for ``gateway serve``); ``--url`` checks a
gateway that is already running instead. The models are what the gateway lists on
``/v1/models`` (every provider's ``default_model`` and ``models``), or the ``--model`` names.

For each model: a whole answer, then a streamed one (its event sequence checked the way the
SDK's stream helper needs it, and its text against the final response), and with ``--tools`` a
function-tool round trip. Every failure is put on one of three sides, so nobody chases the
wrong one:

    CONFIG    this gateway's setup: a key that is not set, a model no provider has
    UPSTREAM  the provider answered with an error: a rejected key (401/403), quota or rate
              limits (429), an unknown model (404), an outage (5xx), unreachable, a timeout
    GATEWAY   the gateway itself: a mapping that failed, a malformed stream, a request the
              provider refused as malformed (400/422: the preset built something wrong)

Exit status: 0 when every check passed, 1 when any GATEWAY problem was found, 2 when the only
problems were CONFIG or UPSTREAM ones.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
import socket
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from dotenv import load_dotenv

PROMPT = "Reply with the single word: pong"
TOOL_PROMPT = "What time is it in Paris? Use the get_time tool."
TIME_TOOL: dict[str, Any] = {
    "type": "function",
    "name": "get_time",
    "description": "The current local time in a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
    "strict": True,
}
TERMINAL = {"response.completed", "response.incomplete", "response.failed"}


@dataclass
class Outcome:
    """One provider/model's verdict: PASS, SKIP, or FAIL on one side (CONFIG/UPSTREAM/GATEWAY)."""

    model: str
    verdict: str = "PASS"
    side: str = ""
    detail: str = ""
    timings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def line(self, width: int) -> str:
        if self.verdict == "PASS":
            body = " · ".join([*self.timings, *self.notes])
            return f"PASS  {self.model:<{width}}  {body}"
        if self.verdict == "SKIP":
            return f"SKIP  {self.model:<{width}}  {self.detail}"
        return f"FAIL  {self.model:<{width}}  {self.side:<8}  {self.detail}"


class Problem(Exception):
    """A check failed; ``side`` says whose problem it is."""

    def __init__(self, side: str, detail: str) -> None:
        super().__init__(detail)
        self.side = side
        self.detail = detail


# --------------------------------------------------------------------------- classification

_UPSTREAM_HTTP = re.compile(r"returned HTTP (\d{3})")


def _short(text: str, limit: int = 160) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def classify(status: int | None, error: dict[str, Any], headers: Any = None) -> Problem:
    """A gateway error answer (or stream error) → whose problem it is, in one line."""
    message = str(error.get("message") or "")
    code = str(error.get("code") or "")
    upstream = _UPSTREAM_HTTP.search(message)
    if code == "provider_not_configured":
        variable = re.search(r"Set (\w+) in", message)
        hint = f"set {variable.group(1)} in .env" if variable else message
        return Problem("CONFIG", f"missing key: {hint}")
    if upstream is not None:
        http = int(upstream.group(1))
        reason = message.split(": ", 1)[-1]
        if http in (401, 403):
            return Problem("UPSTREAM", f"key rejected (HTTP {http}): {_short(reason)}")
        if http == 429:
            retry = headers.get("retry-after") if headers is not None else None
            wait = f", retry after {retry}s" if retry else ""
            return Problem("UPSTREAM", f"quota or rate limit (HTTP 429{wait}): {_short(reason)}")
        if http == 404:
            return Problem("UPSTREAM", f"model not found upstream (HTTP 404): {_short(reason)}")
        if http in (400, 422):
            return Problem(
                "GATEWAY",
                f"provider refused the request the preset built (HTTP {http}): {_short(reason)}",
            )
        return Problem("UPSTREAM", f"provider error (HTTP {http}): {_short(reason)}")
    if code == "upstream_unreachable":
        return Problem("UPSTREAM", f"unreachable: {_short(message)}")
    if code == "upstream_timeout" or status == 504:
        return Problem("UPSTREAM", f"timeout: {_short(message)}")
    if code == "model_not_found" and status == 404:
        return Problem("CONFIG", f"no such model here: {_short(message)}")
    if status in (401, 403) and "Upstream" not in message:
        return Problem("CONFIG", f"the gateway refused our key (pass --api-key): {_short(message)}")
    if "Upstream provider" in message or "upstream" in message.lower():
        return Problem("UPSTREAM", _short(message))
    where = f"HTTP {status}: " if status else ""
    return Problem("GATEWAY", f"{where}{_short(message or code or 'unknown error')}")


def _from_exception(exc: Exception) -> Problem:
    import openai

    if isinstance(exc, Problem):
        return exc
    if isinstance(exc, openai.APIStatusError):
        body = exc.body if isinstance(exc.body, dict) else {"message": exc.message}
        error = body.get("error", body) if isinstance(body.get("error"), dict) else body
        return classify(exc.status_code, error, exc.response.headers)
    if isinstance(exc, openai.APITimeoutError):
        return Problem("UPSTREAM", "timeout: no answer within --timeout")
    if isinstance(exc, openai.APIConnectionError):
        return Problem("GATEWAY", f"cannot reach the gateway: {exc}")
    if isinstance(exc, openai.APIError):  # an `error` event in a stream
        body = exc.body if isinstance(exc.body, dict) else {}
        return classify(None, {"message": exc.message, "code": body.get("code")})
    return Problem("GATEWAY", f"{type(exc).__name__}: {_short(str(exc))}")


# --------------------------------------------------------------------------- checks


def check_whole(client: Any, model: str) -> tuple[str, dict[str, Any]]:
    response = client.responses.create(model=model, input=PROMPT)
    if response.status == "failed":
        raise classify(None, dict(response.error or {}))
    text = response.output_text
    if response.status != "completed":
        reason = response.incomplete_details.reason if response.incomplete_details else "?"
        raise Problem("UPSTREAM", f"answer incomplete ({reason}): {_short(text) or 'no text'}")
    if not text.strip():
        raise Problem("GATEWAY", "completed with no text: the answer was lost in translation")
    usage = response.usage.model_dump() if response.usage else {}
    return text, usage


def check_stream(client: Any, model: str) -> tuple[str, float]:
    """A streamed answer, checked as the SDK's stream helper and the Agents SDK need it."""
    import openai

    started = time.perf_counter()
    first_token: float | None = None
    events: list[Any] = []
    try:
        for event in client.responses.create(model=model, input=PROMPT, stream=True):
            if first_token is None and event.type == "response.output_text.delta":
                first_token = time.perf_counter() - started
            events.append(event)
    except openai.APIError as exc:
        if isinstance(exc, openai.APIStatusError):
            raise
        raise _from_exception(exc) from None
    types = [event.type for event in events]
    if not types or types[0] != "response.created":
        raise Problem("GATEWAY", f"stream does not start with response.created: {types[:3]}")
    numbers = [getattr(event, "sequence_number", None) for event in events]
    if numbers != list(range(len(events))):
        raise Problem("GATEWAY", "stream sequence numbers are not 0, 1, 2, …")
    terminals = [name for name in types if name in TERMINAL]
    if len(terminals) != 1 or types[-1] not in TERMINAL:
        raise Problem("GATEWAY", f"stream must end with exactly one terminal event: {terminals}")
    final = events[-1].response
    if final.status == "failed":
        raise classify(None, dict(final.error or {}))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    if deltas != final.output_text:
        raise Problem("GATEWAY", "streamed text deltas do not add up to the final text")
    if final.status != "completed":
        reason = final.incomplete_details.reason if final.incomplete_details else "?"
        raise Problem("UPSTREAM", f"streamed answer incomplete ({reason})")
    if not deltas.strip():
        raise Problem("GATEWAY", "stream completed with no text")
    return deltas, first_token or 0.0


def check_tools(client: Any, model: str) -> str:
    """A function-tool round trip: the call, then the answer that uses its output."""
    first = client.responses.create(
        model=model, input=TOOL_PROMPT, tools=[TIME_TOOL], tool_choice="required"
    )
    calls = [item for item in first.output if item.type == "function_call"]
    if not calls:
        raise Problem(
            "UPSTREAM",
            "the model answered in text although a tool call was required "
            "(a model or server without tool support?)",
        )
    call = calls[0]
    if call.name != "get_time":
        raise Problem("GATEWAY", f"called an unknown tool {call.name!r}")
    history = [
        {"role": "user", "content": TOOL_PROMPT},
        *[item.model_dump(exclude_none=True) for item in first.output],
        *[{"type": "function_call_output", "call_id": c.call_id, "output": "14:05"} for c in calls],
    ]
    second = client.responses.create(model=model, input=history, tools=[TIME_TOOL])
    if second.status == "failed" or not second.output_text.strip():
        raise Problem("GATEWAY", "no answer after the tool output was sent back")
    return f"tool round trip ok ({len(calls)} call{'s' if len(calls) > 1 else ''})"


def check_model(client: Any, model: str, *, tools: bool | None) -> Outcome:
    """``tools``: True runs the round trip, None notes it does not apply, False skips it."""
    outcome = Outcome(model)
    try:
        started = time.perf_counter()
        text, usage = check_whole(client, model)
        outcome.timings.append(f"whole {time.perf_counter() - started:.2f}s")
        started = time.perf_counter()
        _, first_token = check_stream(client, model)
        outcome.timings.append(
            f"stream {time.perf_counter() - started:.2f}s (first text {first_token:.2f}s)"
        )
        if tools:
            outcome.notes.append(check_tools(client, model))
        elif tools is None:
            outcome.notes.append("tools n/a (built-in provider)")
        total = usage.get("total_tokens") or 0
        outcome.notes.append(f"{total} tokens" if total else "no usage reported")
        outcome.notes.append(repr(_short(text, 40)))
    except Exception as exc:  # every failure becomes a line, never a traceback
        problem = _from_exception(exc)
        outcome.verdict, outcome.side, outcome.detail = "FAIL", problem.side, problem.detail
    return outcome


# --------------------------------------------------------------------------- the gateway


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_healthy(base_url: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{base_url}/healthz", timeout=1.0).status_code == 200:
                return
        time.sleep(0.05)
    raise RuntimeError(f"the gateway at {base_url} did not become healthy")


@contextlib.contextmanager
def gateway_in_process(config: Path) -> Iterator[str]:
    """``gateway serve`` for this run only: uvicorn on a loopback port, in a thread."""
    import uvicorn

    from gateway.app import create_app

    os.environ.setdefault("GATEWAY_LOG_LEVEL", "error")  # the summary lines are the output
    port = _free_port()
    app = create_app(str(config), watch=False)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base_url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(base_url)
        yield base_url
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def discover(base_url: str, api_key: str) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """The provider:model names the gateway lists, and its providers' health."""
    headers = {"authorization": f"Bearer {api_key}"}
    models = httpx.get(f"{base_url}/v1/models", headers=headers, timeout=10).json()
    health = httpx.get(f"{base_url}/healthz", headers=headers, timeout=10).json()
    names = [item["id"] for item in models.get("data", [])]
    return names, dict(health.get("providers") or {})


def plan(
    names: Sequence[str],
    providers: dict[str, dict[str, Any]],
    *,
    explicit: Sequence[str],
    only: Sequence[str],
    aliases: bool,
) -> tuple[list[str], list[Outcome]]:
    """Which names to check, and a SKIP line for each provider there is nothing to check on."""
    if explicit:
        return list(dict.fromkeys(explicit)), []
    chosen = [name for name in names if ":" in name or aliases]
    if only:
        chosen = [n for n in chosen if n in only or n.split(":", 1)[0] in only]
    covered = {name.split(":", 1)[0] for name in chosen if ":" in name}
    skipped = [
        Outcome(
            provider,
            verdict="SKIP",
            detail="no model configured: set default_model or models in the config, "
            f"or pass --model {provider}:MODEL",
        )
        for provider in providers
        if provider not in covered and (not only or provider in only)
    ]
    return chosen, skipped


def run(args: argparse.Namespace, out: Any) -> int:
    import openai

    api_key = args.api_key or os.environ.get("GATEWAY_API_KEY") or "smoke-test"
    with contextlib.ExitStack() as stack:
        if args.url:
            base_url = args.url.rstrip("/")
            where = base_url
        else:
            config = Path(args.config or os.environ.get("GATEWAY_CONFIG") or "gateway.yaml")
            base_url = stack.enter_context(gateway_in_process(config))
            where = f"{config} (in-process gateway)"
        names, providers = discover(base_url, api_key)
        chosen, outcomes = plan(
            names, providers, explicit=args.model, only=args.only, aliases=args.aliases
        )
        print(f"Smoke-testing {len(chosen)} model(s) through {where}", file=out)
        client = openai.OpenAI(
            base_url=f"{base_url}/v1", api_key=api_key, max_retries=0, timeout=args.timeout
        )
        width = max([len(name) for name in chosen] + [len(o.model) for o in outcomes] + [10])
        for outcome in outcomes:
            print(outcome.line(width), file=out, flush=True)
        builtin = {
            provider
            for provider, info in providers.items()
            if str(info.get("base_url", "")).startswith("builtin://")
        }
        for name in chosen:
            provider = name.split(":", 1)[0]
            tools = None if args.tools and provider in builtin else args.tools
            outcome = check_model(client, name, tools=tools)
            outcomes.append(outcome)
            print(outcome.line(width), file=out, flush=True)
    failed = [o for o in outcomes if o.verdict == "FAIL"]
    gateway = [o for o in failed if o.side == "GATEWAY"]
    passed = sum(o.verdict == "PASS" for o in outcomes)
    skipped = sum(o.verdict == "SKIP" for o in outcomes)
    print(
        f"{passed} passed, {len(failed) - len(gateway)} config/upstream problem(s), "
        f"{len(gateway)} gateway problem(s), {skipped} skipped",
        file=out,
    )
    if gateway:
        return 1
    return 2 if failed else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Smoke-test each configured provider/model through the gateway."
    )
    parser.add_argument(
        "--config", help="gateway.yaml to serve in-process (default: ./gateway.yaml)"
    )
    parser.add_argument("--env-file", default=".env", help="keys to load first (default: .env)")
    parser.add_argument("--url", help="check a running gateway at this base URL instead")
    parser.add_argument("--api-key", help="a gateway key, when the gateway requires one")
    parser.add_argument(
        "--model", action="append", default=[], help="check this model name (repeatable)"
    )
    parser.add_argument(
        "--only", action="append", default=[], help="only this provider or provider:model"
    )
    parser.add_argument("--aliases", action="store_true", help="also check the models: aliases")
    parser.add_argument("--tools", action="store_true", help="also run a function-tool round trip")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per call")
    return parser


def main(argv: Sequence[str] | None = None, out: Any = None) -> int:
    args = build_parser().parse_args(argv)
    for name in ("httpx", "httpx2", "openai"):
        logging.getLogger(name).setLevel(logging.WARNING)
    if args.env_file and Path(args.env_file).is_file():
        load_dotenv(args.env_file, override=False)
    return run(args, out or sys.stdout)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    sys.exit(main())
