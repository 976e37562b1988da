"""The request being handled, as a context variable, and W3C trace-context ids without OTel.

Every log line emitted while a request is handled (by any module, in any task the request
spawns) carries its request id and trace id: ``RequestContextFilter`` reads them from here.
With tracing disabled the gateway still continues a client's ``traceparent`` (or starts a
trace id of its own), so logs, metric exemplars and response headers correlate for free.
"""

from __future__ import annotations

import contextvars
import logging
import re
from typing import TYPE_CHECKING

from gateway.ids import random_hex

if TYPE_CHECKING:
    from gateway.observability.record import RequestRecord

_current: contextvars.ContextVar[RequestRecord | None] = contextvars.ContextVar(
    "gateway_request", default=None
)

_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16


def current_record() -> RequestRecord | None:
    """The record of the request this code runs for, or None outside a request."""
    return _current.get()


def set_current(record: RequestRecord | None) -> contextvars.Token[RequestRecord | None]:
    return _current.set(record)


def reset_current(token: contextvars.Token[RequestRecord | None]) -> None:
    _current.reset(token)


def parse_traceparent(value: str | None) -> tuple[str, str, bool] | None:
    """``00-<trace>-<parent span>-<flags>`` → (trace id, parent span id, sampled), or None."""
    if not value:
        return None
    match = _TRACEPARENT.match(value.strip().lower())
    if match is None:
        return None
    trace_id, span_id, flags = match.groups()
    if trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
        return None
    return trace_id, span_id, bool(int(flags, 16) & 1)


def format_traceparent(trace_id: str, span_id: str, sampled: bool) -> str:
    return f"00-{trace_id}-{span_id}-{'01' if sampled else '00'}"


def new_trace_id() -> str:
    return random_hex()[:32]


def new_span_id() -> str:
    return random_hex()[:16]


def new_trace_and_span_ids() -> tuple[str, str]:
    """A new trace's id and its root span's id, from one draw."""
    ids = random_hex()
    return ids[:32], ids[32:]


class RequestContextFilter(logging.Filter):
    """Adds ``request_id`` and ``trace_id`` to every record (None outside a request).

    Attach it to handlers, not loggers: a logger's filters do not see records that
    propagate up from its children.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            current = _current.get()
            record.request_id = current.request_id if current is not None else None
            record.trace_id = current.trace_id if current is not None else None
        return True
