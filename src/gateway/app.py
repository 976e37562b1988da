"""The ASGI application: ``create_app()`` wires config, transports, agents and routes.

``uvicorn gateway.app:create_app --factory`` works as well as ``gateway serve``.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway import __version__
from gateway.agents.bus import AgentBus, create_bus
from gateway.api.meta import healthz, list_models
from gateway.api.responses import create_response
from gateway.config.store import RuntimeStore
from gateway.errors import GatewayError
from gateway.providers.transport import TransportPool
from gateway.settings import Settings

logger = logging.getLogger("gateway")


@dataclass
class GatewayState:
    """Everything the routes share for the life of the process."""

    store: RuntimeStore
    transports: TransportPool
    agent_bus: AgentBus
    breakers: dict[str, Any] = field(default_factory=dict)

    def breaker_state(self, provider: str) -> str | None:
        breaker = self.breakers.get(provider)
        return None if breaker is None else str(breaker.state)


class RequestIdMiddleware:
    """Accept or mint ``X-Request-ID`` and return it on every response (pure ASGI, no copies)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = b""
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                request_id = value[:128]
                break
        if not request_id:
            request_id = b"req_" + secrets.token_hex(12).encode()
        scope.setdefault("state", {})["request_id"] = request_id.decode("latin-1")

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id)]
            await send(message)

        await self.app(scope, receive, send_with_id)


def error_response(error: GatewayError) -> Response:
    return Response(
        orjson.dumps(error.body()),
        error.status,
        headers=error.headers,
        media_type="application/json",
    )


async def _gateway_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, GatewayError)
    return error_response(exc)


async def _unexpected_error(request: Request, exc: Exception) -> Response:
    logger.error(
        "unhandled error on %s %s: %s",
        request.method,
        request.url.path,
        type(exc).__name__,
        exc_info=exc,
    )
    return error_response(
        GatewayError(
            500, "The gateway hit an internal error.", type="server_error", code="internal_error"
        )
    )


async def _not_found(request: Request, exc: Exception) -> Response:
    return error_response(
        GatewayError(404, f"No route for {request.method} {request.url.path}.", code="not_found")
    )


async def _method_not_allowed(request: Request, exc: Exception) -> Response:
    return error_response(
        GatewayError(
            405,
            f"Method {request.method} is not allowed on {request.url.path}.",
            code="method_not_allowed",
        )
    )


def create_app(config_path: str | None = None, *, watch: bool | None = None) -> FastAPI:
    """Build the app; the config is loaded now so a broken file fails fast at startup."""
    settings = Settings.from_env()
    path = config_path or settings.config_path
    store = RuntimeStore.from_file(path)
    watch_enabled = settings.watch_config if watch is None else watch

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = GatewayState(
            store=store,
            transports=TransportPool(),
            agent_bus=create_bus(store.current.agents.backend),
        )
        app.state.gateway = state
        watcher = None
        if watch_enabled and store.current.server.hot_reload:
            from gateway.config.watcher import ConfigWatcher

            watcher = ConfigWatcher(store)
            await watcher.start()
        try:
            yield
        finally:
            if watcher is not None:
                await watcher.stop()
            await state.agent_bus.close()
            await state.transports.aclose()

    app = FastAPI(
        title="Gateway",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.router.add_route("/v1/responses", create_response, methods=["POST"])
    app.router.add_route("/healthz", healthz, methods=["GET"])
    app.router.add_route("/v1/models", list_models, methods=["GET"])
    with contextlib.suppress(ImportError):
        from gateway.agents.routes import router as agents_router

        app.include_router(agents_router)
    app.add_exception_handler(GatewayError, _gateway_error)
    app.add_exception_handler(404, _not_found)
    app.add_exception_handler(405, _method_not_allowed)
    app.add_exception_handler(Exception, _unexpected_error)
    app.add_middleware(RequestIdMiddleware)
    return app
