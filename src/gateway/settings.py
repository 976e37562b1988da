"""Process settings from the environment (``GATEWAY_*``), separate from gateway.yaml.

gateway.yaml says what the gateway does and hot-reloads; these say how this process runs
and are read once at start.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path


def default_config_path() -> str:
    """``GATEWAY_CONFIG``, else ``./gateway.yaml``, else the embedded echo-only default."""
    configured = os.environ.get("GATEWAY_CONFIG")
    if configured:
        return configured
    if Path("gateway.yaml").is_file():
        return "gateway.yaml"
    return str(resources.files("gateway").joinpath("default.yaml"))


def _flag(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    return default if value is None else value.lower() not in ("0", "false", "no")


@dataclass(frozen=True)
class Settings:
    config_path: str
    watch_config: bool = True
    tune_gc: bool = True  # collector.settle() at startup: this process is the gateway's own

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            config_path=default_config_path(),
            watch_config=_flag("GATEWAY_WATCH_CONFIG", True),
            tune_gc=_flag("GATEWAY_GC_TUNING", True),
        )
