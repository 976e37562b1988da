"""Pooled upstream clients: one per provider connection settings.

``http1.ConnectionPool`` sends to http(s) upstreams; ``InProcessClient`` serves ``builtin://NAME``
base URLs from the ASGI apps in ``providers.builtin``. Both answer the same way, described by
``UpstreamClient`` and ``UpstreamResponse``, so nothing above this seam knows which is which.

Clients are keyed by the adapter's ``pool_key`` (base URL, timeouts, pool limits), so a reload
that leaves a provider's connection settings unchanged keeps its warm connections.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from gateway.providers.adapter import ProviderAdapter
from gateway.providers.builtin import BUILTIN_UPSTREAMS
from gateway.providers.http1 import ConnectionPool, Timeouts
from gateway.providers.inprocess import InProcessClient

#: Connections per provider; more requests than this wait for one (the pool timeout).
MAX_CONNECTIONS = 1000
KEEPALIVE_SECONDS = 30.0


class UpstreamResponse(Protocol):
    """An upstream answer whose head has arrived; its body is read once, then closed."""

    @property
    def status(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    @property
    def waited(self) -> float: ...  # seconds blocked on the upstream (head and body reads)

    async def read(self) -> bytes: ...

    async def read_some(self) -> bytes: ...  # the next piece of the body; b"" at its end

    async def aclose(self) -> None: ...


class UpstreamClient(Protocol):
    @property
    def in_flight(self) -> int: ...  # requests sent whose response is not yet closed

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        body: bytes | None = None,
        timeouts: Timeouts = ...,
    ) -> UpstreamResponse: ...

    async def aclose(self) -> None: ...


class TransportPool:
    def __init__(self) -> None:
        self._clients: dict[str, UpstreamClient] = {}

    def client_for(self, adapter: ProviderAdapter) -> UpstreamClient:
        client = self._clients.get(adapter.pool_key)
        if client is None:
            client = self._clients[adapter.pool_key] = self._make_client(adapter)
        return client

    @staticmethod
    def _make_client(adapter: ProviderAdapter) -> UpstreamClient:
        if adapter.base_url.startswith("builtin://"):
            name = adapter.base_url.removeprefix("builtin://").split("/", 1)[0]
            return InProcessClient(BUILTIN_UPSTREAMS[name])
        return ConnectionPool(max_connections=MAX_CONNECTIONS, keepalive_expiry=KEEPALIVE_SECONDS)

    def __contains__(self, pool_key: object) -> bool:
        return pool_key in self._clients

    def idle(self, pool_key: str) -> bool:
        """No request, and no response body, open on the client for ``pool_key``."""
        client = self._clients.get(pool_key)
        return client is None or client.in_flight == 0

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
