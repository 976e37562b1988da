"""Logs, metrics, traces, usage and cost, and request correlation.

``Observability`` is the per-app hub; the request flow reports into the ``RequestRecord`` the
middleware opened (``record_for(request)``). OpenTelemetry is imported only when tracing is on.
"""

from gateway.observability.context import current_record
from gateway.observability.hub import Observability
from gateway.observability.logs import configure_logging
from gateway.observability.record import Attempt, RequestRecord, record_for

__all__ = [
    "Attempt",
    "Observability",
    "RequestRecord",
    "configure_logging",
    "current_record",
    "record_for",
]
