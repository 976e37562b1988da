"""Log formats and the request context every line carries."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from gateway.observability.context import (
    RequestContextFilter,
    reset_current,
    set_current,
)
from gateway.observability.logs import (
    GatewayLogHandler,
    JsonFormatter,
    TextFormatter,
    configure_logging,
    resolve_format,
)
from gateway.observability.record import RequestRecord


def _record(message: str, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("gateway.test", logging.INFO, __file__, 1, message, (), None)
    for name, value in extra.items():
        setattr(record, name, value)
    RequestContextFilter().filter(record)
    return record


def _request(request_id: str = "req_1", trace_id: str = "ab" * 16) -> RequestRecord:
    return RequestRecord(None, request_id, trace_id, "cd" * 8, True, "POST", "/v1/responses")


def test_json_line_has_the_request_context_and_fields() -> None:
    token = set_current(_request())
    try:
        record = _record("hello %s", gateway={"event": "x", "n": 1})
        record.args = ("world",)
    finally:
        reset_current(token)
    line = JsonFormatter().format(record)
    data = json.loads(line)
    assert "\n" not in line
    assert data["msg"] == "hello world"
    assert data["level"] == "info"
    assert data["logger"] == "gateway.test"
    assert data["request_id"] == "req_1"
    assert data["trace_id"] == "ab" * 16
    assert data["event"] == "x" and data["n"] == 1
    assert data["ts"].endswith("Z") and "T" in data["ts"]


def test_outside_a_request_there_is_no_request_id() -> None:
    data = json.loads(JsonFormatter().format(_record("idle")))
    assert "request_id" not in data


def test_context_follows_tasks_spawned_by_the_request() -> None:
    import asyncio

    seen: list[str | None] = []

    async def child() -> None:
        record = _record("in a task")
        seen.append(record.request_id)

    async def main() -> None:
        token = set_current(_request("req_task"))
        try:
            await asyncio.create_task(child())
        finally:
            reset_current(token)

    asyncio.run(main())
    assert seen == ["req_task"]


def test_exceptions_stay_on_one_json_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        record = _record("failed")
        record.exc_info = sys.exc_info()
    data = json.loads(JsonFormatter().format(record))
    assert "ValueError: boom" in data["exc"]


def test_text_line_for_people() -> None:
    token = set_current(_request())
    try:
        record = _record("POST /v1/responses 200", gateway={"provider": "echo", "cost_usd": None})
    finally:
        reset_current(token)
    line = TextFormatter().format(record)
    assert "INFO" in line and "gateway.test: POST /v1/responses 200" in line
    assert "provider=echo" in line and "cost_usd" not in line
    assert line.endswith(f"[req_1 {'ab' * 16}]")


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_auto_format_is_text_on_a_terminal_and_json_elsewhere() -> None:
    assert resolve_format("auto", _Tty()) == "text"
    assert resolve_format("auto", io.StringIO()) == "json"
    assert resolve_format("json", _Tty()) == "json"
    assert resolve_format("text", io.StringIO()) == "text"


@pytest.fixture
def clean_root() -> Iterator[None]:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level, logging.getLogger("gateway").level)
    uvicorn = {
        name: (list(logging.getLogger(name).handlers), logging.getLogger(name).propagate)
        for name in ("uvicorn", "uvicorn.error", "uvicorn.access")
    }
    yield
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    logging.getLogger("gateway").setLevel(saved[2])
    for name, (handlers, propagate) in uvicorn.items():
        logging.getLogger(name).handlers[:] = handlers
        logging.getLogger(name).propagate = propagate


def test_configure_logging_owns_an_unconfigured_process(clean_root: None) -> None:
    stream = io.StringIO()
    handler = configure_logging("json", "debug", force=True, stream=stream)
    assert isinstance(handler, GatewayLogHandler)
    logging.getLogger("gateway.x").debug("one")
    logging.getLogger("uvicorn.error").warning("two")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["msg"] for line in lines] == ["one", "two"]
    # Called again (a worker's create_app, a reload): the same handler, a new format.
    assert configure_logging("text") is handler
    logging.getLogger("gateway.x").info("three")
    assert stream.getvalue().splitlines()[-1].split(" ", 1)[1].startswith("INFO")


def test_configure_logging_leaves_someone_elses_setup_alone(clean_root: None) -> None:
    root = logging.getLogger()
    theirs = logging.StreamHandler(io.StringIO())
    root.handlers[:] = [theirs]
    assert configure_logging("json") is None
    assert root.handlers == [theirs]
