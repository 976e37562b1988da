"""``scripts/smoke_tests.py`` against local fake upstreams: one line per provider/model, and
every failure put on the right side (CONFIG, UPSTREAM or GATEWAY) with a clear reason.
"""

from __future__ import annotations

import importlib.util
import io
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import openai
import pytest

from tests.support.fake_upstream import FakeUpstream, RecordedRequest, Reply, fake_upstream
from tests.support.server import running_gateway

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "smoke_tests.py"


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("smoke_tests", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


smoke = _load_script()


def _chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def _answer(request: RecordedRequest) -> Reply:
    """A well-behaved Chat Completions server: "pong", or a tool call when one is required."""
    body = request.json()
    usage = {"prompt_tokens": 9, "completion_tokens": 1, "total_tokens": 10}
    if body.get("tool_choice") == "required":
        call = {
            "id": "call_1",
            "type": "function",
            "function": {"name": "get_time", "arguments": '{"city":"Paris"}'},
        }
        message: dict[str, Any] = {"role": "assistant", "content": None, "tool_calls": [call]}
        finish = "tool_calls"
    else:
        message, finish = {"role": "assistant", "content": "pong"}, "stop"
    if body.get("stream"):
        return Reply.sse(
            [_chunk(message), _chunk({}, finish), {"choices": [], "usage": usage}], done=True
        )
    choice = {"index": 0, "message": message, "finish_reason": finish}
    return Reply.json({"object": "chat.completion", "choices": [choice], "usage": usage})


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Reply:
    body = {"error": {"message": message, "type": "invalid_request_error", "code": None}}
    return Reply.json(body, status=status, headers=headers)


def responder(request: RecordedRequest) -> Reply:
    kind = request.path.split("/")[1]
    if kind == "badkey":
        return _error(401, "Incorrect API key provided: sk-wrong-123.")
    if kind == "quota":
        return _error(429, "You exceeded your current quota.", {"retry-after": "20"})
    if kind == "down":
        return _error(503, "The engine is currently overloaded.")
    if kind == "mangled":
        return _error(400, "Invalid 'messages[0].content': expected a string.")
    return _answer(request)


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    with fake_upstream() as fake:
        fake.responder = responder
        yield fake


def provider(name: str, url: str, *, key: str = "sk-test", model: str | None = "m") -> str:
    model_line = f"    default_model: {model}\n" if model else ""
    return (
        f"  {name}:\n"
        "    preset: openai-chat\n"
        f"    base_url: {url}/v1\n"
        f"    api_key: '{key}'\n"
        f"{model_line}"
    )


def full_config(url: str) -> str:
    return (
        "default_provider: echo\n"
        "routing: {retry: {attempts: 1}}\n"
        "providers:\n"
        "  echo: {preset: echo}\n"
        + provider("good", f"{url}/good")
        + provider("badkey", f"{url}/badkey", key="sk-wrong-123")
        + provider("quota", f"{url}/quota")
        + provider("down", f"{url}/down")
        + provider("mangled", f"{url}/mangled")
        + provider("nokey", f"{url}/good", key="${SMOKE_UNSET_KEY_FOR_TEST}")
        + provider("nomodel", f"{url}/good", model=None)
        + provider("broken", f"{url}/good")
        # A mapping bug: this body field fails while rendering every request.
        + "    request: {body: {temperature: '{{ 1 // 0 }}'}}\n"
    )


@pytest.fixture(scope="module")
def full_gateway(upstream: FakeUpstream) -> Iterator[str]:
    with running_gateway(full_config(upstream.url)) as base_url:
        # Warm the SDK and the gateway up once, so each test times only the script's checks.
        openai.OpenAI(base_url=f"{base_url}/v1", api_key="x").responses.create(
            model="echo:echo", input="warm up"
        )
        yield base_url


def run_script(*argv: str) -> tuple[int, dict[str, str], str]:
    out = io.StringIO()
    code = smoke.main(list(argv), out=out)
    text = out.getvalue()
    lines = {}
    for line in text.splitlines():
        match = re.match(r"^(PASS|FAIL|SKIP)\s+(\S+)\s+(.*)$", line)
        if match:
            lines[match.group(2)] = f"{match.group(1)} {match.group(3)}"
    return code, lines, text


def test_every_provider_gets_one_line_on_the_right_side(full_gateway: str) -> None:
    code, lines, text = run_script("--url", full_gateway, "--env-file", "")

    assert lines["echo:echo"].startswith("PASS whole ")
    assert lines["good:m"].startswith("PASS whole ")
    assert "10 tokens" in lines["good:m"]
    assert "'pong'" in lines["good:m"]
    assert re.match(r"FAIL UPSTREAM\s+key rejected \(HTTP 401\)", lines["badkey:m"])
    assert "sk-wrong-123" not in text  # the gateway redacted the echoed key
    assert re.match(
        r"FAIL UPSTREAM\s+quota or rate limit \(HTTP 429, retry after 20s\)", lines["quota:m"]
    )
    assert re.match(r"FAIL UPSTREAM\s+provider error \(HTTP 503\)", lines["down:m"])
    assert re.match(
        r"FAIL GATEWAY\s+provider refused the request the preset built \(HTTP 400\)",
        lines["mangled:m"],
    )
    assert re.match(
        r"FAIL CONFIG\s+missing key: set SMOKE_UNSET_KEY_FOR_TEST in \.env", lines["nokey:m"]
    )
    assert re.match(r"FAIL GATEWAY\s+HTTP 500: .*mapping failed", lines["broken:m"])
    assert lines["nomodel"].startswith("SKIP no model configured")
    assert "--model nomodel:MODEL" in lines["nomodel"]
    assert len(lines) == 9
    assert text.strip().splitlines()[-1] == (
        "2 passed, 4 config/upstream problem(s), 2 gateway problem(s), 1 skipped"
    )
    assert code == 1  # a gateway problem outranks the others


def test_running_gateway_with_tools_all_pass(upstream: FakeUpstream) -> None:
    config = "default_provider: echo\nproviders:\n  echo: {preset: echo}\n" + provider(
        "good", f"{upstream.url}/good"
    )
    with running_gateway(config) as base_url:
        upstream.requests.clear()
        code, lines, _ = run_script("--url", base_url, "--tools", "--env-file", "")
    assert code == 0
    assert "tool round trip ok (1 call)" in lines["good:m"]
    assert "tools n/a (built-in provider)" in lines["echo:echo"]
    second_turn = [r.json() for r in upstream.requests if r.json().get("tools")][-1]
    assert [m["role"] for m in second_turn["messages"]] == ["user", "assistant", "tool"]
    assert second_turn["messages"][2] == {
        "role": "tool",
        "tool_call_id": "call_1",
        "content": "14:05",
    }


def test_explicit_models_and_only_upstream_problems(
    upstream: FakeUpstream, full_gateway: str
) -> None:
    code, lines, _ = run_script(
        "--url", full_gateway, "--env-file", "", "--model", "good:other", "--model", "quota:m"
    )
    assert set(lines) == {"good:other", "quota:m"}
    assert lines["good:other"].startswith("PASS")
    assert json.loads(upstream.requests[-1].body)["model"] == "m"  # quota:m came last
    assert code == 2  # upstream trouble only


def test_only_filters_providers(full_gateway: str) -> None:
    code, lines, _ = run_script("--url", full_gateway, "--env-file", "", "--only", "good")
    assert list(lines) == ["good:m"]
    assert code == 0


def test_keys_come_from_the_env_file(
    upstream: FakeUpstream, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SMOKE_ENV_FILE_KEY", raising=False)
    config = tmp_path / "conf" / "gateway.yaml"
    config.parent.mkdir()
    config.write_text(
        "default_provider: good\nproviders:\n"
        + provider("good", f"{upstream.url}/good", key="${SMOKE_ENV_FILE_KEY}")
    )
    env_file = tmp_path / "keys.env"
    env_file.write_text("SMOKE_ENV_FILE_KEY=sk-from-env-file\n")
    try:
        code, lines, _ = run_script("--config", str(config), "--env-file", str(env_file))
    finally:
        monkeypatch.delenv("SMOKE_ENV_FILE_KEY", raising=False)
    assert lines["good:m"].startswith("PASS")
    assert upstream.requests[-1].headers["authorization"] == "Bearer sk-from-env-file"
    assert code == 0


@pytest.mark.parametrize(
    ("status", "error", "side", "phrase"),
    [
        (
            502,
            {"code": "upstream_unreachable", "message": "Could not reach"},
            "UPSTREAM",
            "unreachable",
        ),
        (504, {"code": "upstream_timeout", "message": "timed out"}, "UPSTREAM", "timeout"),
        (
            404,
            {"code": "model_not_found", "message": "Unknown provider 'x'"},
            "CONFIG",
            "no such model",
        ),
        (
            None,
            {"message": "The connection to upstream provider 'p' failed mid-stream"},
            "UPSTREAM",
            "mid-stream",
        ),
        (None, {"message": "The gateway failed while streaming: KeyError"}, "GATEWAY", "KeyError"),
    ],
)
def test_classify(status: int | None, error: dict[str, str], side: str, phrase: str) -> None:
    problem = smoke.classify(status, error)
    assert problem.side == side
    assert phrase in problem.detail
