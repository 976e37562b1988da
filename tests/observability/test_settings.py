"""The observability section and the standard OTEL_* variables."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config.build import load_runtime
from gateway.config.errors import ConfigError
from gateway.observability.settings import ObservabilitySettings


def test_defaults_log_requests_without_content_and_trace_nothing() -> None:
    settings = ObservabilitySettings.from_config(None, None, environ={})
    assert settings.logs.format == "auto"
    assert settings.logs.requests is True
    assert settings.logs.content is False
    assert settings.metrics.enabled is True
    assert settings.tracing.enabled is False
    assert not settings.prices


def test_yaml_tracing_settings() -> None:
    settings = ObservabilitySettings.from_config(
        {
            "logs": {"format": "json", "content": True},
            "tracing": {
                "enabled": True,
                "endpoint": "http://collector:4318",
                "service_name": "edge-gateway",
                "sample_ratio": 0.25,
            },
        },
        {"fast": {"input": 1, "output": 2}},
        environ={},
    )
    assert settings.logs.content is True
    tracing = settings.tracing
    assert (tracing.enabled, tracing.endpoint, tracing.service_name, tracing.sample_ratio) == (
        True,
        "http://collector:4318",
        "edge-gateway",
        0.25,
    )
    assert settings.prices.prices["fast"].output == 2.0


def test_otel_environment_turns_tracing_on_unless_yaml_says_otherwise() -> None:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel:4318", "OTEL_SERVICE_NAME": "gw-prod"}
    on = ObservabilitySettings.from_config({}, None, environ=env).tracing
    assert on.enabled is True
    assert on.endpoint is None  # the exporter reads the variable itself
    assert on.service_name == "gw-prod"
    off = ObservabilitySettings.from_config({"tracing": {"enabled": False}}, None, environ=env)
    assert off.tracing.enabled is False
    disabled = ObservabilitySettings.from_config(
        {"tracing": {"enabled": True}}, None, environ={"OTEL_SDK_DISABLED": "true"}
    )
    assert disabled.tracing.enabled is False


def test_the_schema_checks_the_sections(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(
        "providers: {echo: {preset: echo}}\n"
        "observability:\n"
        "  logs: {format: xml}\n"
        "  tracing: {sample_ratio: 2}\n"
        "prices:\n"
        "  echo: {input: 1}\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as caught:
        load_runtime(path)
    messages = "\n".join(str(issue) for issue in caught.value.issues)
    assert "observability.logs.format" in messages
    assert "observability.tracing.sample_ratio" in messages
    assert "prices.echo" in messages and "'output' is required" in messages


def test_a_valid_section_reaches_the_settings(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(
        "providers: {echo: {preset: echo}}\n"
        "observability: {logs: {format: json, content: true}, tracing: {enabled: false}}\n"
        "prices: {echo: {input: 1, cached_input: 0.5, output: 2}}\n",
        encoding="utf-8",
    )
    raw = load_runtime(path).raw
    settings = ObservabilitySettings.from_config(raw["observability"], raw["prices"], environ={})
    assert settings.logs.format == "json" and settings.logs.content
    assert settings.prices.prices["echo"].cached_input == 0.5
