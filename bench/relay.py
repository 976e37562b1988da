"""A minimal pass-through relay on the gateway's server stack: the ceiling for a Python gateway.

Starlette on uvicorn (uvloop, and the gateway's own httptools protocol, which sends a loop
turn's writes as one) with the gateway's garbage-collector set-up (``gateway.collector``: no
full collection in the middle of a burst): the ceiling gets every server-level gain the
gateway has. Every POST is forwarded to the upstream with the
same path and query; the answer's bytes come back unchanged (buffered when the upstream sent
a ``content-length``, streamed otherwise). It does nothing a gateway must do (parse,
translate, re-encode), so the gateway's figures over the relay's, measured in the same run,
are the gateway's own cost.

The upstream client is a switch, since it dominates a relay's cost: ``raw`` (default) is the
bare pooled client in ``bench.rawhttp``, the ceiling; ``httpx`` is one shared pooled
``httpx.AsyncClient`` (like for like with a gateway on httpx); ``aiohttp`` one
``aiohttp.ClientSession`` (a dev dependency, for this comparison only).

Run: ``python -m bench.relay --port 9002 --upstream http://127.0.0.1:9001``.
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from gateway import collector
from gateway.api.protocol import GatewayHttpProtocol

_FORWARDED_REQUEST_HEADERS = ("content-type", "authorization", "x-bench-chunks", "x-bench-delay-ms")
CLIENTS = ("httpx", "aiohttp", "raw")

Forward = Callable[[str, str, bytes, dict[str, str]], Awaitable[Response]]


def _httpx_forwarder(
    upstream: str, max_connections: int
) -> tuple[Forward, Callable[[], Awaitable[None]]]:
    limits = httpx.Limits(
        max_connections=max_connections, max_keepalive_connections=max_connections
    )
    client = httpx.AsyncClient(
        base_url=upstream, limits=limits, timeout=httpx.Timeout(60.0, connect=5.0)
    )

    async def forward(method: str, url: str, body: bytes, headers: dict[str, str]) -> Response:
        answer = await client.send(
            client.build_request(method, url, content=body, headers=headers), stream=True
        )
        media_type = answer.headers.get("content-type")
        if "content-length" in answer.headers:
            data = await answer.aread()
            await answer.aclose()
            return Response(data, status_code=answer.status_code, media_type=media_type)
        return StreamingResponse(
            answer.aiter_raw(),
            status_code=answer.status_code,
            media_type=media_type,
            background=BackgroundTask(answer.aclose),
        )

    return forward, client.aclose


def _aiohttp_forwarder(
    upstream: str, max_connections: int
) -> tuple[Forward, Callable[[], Awaitable[None]]]:
    import aiohttp  # dev-only: to compare HTTP clients

    session = aiohttp.ClientSession(
        upstream,
        connector=aiohttp.TCPConnector(limit=max_connections),
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=60),
        auto_decompress=False,
    )

    async def forward(method: str, url: str, body: bytes, headers: dict[str, str]) -> Response:
        answer = await session.request(method, url, data=body, headers=headers)
        media_type = answer.headers.get("content-type")
        if answer.content_length is not None:
            data = await answer.read()
            answer.release()
            return Response(data, status_code=answer.status, media_type=media_type)

        async def release() -> None:
            answer.release()

        return StreamingResponse(
            answer.content.iter_any(),
            status_code=answer.status,
            media_type=media_type,
            background=BackgroundTask(release),
        )

    return forward, session.close


def _raw_forwarder(upstream: str, _: int) -> tuple[Forward, Callable[[], Awaitable[None]]]:
    from urllib.parse import urlsplit

    from bench.rawhttp import Pool

    parts = urlsplit(upstream)
    pool = Pool(parts.hostname or "127.0.0.1", parts.port or 80)

    async def forward(method: str, url: str, body: bytes, headers: dict[str, str]) -> Response:
        answer = await pool.request(method, url, body, headers)
        media_type = answer.headers.get("content-type")
        if "content-length" in answer.headers:
            return Response(await answer.read(), status_code=answer.status, media_type=media_type)
        return StreamingResponse(
            answer.iter_bytes(), status_code=answer.status, media_type=media_type
        )

    async def close() -> None:
        pool.close()

    return forward, close


def create_relay(upstream: str, client: str = "raw", max_connections: int = 4096) -> Starlette:
    """The relay app: every POST goes to ``upstream`` + same path and query."""
    make = {"httpx": _httpx_forwarder, "aiohttp": _aiohttp_forwarder, "raw": _raw_forwarder}[client]
    forward: Forward | None = None

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        nonlocal forward
        forward, close = make(upstream, max_connections)
        collector.settle()  # as the gateway does once loaded
        try:
            yield
        finally:
            await close()

    async def relay(request: Request) -> Response:
        assert forward is not None
        headers = {k: v for k in _FORWARDED_REQUEST_HEADERS if (v := request.headers.get(k))}
        url = request.url.path
        if request.url.query:
            url += "?" + request.url.query
        return await forward(request.method, url, await request.body(), headers)

    return Starlette(routes=[Route("/{path:path}", relay, methods=["POST"])], lifespan=lifespan)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="minimal pass-through relay")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9002)
    parser.add_argument("--upstream", required=True, help="e.g. http://127.0.0.1:9001")
    parser.add_argument("--client", choices=CLIENTS, default="raw", help="upstream HTTP client")
    args = parser.parse_args(argv)
    uvicorn.run(
        create_relay(args.upstream, args.client),
        host=args.host,
        port=args.port,
        loop="uvloop",
        http=GatewayHttpProtocol,
        log_level="warning",
        access_log=False,
        lifespan="on",
    )


if __name__ == "__main__":
    main()
