"""Pooled upstream HTTP clients: one ``httpx.AsyncClient`` per provider connection settings,
sending over aiohttp's connection pool (``aiohttp_transport``).

Clients are keyed by the adapter's ``pool_key`` (base URL, timeouts, pool limits), so a reload
that leaves a provider's connection settings unchanged keeps its warm connections.
``builtin://NAME`` base URLs are served in-process by the ASGI apps in ``providers.builtin``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import httpx

from gateway.providers.adapter import ProviderAdapter
from gateway.providers.aiohttp_transport import AiohttpTransport
from gateway.providers.builtin import BUILTIN_UPSTREAMS


class TransportPool:
    def __init__(self, event_hooks: Mapping[str, list[Callable[..., Any]]] | None = None) -> None:
        self._clients: dict[str, httpx.AsyncClient] = {}
        self._event_hooks = dict(event_hooks or {})  # httpx hooks on every client (timing)

    def client_for(self, adapter: ProviderAdapter) -> httpx.AsyncClient:
        client = self._clients.get(adapter.pool_key)
        if client is None:
            client = self._make_client(adapter, self._event_hooks)
            self._clients[adapter.pool_key] = client
        return client

    @staticmethod
    def _make_client(
        adapter: ProviderAdapter, event_hooks: Mapping[str, list[Callable[..., Any]]] | None = None
    ) -> httpx.AsyncClient:
        timeouts = adapter.timeouts
        timeout = httpx.Timeout(
            connect=timeouts.connect, read=timeouts.read, write=timeouts.write, pool=timeouts.pool
        )
        if adapter.base_url.startswith("builtin://"):
            name = adapter.base_url.removeprefix("builtin://").split("/", 1)[0]
            app = BUILTIN_UPSTREAMS[name]
            return httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), timeout=timeout, event_hooks=event_hooks
            )
        return httpx.AsyncClient(
            transport=AiohttpTransport(max_connections=1000, keepalive_expiry=30),
            timeout=timeout,
            follow_redirects=False,
            event_hooks=event_hooks,
        )

    def __contains__(self, pool_key: object) -> bool:
        return pool_key in self._clients

    def idle(self, pool_key: str) -> bool:
        """No request, and no response body, open on the client for ``pool_key``.

        Reads httpx/httpcore pool state (pinned versions); when it cannot tell, it says busy,
        so a caller that closes idle clients never cuts a stream.
        """
        client = self._clients.get(pool_key)
        if client is None:
            return True
        try:
            transports = [client._transport, *client._mounts.values()]
            for transport in transports:
                if isinstance(transport, AiohttpTransport):
                    if transport.in_flight:
                        return False
                    continue
                pool = getattr(transport, "_pool", None)
                if pool is not None and pool._requests:
                    return False
        except AttributeError:
            return False
        return True

    async def retain(self, pool_keys: set[str]) -> None:
        """Close clients no current provider uses (called after a reload's swap)."""
        for key in list(self._clients):
            if key not in pool_keys:
                client = self._clients.pop(key)
                await client.aclose()

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()
