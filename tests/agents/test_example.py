"""``examples/agents_handoff.py`` runs against a real gateway, as its docstring says."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.server import running_gateway

EXAMPLE = Path(__file__).parents[2] / "examples" / "agents_handoff.py"
CONFIG = """
default_provider: echo
providers:
  echo: {preset: echo}
agents:
  channels:
    handoffs: {members: [planner, coder]}
"""


def test_planner_and_coder_hand_off_every_task(tmp_path: Path) -> None:
    with running_gateway(CONFIG) as base_url:
        result = subprocess.run(
            [
                sys.executable,
                str(EXAMPLE),
                "--base-url",
                base_url,
                "--tasks",
                "3",
                "--cursor-file",
                str(tmp_path / "coder.cursor"),
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )

    assert result.returncode == 0, result.stderr
    assert result.stdout.count("planner -> coder") == 3
    assert result.stdout.count("planner <- coder") == 3
    assert result.stdout.strip().endswith("3 handed off, 3 answered, 3 replies received")
