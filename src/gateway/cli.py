"""The ``gateway`` command: ``serve``, ``check`` and ``render``."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from gateway.settings import default_config_path

if TYPE_CHECKING:
    from gateway.config.errors import ConfigIssue


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from gateway.api.protocol import GatewayHttpProtocol

    if args.config:
        os.environ["GATEWAY_CONFIG"] = args.config
    if args.no_reload_config:
        os.environ["GATEWAY_WATCH_CONFIG"] = "0"
    os.environ["GATEWAY_HOST"] = args.host  # the app warns when open on a non-loopback address
    config_path = default_config_path()
    from gateway.config.build import load_runtime
    from gateway.config.errors import ConfigError

    try:
        runtime = load_runtime(config_path)
    except ConfigError as exc:
        print(f"gateway: cannot start, {config_path} has errors:", file=sys.stderr)
        for issue in exc.issues:
            print(f"  {issue}", file=sys.stderr)
        return 2
    from gateway.observability import configure_logging
    from gateway.observability.settings import ObservabilitySettings

    logs = ObservabilitySettings.from_config(runtime.raw.get("observability")).logs
    os.environ["GATEWAY_LOG_LEVEL"] = args.log_level  # worker processes set logging up from it
    configure_logging(logs.format, logs.level or args.log_level, force=True)
    if args.workers > 1 and runtime.agents.backend == "memory":
        logging.getLogger("gateway").warning(
            "agents.backend is 'memory' with %d workers: each worker keeps its own inboxes; "
            "use a redis:// backend to share agent channels between workers",
            args.workers,
        )
    from gateway import native

    native.report(logging.getLogger("gateway"))
    logging.getLogger("gateway").info(
        "serving %s on http://%s:%s", config_path, args.host, args.port
    )
    uvicorn.run(
        "gateway.app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        reload=args.reload,
        reload_dirs=["src"] if args.reload else None,
        workers=None if args.reload else args.workers,
        loop="uvloop",
        http=GatewayHttpProtocol,
        log_level=args.log_level,
        log_config=None,  # uvicorn's lines go through the gateway's handler (JSON or text)
        access_log=args.access_log,
        timeout_graceful_shutdown=5,
    )
    return 0


def _check(args: argparse.Namespace) -> int:
    from gateway.config.build import Runtime, load_runtime
    from gateway.config.errors import ConfigError
    from gateway.tooling.lint import lint_file

    path = args.file or default_config_path()
    runtime: Runtime | None = None
    issues: list[ConfigIssue] = []
    try:
        runtime = load_runtime(path)
    except ConfigError as exc:
        issues = list(exc.issues)
    reported = {issue.path for issue in issues}  # a template that did not compile: said once
    issues += [issue for issue in lint_file(path) if issue.path not in reported]
    issues.sort(key=_position)
    if issues or runtime is None:
        for issue in issues:
            print(issue, file=sys.stderr)
        print(f"{path}: {len(issues)} error(s)", file=sys.stderr)
        return 1
    for name, variable in sorted(runtime.missing_keys.items()):
        print(f"warning: provider '{name}' has no API key: {variable} is not set", file=sys.stderr)
    for name, variable in sorted(runtime.access.disabled.items()):
        print(f"warning: gateway key '{name}' is disabled: {variable} is not set", file=sys.stderr)
    if runtime.access.open:
        print("warning: no gateway keys configured: the gateway is open to anyone", file=sys.stderr)
    print(
        f"{path}: ok, version {runtime.version}: {len(runtime.providers)} provider(s), "
        f"{len(runtime.aliases)} alias(es), {len(runtime.agents.channels)} channel(s)"
    )
    return 0


def _position(issue: ConfigIssue) -> tuple[bool, str, int, int]:
    where = issue.location
    return (where is None, where.file, where.line, where.column) if where else (True, "", 0, 0)


def _render(args: argparse.Namespace) -> int:
    from pathlib import Path

    import orjson

    from gateway.config.build import load_runtime
    from gateway.config.errors import ConfigError
    from gateway.errors import GatewayError
    from gateway.tooling.render import describe_error, format_text, render_case

    path = args.config or default_config_path()
    try:
        runtime = load_runtime(path)
    except ConfigError as exc:
        for issue in exc.issues:
            print(issue, file=sys.stderr)
        print(f"{path}: {len(exc.issues)} error(s)", file=sys.stderr)
        return 1
    try:
        if args.request is None:
            raw = b'{"input": "Hello!"}'
        elif args.request == "-":
            raw = sys.stdin.buffer.read()
        else:
            raw = Path(args.request).read_bytes()
        body = orjson.loads(raw)
        upstream = Path(args.upstream_body).read_bytes() if args.upstream_body else None
    except (OSError, orjson.JSONDecodeError) as exc:
        print(f"gateway render: {exc}", file=sys.stderr)
        return 1
    if not isinstance(body, dict):
        print("gateway render: the request must be a JSON object", file=sys.stderr)
        return 1
    try:
        rendered = render_case(
            runtime,
            body,
            model=args.model,
            stream=True if args.stream else None,
            upstream=upstream,
            upstream_status=args.upstream_status,
        )
    except GatewayError as exc:
        print(describe_error(exc), file=sys.stderr)
        return 1
    if args.json:
        sys.stdout.write(orjson.dumps(rendered.as_dict(), option=orjson.OPT_INDENT_2).decode())
        sys.stdout.write("\n")
    else:
        sys.stdout.write(format_text(rendered))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gateway", description="A declarative LLM gateway (OpenAI Responses API)."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the gateway")
    serve.add_argument(
        "--config", help="path to gateway.yaml (default: $GATEWAY_CONFIG or ./gateway.yaml)"
    )
    serve.add_argument("--host", default=os.environ.get("GATEWAY_HOST", "127.0.0.1"))
    serve.add_argument("--port", type=int, default=int(os.environ.get("GATEWAY_PORT", "8000")))
    serve.add_argument("--workers", type=int, default=int(os.environ.get("GATEWAY_WORKERS", "1")))
    serve.add_argument(
        "--reload", action="store_true", help="restart on code changes (development)"
    )
    serve.add_argument(
        "--no-reload-config", action="store_true", help="do not hot-reload gateway.yaml"
    )
    serve.add_argument("--log-level", default=os.environ.get("GATEWAY_LOG_LEVEL", "info"))
    serve.add_argument("--access-log", action="store_true", help="log every request line")
    serve.set_defaults(handler=_serve)

    check = commands.add_parser("check", help="validate a config file and report every error")
    check.add_argument(
        "file", nargs="?", help="config file (default: $GATEWAY_CONFIG or ./gateway.yaml)"
    )
    check.set_defaults(handler=_check)

    render = commands.add_parser(
        "render", help="dry run: print the upstream request a mapping makes, and its answer"
    )
    render.add_argument("request", nargs="?", help="Responses request JSON file, or - for stdin")
    render.add_argument("--model", help="the model to route (overrides the request's)")
    render.add_argument(
        "--config", help="path to gateway.yaml (default: $GATEWAY_CONFIG or ./gateway.yaml)"
    )
    render.add_argument("--stream", action="store_true", help="render the streaming request")
    render.add_argument(
        "--upstream-body", metavar="FILE", help="a recorded upstream body (JSON, SSE or NDJSON)"
    )
    render.add_argument(
        "--upstream-status", type=int, default=200, help="the status that body came with"
    )
    render.add_argument("--json", action="store_true", help="print one JSON document")
    render.set_defaults(handler=_render)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = args.handler
    code: int = handler(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
