"""``gateway render``: the exact upstream request, and what a recorded upstream body becomes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.config.build import load_runtime
from gateway.tooling.render import render_case

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "upstream"
KEY = "sk-live-0123456789abcdef"
HEADER_TOKEN = "tok-9876543210-header"
QUERY_KEY = "AIzaQueryKey-5555555555"

CONFIG = """\
providers:
  chat:
    preset: openai-chat
    base_url: https://llm.example.com/v1
    api_key: ${RENDER_TEST_KEY}
    headers: {x-org-token: "${RENDER_TEST_TOKEN}", x-team: blue}
  querykey:
    preset: openai-chat
    base_url: https://q.example.com/v1
    api_key: ${RENDER_TEST_QUERY_KEY}
    auth: {scheme: query, name: key}
  keyless:
    preset: openai-chat
    api_key: ${RENDER_TEST_UNSET_KEY}
models:
  fast: chat:gpt-4o-mini
  capped: {target: "chat:gpt-4o-mini", params: {max_output_tokens: 5}}
"""

REQUEST = {"input": "What is the weather?", "instructions": "Be brief.", "temperature": 0.2}


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RENDER_TEST_KEY", KEY)
    monkeypatch.setenv("RENDER_TEST_TOKEN", HEADER_TOKEN)
    monkeypatch.setenv("RENDER_TEST_QUERY_KEY", QUERY_KEY)
    monkeypatch.delenv("RENDER_TEST_UNSET_KEY", raising=False)
    path = tmp_path / "gateway.yaml"
    path.write_text(CONFIG)
    return path


@pytest.fixture
def request_file(tmp_path: Path) -> Path:
    path = tmp_path / "request.json"
    path.write_text(json.dumps(REQUEST))
    return path


def render(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["render", *args])
    out, err = capsys.readouterr()
    return code, out, err


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        for secret in (KEY, HEADER_TOKEN, QUERY_KEY):
            assert secret not in text


def test_prints_the_exact_upstream_request_with_secrets_masked(
    config: Path, request_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = render(capsys, "--config", str(config), "--model", "fast", str(request_file))
    assert code == 0, err
    head, _, body = out.partition("\n\n")
    assert head.splitlines() == [
        "# model 'fast' -> provider 'chat', upstream model 'gpt-4o-mini' (not streaming)",
        "POST https://llm.example.com/v1/chat/completions",
        "authorization: Bearer ***",
        "content-type: application/json",
        "x-org-token: ***",
        "x-team: blue",
    ]
    assert json.loads(body) == {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "What is the weather?"},
        ],
        "temperature": 0.2,
    }
    assert_no_secret(out, err)


def test_streaming_and_alias_params_show_in_the_body(
    config: Path, request_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = render(
        capsys, "--config", str(config), "--model", "capped", "--stream", str(request_file)
    )
    assert code == 0
    body = json.loads(out.partition("\n\n")[2])
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["max_completion_tokens"] == 5
    assert "(streaming)" in out.splitlines()[0]


def test_a_query_key_is_masked_in_the_url(
    config: Path, request_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = render(
        capsys, "--config", str(config), "--model", "querykey:m", str(request_file)
    )
    assert code == 0, err
    assert out.splitlines()[1] == "POST https://q.example.com/v1/chat/completions?key=***"
    assert_no_secret(out, err)


def test_a_missing_key_renders_with_a_note(
    config: Path, request_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = render(
        capsys, "--config", str(config), "--model", "keyless:m", str(request_file)
    )
    assert code == 0
    assert "# note: provider 'keyless' has no API key (RENDER_TEST_UNSET_KEY is not set)" in out
    assert "authorization: Bearer ***" in out
    assert "placeholder" not in out


def test_a_recorded_stream_becomes_responses_events_and_a_final_response(
    config: Path, request_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = render(
        capsys,
        "--config",
        str(config),
        "--model",
        "fast",
        str(request_file),
        "--upstream-body",
        str(FIXTURES / "chat-text.sse"),
    )
    assert code == 0, err
    assert "(streaming)" in out.splitlines()[0]  # inferred from the SSE body
    canonical = out.split("# canonical events")[1].split("\n\n")[0].splitlines()[1:]
    assert json.loads(canonical[0]) == {"type": "text", "text": "I'm"}
    assert json.loads(canonical[-1]) == {"type": "done"}
    sse = out.split("# Responses events (SSE, as the client receives them)\n")[1]
    names = [line.removeprefix("event: ") for line in sse.splitlines() if line.startswith("event:")]
    assert names[:3] == ["response.created", "response.in_progress", "response.output_item.added"]
    assert names[-1] == "response.completed"
    final = json.loads(out.split("# final Response\n")[1])
    assert final["status"] == "completed"
    assert final["output"][0]["content"][0]["text"].startswith("I'm unable to provide real-time")
    assert final["usage"]["output_tokens"] == 30
    assert_no_secret(out, err)


def test_a_whole_upstream_body_and_an_error_status(
    config: Path, request_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    upstream = tmp_path / "answer.json"
    upstream.write_text(
        json.dumps(
            {
                "choices": [
                    {"message": {"role": "assistant", "content": "Sunny."}, "finish_reason": "stop"}
                ],
                "usage": {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11},
            }
        )
    )
    args = ["--config", str(config), "--model", "fast", str(request_file)]
    code, out, _ = render(capsys, *args, "--upstream-body", str(upstream), "--json")
    assert code == 0
    result = json.loads(out)
    assert result["stream"] is False
    assert "events" not in result
    assert result["canonical"][0] == {"type": "text", "text": "Sunny."}
    assert result["response"]["output"][0]["content"][0]["text"] == "Sunny."
    assert result["response"]["usage"]["total_tokens"] == 11

    upstream.write_text(
        json.dumps({"error": {"message": f"bad key {KEY}", "type": "invalid_request_error"}})
    )
    code, out, err = render(
        capsys, *args, "--upstream-body", str(upstream), "--upstream-status", "401"
    )
    assert code == 0
    assert "# the client gets HTTP 401" in out
    assert "bad key ***" in out  # the upstream echoed the key: masked
    assert_no_secret(out, err)


def test_an_invalid_request_gets_the_clients_error(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    request = tmp_path / "bad.json"
    request.write_text(json.dumps({"input": [], "model": "fast"}))
    code, out, err = render(capsys, "--config", str(config), str(request))
    assert code == 1
    assert out == ""
    assert "the gateway would answer HTTP 400" in err
    assert json.loads(err.split(":\n", 1)[1])["error"]["code"] == "empty_input"


def test_stable_rendering_replaces_generated_ids_and_times(config: Path) -> None:
    runtime = load_runtime(config)
    upstream = (FIXTURES / "chat-tool.sse").read_bytes()
    first = render_case(runtime, {**REQUEST, "model": "fast"}, upstream=upstream, stable=True)
    second = render_case(runtime, {**REQUEST, "model": "fast"}, upstream=upstream, stable=True)
    assert first.as_dict() == second.as_dict()
    assert first.response is not None
    assert first.response["id"] == "resp_1"
    assert first.response["created_at"] == 0
    assert first.response["output"][0]["id"] == "fc_1"


def test_the_command_reads_stdin_and_never_prints_a_secret(config: Path) -> None:
    """The real command line, with the key in its environment: grep everything it prints."""
    command = [sys.executable, "-m", "gateway", "render", "--config", str(config)]
    result = subprocess.run(
        [*command, "--model", "fast", "-", "--upstream-body", str(FIXTURES / "chat-text.sse")],
        input=json.dumps(REQUEST),
        capture_output=True,
        text=True,
        env={
            "RENDER_TEST_KEY": KEY,
            "RENDER_TEST_TOKEN": HEADER_TOKEN,
            "RENDER_TEST_QUERY_KEY": QUERY_KEY,
            "PATH": "/usr/bin:/bin",
        },
    )
    assert result.returncode == 0, result.stderr
    assert "authorization: Bearer ***" in result.stdout
    assert "response.completed" in result.stdout
    assert_no_secret(result.stdout, result.stderr)
