"""Structured logs: one JSON object per line for machines, a readable line in a terminal.

Structured fields travel in a record's ``gateway`` attribute (``extra={"gateway": {...}}``);
``RequestContextFilter`` adds the request id and trace id of the request being handled, so
every line, whichever module logs it, can be joined to its request.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Mapping
from typing import Any, Final, TextIO

import orjson

from gateway.observability.context import RequestContextFilter
from gateway.observability.settings import LogFormat

#: Loggers that uvicorn configures with handlers of its own; routed to ours when we own logging.
UVICORN_LOGGERS: Final = ("uvicorn", "uvicorn.error", "uvicorn.access")


def _timestamp(created: float) -> str:
    seconds = int(created)
    millis = int((created - seconds) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


def _fields(record: logging.LogRecord) -> Mapping[str, Any]:
    fields = getattr(record, "gateway", None)
    return fields if isinstance(fields, Mapping) else {}


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "msg", "request_id", "trace_id", ...fields}`` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": _timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None)
        if request_id is not None:
            data["request_id"] = request_id
            data["trace_id"] = getattr(record, "trace_id", None)
        data.update(_fields(record))
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(data, default=str).decode()


class TextFormatter(logging.Formatter):
    """``12:00:01.234 INFO  gateway.request: msg key=value ... [req_x 4bf9…]`` for people."""

    def format(self, record: logging.LogRecord) -> str:
        parts = [
            _timestamp(record.created)[11:-1],
            f"{record.levelname:<5}",
            f"{record.name}:",
            record.getMessage(),
        ]
        for name, value in _fields(record).items():
            if value is not None and value != "":
                parts.append(f"{name}={value}")
        request_id = getattr(record, "request_id", None)
        if request_id is not None:
            parts.append(f"[{request_id} {getattr(record, 'trace_id', None) or '-'}]")
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class GatewayLogHandler(logging.StreamHandler[TextIO]):
    """The handler ``configure_logging`` installs; its format can change on a config reload."""

    def __init__(self, stream: TextIO | None = None, fmt: LogFormat = "auto") -> None:
        super().__init__(stream or sys.stderr)
        self.addFilter(RequestContextFilter())
        self.set_format(fmt)

    def set_format(self, fmt: LogFormat) -> None:
        self.setFormatter(
            TextFormatter() if resolve_format(fmt, self.stream) == "text" else JsonFormatter()
        )


def resolve_format(fmt: LogFormat, stream: TextIO) -> str:
    """``auto`` is text in a terminal and JSON anywhere else (a container, a file, a pipe)."""
    if fmt != "auto":
        return fmt
    isatty = getattr(stream, "isatty", None)
    return "text" if isatty is not None and isatty() else "json"


def configure_logging(
    fmt: LogFormat = "auto",
    level: str | int | None = None,
    *,
    force: bool = False,
    stream: TextIO | None = None,
) -> GatewayLogHandler | None:
    """Install the gateway's handler on the root logger, once per process.

    Without ``force`` a process whose logging someone else already set up (a test runner, an
    embedding application) is left alone, except that our handler's format is updated when it
    is ours. uvicorn's loggers are routed through the same handler so every line has one shape.
    """
    root = logging.getLogger()
    ours = next((h for h in root.handlers if isinstance(h, GatewayLogHandler)), None)
    if ours is not None and not force:
        ours.set_format(fmt)
        _route_uvicorn()
        if level is not None:
            logging.getLogger("gateway").setLevel(_level(level))
        return ours
    if root.handlers and not force:
        if level is not None:
            logging.getLogger("gateway").setLevel(_level(level))
        return None
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = GatewayLogHandler(stream, fmt)
    root.addHandler(handler)
    root.setLevel(_level(level or "info"))
    logging.getLogger("gateway").setLevel(_level(level or "info"))
    _route_uvicorn()
    return handler


def _route_uvicorn() -> None:
    """uvicorn's loggers that have handlers of their own write through ours instead (one shape
    for every line); a logger uvicorn silenced (``access_log=False``) stays silent."""
    for name in UVICORN_LOGGERS:
        uvicorn_logger = logging.getLogger(name)
        if uvicorn_logger.handlers:
            uvicorn_logger.handlers.clear()
            uvicorn_logger.propagate = True


def set_log_format(fmt: LogFormat) -> None:
    """Apply a reloaded ``observability.logs.format`` to the handler we installed, if any."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, GatewayLogHandler):
            handler.set_format(fmt)


def _level(level: str | int) -> int:
    if isinstance(level, int):
        return level
    value = logging.getLevelName(level.upper())
    return value if isinstance(value, int) else logging.INFO
