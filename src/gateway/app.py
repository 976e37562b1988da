"""The ASGI application: ``create_app()`` wires config, transports, agents and routes.

``uvicorn gateway.app:create_app --factory`` works as well as ``gateway serve``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway import __version__, collector
from gateway.access.admin import router as admin_router
from gateway.access.limits import MemoryRateLimiter, RateLimiter, create_limiter
from gateway.access.middleware import AccessMiddleware
from gateway.access.notices import announce
from gateway.agents.bus import AgentBus, create_bus
from gateway.agents.routes import router as agents_router
from gateway.api.disconnect import ClientDisconnected
from gateway.api.meta import healthz, list_models
from gateway.api.responses import create_response
from gateway.config.build import Runtime
from gateway.config.store import RuntimeStore
from gateway.config.watcher import ConfigReloader, poll_interval_from_env
from gateway.errors import GatewayError
from gateway.observability import Observability, configure_logging
from gateway.providers.transport import TransportPool
from gateway.resilience import BreakerBoard
from gateway.settings import Settings

logger = logging.getLogger("gateway")


@dataclass
class GatewayState:
    """Everything the routes share for the life of the process."""

    store: RuntimeStore
    transports: TransportPool
    agent_bus: AgentBus
    limiter: RateLimiter = field(default_factory=MemoryRateLimiter)  # RPM/TPM buckets
    breakers: BreakerBoard = field(default_factory=BreakerBoard)


#: A fast-lane endpoint: the ASGI scope and ``receive`` with the gateway's state, no Starlette
#: ``Request``: building one, and reading its ``receive`` and ``app``, are Python calls on
#: every request.
Endpoint = Callable[[Scope, Receive, GatewayState], Awaitable[ASGIApp]]


class GatewayApp(FastAPI):
    """FastAPI, with the gateway's middlewares outermost and a fast lane for the LLM path.

    ``POST /v1/responses`` is the call every agent makes, so it goes from the middlewares
    straight to its handler: FastAPI's per-request stack (error and exception middlewares,
    router, exit stack, its own telemetry) cost more CPU than the gateway's own framing.
    Every other route, and every other method on that path, takes the FastAPI stack.
    """

    def __init__(self, front_door: Callable[[ASGIApp], ASGIApp], **kwargs: Any) -> None:
        super().__init__(telemetry={"tracing": False, "metrics": False, "logs": False}, **kwargs)
        self.front_door = front_door  # observability (with request ids), then access
        self.fast_lane: dict[str, Endpoint] = {}

    def build_middleware_stack(self) -> ASGIApp:
        return self.front_door(FastLane(super().build_middleware_stack(), self.fast_lane))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """HTTP goes straight to the middleware stack, as ``Starlette.__call__`` sends it:
        FastAPI's call in between only checks for its telemetry, which is off. Lifespan and
        websockets take FastAPI's way."""
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        if self.root_path:
            scope["root_path"] = self.root_path
        scope["app"] = self
        if self.middleware_stack is None:
            self.middleware_stack = self.build_middleware_stack()
        await self.middleware_stack(scope, receive, send)


class FastLane:
    """A fast-lane path → its ``POST`` endpoint, with the app's error pages; else ``routes``."""

    def __init__(self, routes: ASGIApp, endpoints: dict[str, Endpoint]) -> None:
        self.routes = routes
        self.endpoints = endpoints

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint = self.endpoints.get(scope["path"]) if scope["type"] == "http" else None
        if endpoint is None:
            await self.routes(scope, receive, send)
            return
        response: ASGIApp
        try:
            if scope["method"] != "POST":
                raise method_not_allowed(Request(scope), "POST")
            # The lifespan sets the state up: read per request, as a new lifespan may replace it.
            response = await endpoint(scope, receive, scope["app"].state.gateway)
        except GatewayError as error:
            response = error_response(error)
        except Exception as exc:
            response = await _unexpected_error(Request(scope), exc)
        await response(scope, receive, send)


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


async def _client_disconnected(request: Request, exc: Exception) -> Response:
    return Response(status_code=499)  # nobody to answer; logged as 499 by observability


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


def method_not_allowed(request: Request, allow: str | None) -> GatewayError:
    return GatewayError(
        405,
        f"Method {request.method} is not allowed on {request.url.path}.",
        code="method_not_allowed",
        headers={"allow": allow} if allow else {},
    )


async def _method_not_allowed(request: Request, exc: Exception) -> Response:
    headers = getattr(exc, "headers", None) or {}
    return error_response(method_not_allowed(request, headers.get("Allow")))


def create_app(
    config_path: str | None = None, *, watch: bool | None = None, tune_gc: bool | None = None
) -> GatewayApp:
    """Build the app; the config is loaded now so a broken file fails fast at startup.

    ``tune_gc`` (default: ``GATEWAY_GC_TUNING``, on) sets the process's garbage collector up
    for serving (``collector.py``); an app embedded in another program's process leaves it.
    """
    settings = Settings.from_env()
    tune_gc = settings.tune_gc if tune_gc is None else tune_gc
    path = config_path or settings.config_path
    store = RuntimeStore.from_file(path)
    watch_enabled = settings.watch_config if watch is None else watch
    observability = Observability()
    observability.watch(store)
    logs = observability.current.logs  # a worker process sets its logging up here
    configure_logging(logs.format, logs.level or os.environ.get("GATEWAY_LOG_LEVEL"))

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = GatewayState(
            store=store,
            transports=TransportPool(),
            agent_bus=observability.instrument_bus(create_bus(store.current.agents.backend)),
            limiter=create_limiter(store.current.server.redis_url),
        )
        app.state.gateway = state
        observability.breakers = state.breakers
        host = os.environ.get("GATEWAY_HOST")
        announce(store.current, host)
        store.on_swap(lambda old, new: _announce_access_change(old, new, host))
        reloader = ConfigReloader(
            store, state.transports, watch=watch_enabled, poll_interval=poll_interval_from_env()
        )
        await reloader.start()
        full_collections: asyncio.Task[None] | None = None
        if tune_gc:
            collector.settle()  # full collections on a clock, not mid-burst (see collector.py)
            tally = observability.metrics.tally
            full_collections = asyncio.get_running_loop().create_task(
                collector.collect_on_a_clock(idle=lambda: tally.in_flight == 0)
            )
        try:
            yield
        finally:
            if full_collections is not None:
                full_collections.cancel()
            await reloader.stop()
            await state.agent_bus.close()
            await state.limiter.aclose()
            await state.transports.aclose()
            observability.shutdown()

    def front_door(routes: ASGIApp) -> ASGIApp:
        # Access control innermost: a 401 is still logged, counted and carries a request id.
        routes = AccessMiddleware(routes, store=store)
        return observability.middleware(routes)

    app = GatewayApp(
        front_door,
        title="Gateway",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.fast_lane["/v1/responses"] = create_response  # POST only: FastLane answers the rest
    app.router.add_route("/healthz", healthz, methods=["GET"])
    app.router.add_route("/v1/models", list_models, methods=["GET"])
    app.include_router(agents_router)
    app.include_router(admin_router)
    app.add_exception_handler(GatewayError, _gateway_error)
    app.add_exception_handler(ClientDisconnected, _client_disconnected)
    app.add_exception_handler(404, _not_found)
    app.add_exception_handler(405, _method_not_allowed)
    app.add_exception_handler(Exception, _unexpected_error)
    observability.install(app)  # /metrics
    return app


def _announce_access_change(old: Runtime, new: Runtime, host: str | None) -> None:
    if (old.access.open, dict(old.access.disabled)) != (new.access.open, dict(new.access.disabled)):
        announce(new, host)
