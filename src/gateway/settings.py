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


@dataclass(frozen=True)
class Settings:
    config_path: str
    watch_config: bool = True

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            config_path=default_config_path(),
            watch_config=os.environ.get("GATEWAY_WATCH_CONFIG", "1").lower()
            not in ("0", "false", "no"),
        )
