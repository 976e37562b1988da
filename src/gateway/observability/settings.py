"""The ``observability:`` and ``prices:`` sections of gateway.yaml, read once per config version.

The JSON Schema has validated the shapes; this only applies defaults and the standard
``OTEL_*`` environment variables, so the rest of the package reads plain typed values.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from gateway.observability.cost import PriceTable

LogFormat = Literal["json", "text", "auto"]


@dataclass(frozen=True)
class LogSettings:
    format: LogFormat = "auto"
    level: str | None = None  # None: keep the process's level (--log-level)
    requests: bool = True  # one line per request
    content: bool = False  # message content in the request line: an explicit opt-in


@dataclass(frozen=True)
class MetricsSettings:
    enabled: bool = True


@dataclass(frozen=True)
class TracingSettings:
    enabled: bool = False
    endpoint: str | None = None  # OTLP/HTTP base URL or full /v1/traces URL; None: OTEL_* env
    service_name: str = "gateway"
    sample_ratio: float | None = None  # None: the SDK's default (OTEL_TRACES_SAMPLER*)

    def key(self) -> tuple[Any, ...]:
        """What identifies an exporter setup: a reload that changes none of it keeps the SDK.

        Exporter headers (vendor keys) come from ``OTEL_EXPORTER_OTLP_HEADERS`` only, so no
        secret sits in gateway.yaml or the config version.
        """
        return (
            self.enabled,
            self.endpoint,
            self.service_name,
            self.sample_ratio,
        )


@dataclass(frozen=True)
class ObservabilitySettings:
    logs: LogSettings = LogSettings()
    metrics: MetricsSettings = MetricsSettings()
    tracing: TracingSettings = TracingSettings()
    prices: PriceTable = field(default_factory=PriceTable)

    @classmethod
    def from_config(
        cls,
        section: Mapping[str, Any] | None,
        prices: Mapping[str, Any] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> ObservabilitySettings:
        section = section or {}
        env = os.environ if environ is None else environ
        logs = section.get("logs") or {}
        metrics = section.get("metrics") or {}
        return cls(
            logs=LogSettings(
                format=logs.get("format", "auto"),
                level=logs.get("level"),
                requests=bool(logs.get("requests", True)),
                content=bool(logs.get("content", False)),
            ),
            metrics=MetricsSettings(enabled=bool(metrics.get("enabled", True))),
            tracing=_tracing(section.get("tracing") or {}, env),
            prices=PriceTable.from_config(prices or {}),
        )


def _tracing(section: Mapping[str, Any], env: Mapping[str, str]) -> TracingSettings:
    """YAML first; else the standard variables turn tracing on when an endpoint is set."""
    if env.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return TracingSettings()
    endpoint = section.get("endpoint")
    env_endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    enabled = section.get("enabled")
    if enabled is None:
        enabled = bool(endpoint or env_endpoint)
    ratio = section.get("sample_ratio")
    return TracingSettings(
        enabled=bool(enabled),
        endpoint=endpoint,
        service_name=str(section.get("service_name") or env.get("OTEL_SERVICE_NAME") or "gateway"),
        sample_ratio=None if ratio is None else float(ratio),
    )
