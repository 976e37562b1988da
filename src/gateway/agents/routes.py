"""HTTP endpoints of the agent bus.

- ``POST /v1/agents/messages``: send; 201 with the stored ``agent.message``.
- ``GET /v1/agents/{agent_id}/messages?after=&limit=&wait=``: one inbox page, long-polled.
- ``GET /v1/agents/{agent_id}/messages/stream?after=``: the inbox as Server-Sent Events
  (also served by the plain GET when the request sends ``Accept: text/event-stream``).

The app provides ``app.state.gateway`` with ``.agent_bus`` and ``.store.current.agents``; each
request reads the config snapshot that is current when it starts.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import orjson
from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from gateway.agents.bus import AgentBus, BusUnavailableError
from gateway.agents.config import AgentsConfig
from gateway.agents.messages import Page, Position, StoredMessage
from gateway.agents.requests import (
    parse_after,
    parse_agent_id,
    parse_limit,
    parse_message,
    parse_stream_timeout,
    parse_wait,
    plan_delivery,
)
from gateway.api.body import TooLarge, read_body
from gateway.errors import GatewayError

HEARTBEAT_SECONDS = 15.0
STREAM_PAGE_SIZE = 100

router = APIRouter()


@router.post("/v1/agents/messages", status_code=201)
async def send_message(request: Request) -> Response:
    bus, config = _bus_and_config(request)
    limit = config.max_message_bytes
    body = await read_body(request.scope, request.receive, limit, _too_large(limit))
    fields = parse_message(body)
    authorize_agent(request, fields["sender"], param="sender")
    delivery = plan_delivery(fields, config)
    try:
        stored = await bus.send(
            delivery.message, recipients=delivery.recipients, retention=delivery.retention
        )
    except BusUnavailableError as exc:
        raise _unavailable() from exc
    return _json(stored.to_dict(), status=201)


@router.get("/v1/agents/{agent_id}/messages")
async def list_messages(request: Request, agent_id: str) -> Response:
    if "text/event-stream" in request.headers.get("accept", ""):
        return await stream_messages(request, agent_id)
    agent_id = parse_agent_id(agent_id)
    authorize_agent(request, agent_id, param="agent_id")
    query = request.query_params
    after = parse_after(query.get("after"))
    limit = parse_limit(query.get("limit"))
    wait = parse_wait(query.get("wait"))
    bus, config = _bus_and_config(request)
    page = await _read(bus, agent_id, config, after, limit, wait)
    return _json(page.to_dict())


@router.get("/v1/agents/{agent_id}/messages/stream")
async def stream_messages(request: Request, agent_id: str) -> Response:
    """Push the inbox as SSE: ``id:`` is the message id, so a reconnecting ``EventSource``
    resumes after the last one it saw (``Last-Event-ID``). The stream ends after ``timeout``
    seconds (default 300) and the client reconnects: no connection outlives a deploy."""
    agent_id = parse_agent_id(agent_id)
    authorize_agent(request, agent_id, param="agent_id")
    query = request.query_params
    after = parse_after(query.get("after") or request.headers.get("last-event-id"))
    lifetime = parse_stream_timeout(query.get("timeout"))
    bus, _ = _bus_and_config(request)
    return StreamingResponse(
        _sse_events(request, bus, agent_id, after, time.monotonic() + lifetime),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def authorize_agent(request: Request, agent_id: str, *, param: str) -> None:
    """A key bound to agent ids may only read those inboxes and send as those agents.

    The access-control layer sets ``request.state.principal`` (absent: no gateway keys);
    its ``agent_ids`` is ``None`` when the key may act as any agent.
    """
    principal = getattr(request.state, "principal", None)
    allowed = getattr(principal, "agent_ids", None)
    if allowed is not None and agent_id not in allowed:
        raise GatewayError(
            403,
            f"This API key may not act as agent '{agent_id}'.",
            type="permission_error",
            param=param,
            code="agent_not_allowed",
        )


async def _sse_events(
    request: Request, bus: AgentBus, agent_id: str, after: Position | None, deadline: float
) -> AsyncIterator[bytes]:
    yield b"retry: 1000\n\n"
    while (remaining := deadline - time.monotonic()) > 0:
        wait = min(remaining, HEARTBEAT_SECONDS)
        try:
            _, config = _bus_and_config(request)  # the current snapshot, as it is reloaded
            page = await _read(bus, agent_id, config, after, STREAM_PAGE_SIZE, wait)
        except GatewayError as exc:
            yield _sse_error(exc)
            return
        if not page.messages:
            yield b": keep-alive\n\n"
            continue
        for message in page.messages:
            yield _sse_message(message)
        after = page.messages[-1].position


def _sse_message(message: StoredMessage) -> bytes:
    data = orjson.dumps(message.to_dict())
    return b"id: " + message.id.encode() + b"\nevent: agent.message\ndata: " + data + b"\n\n"


def _sse_error(error: GatewayError) -> bytes:
    body = error.body()
    event = {"type": "error", **body["error"], "error": body["error"]}
    return b"event: error\ndata: " + orjson.dumps(event) + b"\n\n"


async def _read(
    bus: AgentBus,
    agent_id: str,
    config: AgentsConfig,
    after: Position | None,
    limit: int,
    wait: float,
) -> Page:
    try:
        return await bus.read(agent_id, config=config, after=after, limit=limit, wait=wait)
    except BusUnavailableError as exc:
        raise _unavailable() from exc


def _bus_and_config(request: Request) -> tuple[AgentBus, AgentsConfig]:
    gateway = getattr(request.app.state, "gateway", None)
    bus = getattr(gateway, "agent_bus", None)
    store = getattr(gateway, "store", None)
    config = getattr(getattr(store, "current", None), "agents", None)
    if not isinstance(bus, AgentBus) or not isinstance(config, AgentsConfig):
        raise GatewayError(
            503,
            "The agent bus is not available.",
            type="server_error",
            code="agent_bus_unavailable",
        )
    return bus, config


def _too_large(limit: int) -> TooLarge:
    return lambda declared: GatewayError(
        400,
        f"The message is larger than the {limit} bytes this gateway accepts "
        "(agents.max_message_bytes).",
        code="message_too_large",
    )


def _unavailable() -> GatewayError:
    return GatewayError(
        503,
        "The agent bus backend is unavailable; retry shortly.",
        type="server_error",
        code="agent_bus_unavailable",
        headers={"Retry-After": "1"},
    )


def _json(body: object, *, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")
