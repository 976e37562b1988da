"""Responses events → SSE bytes: ``event:`` equal to ``type``, one JSON ``data:`` line, no ``[DONE]``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

#: ``event: <type>\ndata: `` per event type, encoded once (the emitter's types are a fixed set).
_PREFIXES: dict[str, bytes] = {}


def encode_event(event: dict[str, Any]) -> bytes:
    return encode_events((event,))


def encode_events(events: Iterable[dict[str, Any]]) -> bytes:
    parts: list[bytes] = []
    for event in events:
        kind: str = event["type"]
        prefix = _PREFIXES.get(kind)
        if prefix is None:
            prefix = _PREFIXES[kind] = b"event: " + kind.encode() + b"\ndata: "
        parts.append(prefix)
        parts.append(orjson.dumps(event))
        parts.append(b"\n\n")
    return b"".join(parts)
