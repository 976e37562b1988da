"""Route behaviour that needs a hand-built app: keys bound to agents, and a failing backend."""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response

from gateway.agents.bus import AgentBus, BusUnavailableError, MemoryBus
from gateway.agents.config import AgentsConfig, Retention
from gateway.agents.messages import OutgoingMessage, Page, Position, StoredMessage
from gateway.agents.requests import parse_wait
from gateway.agents.routes import router
from gateway.app import error_response
from gateway.errors import GatewayError

CONFIG = AgentsConfig.from_dict({"channels": {"review": {"members": ["planner", "coder"]}}})
NO_PRINCIPAL = object()


class DownBus(AgentBus):
    async def send(
        self, message: OutgoingMessage, *, recipients: Sequence[str], retention: Retention
    ) -> StoredMessage:
        raise BusUnavailableError("connection refused")

    async def read(
        self,
        agent_id: str,
        *,
        config: AgentsConfig,
        after: Position | None = None,
        limit: int = 100,
        wait: float = 0.0,
    ) -> Page:
        raise BusUnavailableError("connection refused")

    async def close(self) -> None:
        pass


def make_app(*, principal: Any = NO_PRINCIPAL, bus: AgentBus | None = None) -> FastAPI:
    app = FastAPI()
    app.include_router(router)

    async def render(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, GatewayError)
        return error_response(exc)

    app.add_exception_handler(GatewayError, render)

    if principal is not NO_PRINCIPAL:

        @app.middleware("http")
        async def authenticate(request: Request, call_next: Any) -> Any:
            request.state.principal = principal
            return await call_next(request)

    if bus is not None:
        store = SimpleNamespace(current=SimpleNamespace(agents=CONFIG))
        app.state.gateway = SimpleNamespace(agent_bus=bus, store=store)
    return app


def client_for(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway")


MESSAGE = {"sender": "planner", "recipient": "coder", "content": "hi"}


async def test_a_key_bound_to_an_agent_reads_only_its_own_inbox() -> None:
    app = make_app(principal=SimpleNamespace(agent_ids=frozenset({"coder"})), bus=MemoryBus())
    async with client_for(app) as http:
        own = await http.get("/v1/agents/coder/messages")
        other = await http.get("/v1/agents/planner/messages")
        other_stream = await http.get("/v1/agents/planner/messages/stream")

    assert own.status_code == 200
    for response in (other, other_stream):
        assert response.status_code == 403
        assert response.json()["error"] == {
            "message": "This API key may not act as agent 'planner'.",
            "type": "permission_error",
            "param": "agent_id",
            "code": "agent_not_allowed",
        }


async def test_a_key_bound_to_an_agent_sends_only_as_that_agent() -> None:
    app = make_app(principal=SimpleNamespace(agent_ids=frozenset({"coder"})), bus=MemoryBus())
    async with client_for(app) as http:
        as_other = await http.post("/v1/agents/messages", json=MESSAGE)
        as_self = await http.post(
            "/v1/agents/messages", json={**MESSAGE, "sender": "coder", "recipient": "planner"}
        )

    assert as_other.status_code == 403
    assert as_other.json()["error"]["param"] == "sender"
    assert as_other.json()["error"]["code"] == "agent_not_allowed"
    assert as_self.status_code == 201


@pytest.mark.parametrize(
    "principal", [SimpleNamespace(agent_ids=None), SimpleNamespace(), NO_PRINCIPAL]
)
async def test_a_key_not_bound_to_agents_may_act_as_any(principal: Any) -> None:
    app = make_app(principal=principal, bus=MemoryBus())
    async with client_for(app) as http:
        sent = await http.post("/v1/agents/messages", json=MESSAGE)
        read = await http.get("/v1/agents/coder/messages")

    assert sent.status_code == 201
    assert [m["id"] for m in read.json()["data"]] == [sent.json()["id"]]


async def test_an_unreachable_backend_is_a_503_to_retry() -> None:
    app = make_app(bus=DownBus())
    async with client_for(app) as http:
        sent = await http.post("/v1/agents/messages", json=MESSAGE)
        read = await http.get("/v1/agents/coder/messages")
        stream = await http.get("/v1/agents/coder/messages/stream", params={"timeout": 1})

    for response in (sent, read):
        assert response.status_code == 503
        assert response.headers["retry-after"] == "1"
        assert response.json()["error"]["code"] == "agent_bus_unavailable"
        assert response.json()["error"]["type"] == "server_error"
    assert stream.status_code == 200
    assert b"event: error" in stream.content
    assert b"agent_bus_unavailable" in stream.content


async def test_an_app_without_a_bus_answers_503_not_500() -> None:
    async with client_for(make_app()) as http:
        response = await http.get("/v1/agents/coder/messages")

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "agent_bus_unavailable"


@pytest.mark.parametrize(
    ("value", "seconds"), [(None, 0.0), ("", 0.0), ("0", 0.0), ("2.5", 2.5), ("3600", 30.0)]
)
def test_wait_is_clamped_to_thirty_seconds(value: str | None, seconds: float) -> None:
    assert parse_wait(value) == seconds
