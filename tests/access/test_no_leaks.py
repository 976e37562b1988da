"""No secret ever leaks: every failure path runs while logs, stderr and bodies are captured,
then no provider key, header secret or gateway key may appear anywhere in what was captured.

The fake upstream is hostile on purpose: it echoes the credentials it receives (Authorization,
the query key, the extra header) into error bodies, 500s and mid-stream error events.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.cli import main
from tests.access.conftest import ADMIN_KEY, ADMIN_SHA256, KEY_A, KEY_B, KEYS_ENV
from tests.support.fake_upstream import FakeUpstream, RecordedRequest, Reply, fake_upstream
from tests.support.server import (
    free_port,
    refused_port,
    serve_app_in_thread,
    wait_until_healthy,
    write_config,
)

PROVIDER_KEY = "sk-provider-" + secrets.token_hex(16)
QUERY_KEY = "sk-query-" + secrets.token_hex(16)
HEADER_SECRET = "hs-header-" + secrets.token_hex(16)
LITERAL_KEY = "gk-literal-" + secrets.token_hex(16)  # written in a broken config file
LITERAL_PROVIDER_KEY = "sk-literal-" + secrets.token_hex(16)
SECRET_ENV = {
    **KEYS_ENV,
    "LEAK_PROVIDER_KEY": PROVIDER_KEY,
    "LEAK_QUERY_KEY": QUERY_KEY,
    "LEAK_HEADER_SECRET": HEADER_SECRET,
}
SECRETS = (
    PROVIDER_KEY,
    QUERY_KEY,
    HEADER_SECRET,
    KEY_A,
    KEY_B,
    ADMIN_KEY,
    LITERAL_KEY,
    LITERAL_PROVIDER_KEY,
)

CONFIG = """
default_provider: leaky
providers:
  leaky:
    preset: openai-chat
    base_url: {upstream}/v1
    api_key: ${{LEAK_PROVIDER_KEY}}
    headers: {{x-extra-auth: "Token ${{LEAK_HEADER_SECRET}}"}}
    retry: {{attempts: 1}}
  query:
    preset: openai-chat
    base_url: {upstream}/v1
    api_key: ${{LEAK_QUERY_KEY}}
    auth: {{scheme: query, name: key}}
    retry: {{attempts: 1}}
  gone:
    preset: openai-chat
    base_url: http://127.0.0.1:{closed_port}/v1
    api_key: ${{LEAK_PROVIDER_KEY}}
    retry: {{attempts: 1}}
  keyless:
    preset: openai-chat
    base_url: {upstream}/v1
    api_key: ${{LEAK_VARIABLE_NOT_SET}}
  mangled:
    preset: openai-chat
    base_url: {upstream}/v1
    api_key: ${{LEAK_PROVIDER_KEY}}
    retry: {{attempts: 1}}
    stream:
      rules:
        chat.completion.chunk: {{type: text, text: "{{{{ event.choices[0].delta.content | b64decode }}}}"}}
keys:
  - {{name: team-a, key: "${{ACCESS_TEST_KEY_A}}", models: ["leaky:*"]}}
  - {{name: team-b, key: "${{ACCESS_TEST_KEY_B}}", limits: {{rpm: 1}}}}
  - {{name: ops, key_sha256: "{admin_sha256}", admin: true}}
"""

# Two broken configs an operator might save over the running one. In the first, schema errors
# sit on the lines that hold keys; in the second, a template that holds an interpolated header
# secret does not compile, and a gateway key is written in the file.
BROKEN_SCHEMA = """
providers:
  leaky: {{preset: openai-chat, base_url: "{upstream}/v1", api_key: "${{LEAK_PROVIDER_KEY}}", timeouts: {{connect: fast}}}}
  literal: {{preset: openai-chat, base_url: "{upstream}/v1", api_key: {{nested: {literal_provider}}}}}
  wrong: {{preset: openai-chat, base_url: "{upstream}/v1", auth: "{literal_provider}"}}
keys:
  - {{name: ops, key_sha256: "{admin_sha256}", admin: true, key: {{value: "${{ACCESS_TEST_KEY_A}}"}}}}
"""
BROKEN_COMPILE = """
providers:
  leaky:
    preset: openai-chat
    base_url: "{upstream}/v1"
    api_key: "${{LEAK_PROVIDER_KEY}}"
    request:
      headers: {{x-auth: "Bearer ${{LEAK_HEADER_SECRET}} {{{{ oops"}}
keys:
  - {{name: ops, key_sha256: "{admin_sha256}", admin: true}}
  - {{name: literal, key: {literal}}}
"""


def reflect(request: RecordedRequest) -> Reply:
    """Whatever credentials came in go back out, in the way each scenario asks."""
    creds = f"auth={request.headers.get('authorization')} query={request.query} extra={request.headers.get('x-extra-auth')}"
    model = request.json().get("model", "")
    if model == "reflect-401":
        return Reply.json(
            {"error": {"message": f"Incorrect API key provided: {creds}"}}, status=401
        )
    if model == "reflect-500":
        return Reply.json(
            {"error": {"message": f"crashed with {creds}", "type": "server_error"}}, status=500
        )
    if model in ("reflect-stream", "mangle"):
        content = "aGk=" if model == "reflect-stream" else f"not base64 {creds}"
        chunk = {
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": {"content": content}}],
        }
        failure = {"error": {"message": f"stream broke, {creds}", "code": "server_error"}}
        return Reply.sse([chunk, failure])
    return Reply.json({"error": {"message": f"unexpected model {model}: {creds}"}}, status=400)


@contextlib.contextmanager
def hostile_upstream() -> Iterator[FakeUpstream]:
    with fake_upstream() as upstream:
        upstream.responder = reflect
        yield upstream


def render(template: str, upstream: FakeUpstream) -> str:
    return template.format(
        upstream=upstream.url,
        closed_port=refused_port(),
        admin_sha256=ADMIN_SHA256,
        literal=LITERAL_KEY,
        literal_provider=LITERAL_PROVIDER_KEY,
    )


def every_failure(base_url: str, config: Path, upstream: FakeUpstream) -> list[str]:
    """Run each failure path against a gateway; return every status line, header and body."""
    seen: list[str] = []

    def call(method: str, path: str, key: str | None = None, **options: Any) -> httpx.Response:
        headers = options.pop("headers", {})
        if key is not None:
            headers["authorization"] = f"Bearer {key}"
        with httpx.Client(base_url=base_url, timeout=10) as http:
            if options.pop("stream", False):
                with http.stream(method, path, headers=headers, **options) as streamed:
                    streamed.read()
                    response = streamed
            else:
                response = http.request(method, path, headers=headers, **options)
        seen.append(f"{response.status_code} {dict(response.headers)} {response.text}")
        return response

    def ask(
        model: str, key: str | None = ADMIN_KEY, stream: bool = False, **options: Any
    ) -> httpx.Response:
        body = {"model": model, "input": "hi", "stream": stream}
        return call("POST", "/v1/responses", key, json=body, stream=stream, **options)

    # Gateway keys: missing, near misses, the wrong header, a model or agent the key may not use.
    assert ask("leaky:reflect-401", key=None).status_code == 401
    for wrong in (KEY_A[:-1], KEY_A + "x", KEY_A.upper(), f"{KEY_A} {KEY_B}"):
        assert ask("leaky:reflect-401", key=wrong).status_code == 401
    assert (
        ask("leaky:reflect-401", key=None, headers={"x-api-key": ADMIN_KEY[:-2]}).status_code == 401
    )
    assert ask("query:reflect-401", key=KEY_A).status_code == 403
    assert call("POST", "/admin/reload", KEY_A).status_code == 403
    # Limits.
    ask("leaky:reflect-401", key=KEY_B)
    assert ask("leaky:reflect-401", key=KEY_B).status_code == 429
    # Upstreams that echo the credentials they were sent.
    assert ask("leaky:reflect-401").status_code == 401
    assert ask("leaky:reflect-401", stream=True).status_code == 401
    assert ask("leaky:reflect-500").status_code == 500
    assert ask("query:reflect-401").status_code == 401
    assert "response.failed" in ask("leaky:reflect-stream", stream=True).text
    assert ask("mangled:mangle", stream=True).status_code == 502  # a mapping bug: logged, a 502
    assert ask("leaky:reflect-stream").status_code >= 400
    assert ask("gone:gpt-4o").status_code == 502
    assert ask("keyless:gpt-4o").status_code == 503
    # Bad bodies.
    call("POST", "/v1/responses", ADMIN_KEY, content=b"{not json")
    call("POST", "/v1/responses", ADMIN_KEY, content=b"x" * 9_000_000)
    # What the gateway shows about itself.
    call("GET", "/healthz")
    call("GET", "/v1/models", ADMIN_KEY)
    call("GET", "/v1/models", KEY_A)
    # Reloads to broken configs whose errors sit on the lines that hold keys.
    original = config.read_text()
    for broken in (BROKEN_SCHEMA, BROKEN_COMPILE):
        config.write_text(render(broken, upstream))
        assert call("POST", "/admin/reload", ADMIN_KEY).status_code == 422
        assert call("GET", "/healthz").json()["last_error"]["errors"]
    config.write_text(original)
    assert call("POST", "/admin/reload", ADMIN_KEY).status_code == 200

    received = [request for request in upstream.requests if request.headers.get("authorization")]
    assert any(PROVIDER_KEY in str(request.headers) for request in received)  # sent, and echoed
    assert any(request.query.get("key") == QUERY_KEY for request in upstream.requests)
    assert any(
        request.headers.get("x-extra-auth") == f"Token {HEADER_SECRET}" for request in received
    )
    return seen


def assert_no_secret(captured: dict[str, str]) -> None:
    for where, text in captured.items():
        for secret in SECRETS:
            assert secret not in text, f"a secret leaked into {where}"


class Everything(logging.Handler):
    """Every record, formatted with its traceback, from any logger it is attached to."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record) + repr(record.args) + repr(record.__dict__))


@contextlib.contextmanager
def capture_all_logs() -> Iterator[Everything]:
    handler = Everything()
    names = ["", "uvicorn", "uvicorn.error", "uvicorn.access", "gateway", "httpx", "httpcore"]
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.removeHandler(handler)
            logger.setLevel(level)


def test_no_secret_in_logs_bodies_or_tracebacks_in_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    for name, value in SECRET_ENV.items():
        monkeypatch.setenv(name, value)
    with hostile_upstream() as upstream, capture_all_logs() as logs:
        config = write_config(render(CONFIG, upstream), tmp_path)
        with serve_app_in_thread(config) as base_url:
            seen = every_failure(base_url, config, upstream)
    out, err = capfd.readouterr()
    assert any("Traceback" in line or "exc_text" in line for line in logs.lines)  # a traceback ran
    assert any("Incorrect API key provided" in line for line in seen)
    assert_no_secret(
        {"responses": "\n".join(seen), "logs": "\n".join(logs.lines), "stdout": out, "stderr": err}
    )


def test_no_secret_in_a_served_process_output(tmp_path: Path) -> None:
    output = tmp_path / "server.log"
    with hostile_upstream() as upstream:
        config = write_config(render(CONFIG, upstream), tmp_path)
        port = free_port()
        with output.open("wb") as sink:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "gateway",
                    "serve",
                    "--config",
                    str(config),
                    "--port",
                    str(port),
                    "--log-level",
                    "debug",
                    "--access-log",
                    "--no-reload-config",
                ],
                env={**os.environ, **SECRET_ENV},
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
            try:
                base_url = f"http://127.0.0.1:{port}"
                wait_until_healthy(base_url, process=process)
                seen = every_failure(base_url, config, upstream)
            finally:
                process.terminate()
                process.wait(timeout=10)
    logged = output.read_text()
    assert "response mapping failed" in logged and "config reload failed" in logged
    assert_no_secret({"responses": "\n".join(seen), "server output": logged})


def test_no_secret_in_check_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in SECRET_ENV.items():
        monkeypatch.setenv(name, value)
    captured: dict[str, str] = {}
    with hostile_upstream() as upstream:
        for name, template in (
            ("ok", CONFIG),
            ("schema", BROKEN_SCHEMA),
            ("compile", BROKEN_COMPILE),
        ):
            path = write_config(render(template, upstream), tmp_path)
            main(["check", str(path)])
            out, err = capsys.readouterr()
            captured[f"check {name}"] = out + err
    assert "keys[1].key: key 'literal' is written in the file" in captured["check compile"]
    assert "providers.literal.api_key: must be of type string" in captured["check schema"]
    assert "providers.wrong.auth: this value is not of type 'object'" in captured["check schema"]
    assert_no_secret(captured)


def test_no_secret_in_render_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in SECRET_ENV.items():
        monkeypatch.setenv(name, value)
    captured: dict[str, str] = {}
    with hostile_upstream() as upstream:
        path = write_config(render(CONFIG, upstream), tmp_path)
        for model in ("leaky:gpt-4o", "query:gpt-4o"):
            for extra in ([], ["--json"], ["--stream"]):
                main(["render", "--config", str(path), "--model", model, *extra])
                out, err = capsys.readouterr()
                captured[f"render {model} {extra}"] = out + err
    assert "***" in captured["render leaky:gpt-4o []"]
    assert_no_secret(captured)
