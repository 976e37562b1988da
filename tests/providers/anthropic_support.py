"""Shared pieces of the Anthropic preset tests: a gateway in front of a fake Messages API.

The gateway runs for real (uvicorn on loopback, its own thread) with one provider, ``claude``,
built from the ``anthropic`` preset and pointed at a fake upstream that records each request
and replays scripted bytes. Clients are the official SDKs, never our own code.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from openai import AsyncOpenAI, OpenAI

from tests.support.fake_upstream import FIXTURES, FakeUpstream, Reply, fake_upstream
from tests.support.server import running_gateway

API_KEY = "sk-ant-test-key"
MODEL = "claude:claude-sonnet-4-5"

CONFIG = """
default_provider: claude
providers:
  claude:
    preset: anthropic
    base_url: "{url}"
    api_key: "${{ANTHROPIC_TEST_KEY}}"
    retry: {{attempts: 1}}
"""


@dataclass
class Setup:
    base_url: str
    upstream: FakeUpstream

    def client(self) -> OpenAI:
        return OpenAI(
            base_url=f"{self.base_url}/v1",
            api_key="unused",
            max_retries=0,
            _strict_response_validation=True,
        )

    def async_client(self) -> AsyncOpenAI:
        return AsyncOpenAI(base_url=f"{self.base_url}/v1", api_key="unused", max_retries=0)


@contextlib.contextmanager
def anthropic_gateway(config: str = CONFIG) -> Iterator[Setup]:
    """A fake Messages API and a gateway whose ``claude`` provider points at it."""
    with (
        fake_upstream() as upstream,
        running_gateway(
            config.format(url=upstream.url), env={"ANTHROPIC_TEST_KEY": API_KEY}
        ) as base_url,
    ):
        yield Setup(base_url, upstream)


def fixture_reply(name: str, *, split: str = "events") -> Reply:
    """A recorded Anthropic stream replayed byte for byte."""
    return Reply.sse_file(FIXTURES / name, split=split)


def message(
    content: list[dict[str, Any]],
    *,
    stop_reason: str = "end_turn",
    usage: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A non-streaming Messages API answer, shaped as §A.5 of the reference shows."""
    return {
        "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5-20250929",
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": usage
        or {
            "input_tokens": 12,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": 6,
            "service_tier": "standard",
        },
        **extra,
    }


_ID = re.compile(r"\b(resp|msg|fc|rs)_[0-9a-f]{48}\b")


def normalized(value: Any) -> Any:
    """Gateway-minted ids and clocks replaced by stable placeholders, for snapshots."""
    if isinstance(value, dict):
        return {
            key: ("<time>" if key in ("created_at", "completed_at") and item else normalized(item))
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [normalized(item) for item in value]
    if isinstance(value, str):
        return _ID.sub(lambda match: f"{match.group(1)}_<id>", value)
    return value
