"""Responses events → SSE bytes: ``event:`` equal to ``type``, one JSON ``data:`` line, no ``[DONE]``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson


def encode_event(event: dict[str, Any]) -> bytes:
    kind: str = event["type"]
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"


def encode_events(events: Iterable[dict[str, Any]]) -> bytes:
    return b"".join(encode_event(event) for event in events)
