"""Responses events → SSE bytes: ``event:`` equal to ``type``, one JSON ``data:`` line, no ``[DONE]``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

#: ``event: <type>\ndata: `` per event type, encoded once (the emitter's types are a fixed set).
_PREFIXES: dict[str, bytes] = {}


def _prefix(kind: str) -> bytes:
    prefix = _PREFIXES[kind] = b"event: " + kind.encode() + b"\ndata: "
    return prefix


def encode_event(event: dict[str, Any]) -> bytes:
    kind: str = event["type"]
    return (_PREFIXES.get(kind) or _prefix(kind)) + orjson.dumps(event) + b"\n\n"


def encode_events(events: Iterable[dict[str, Any]]) -> bytes:
    if type(events) is list and len(events) == 1:  # a stream chunk is mostly one text delta
        event = events[0]
        kind: str = event["type"]
        return (_PREFIXES.get(kind) or _prefix(kind)) + orjson.dumps(event) + b"\n\n"
    parts: list[bytes] = []
    for event in events:
        kind = event["type"]
        parts.append(_PREFIXES.get(kind) or _prefix(kind))
        parts.append(orjson.dumps(event))
        parts.append(b"\n\n")
    return b"".join(parts)
