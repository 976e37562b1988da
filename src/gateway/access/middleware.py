"""Authentication: every route but the health and metrics probes needs a gateway key.

Pure ASGI, so a refused request costs no body read, no routing and no exception. The key comes
as ``Authorization: Bearer <key>`` (what the OpenAI SDKs send) or ``x-api-key: <key>``. The
principal lands in ``request.state.principal`` for the routes (policy, limits, agent ids).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.access.keys import Principal
from gateway.access.notices import is_loopback
from gateway.access.policy import admin_required
from gateway.errors import GatewayError

if TYPE_CHECKING:
    from gateway.config.store import RuntimeStore

#: Probes answer without a key: load balancers and scrapers do not hold one.
PUBLIC_PATHS: Final = frozenset({"/healthz", "/livez", "/readyz", "/metrics"})


def presented_key(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The key from ``Authorization: Bearer`` or ``x-api-key``; ``None`` when neither is usable."""
    api_key: bytes | None = None
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.partition(b" ")
            if scheme.lower() == b"bearer" and token.strip():
                return token.strip().decode("latin-1")
        elif name == b"x-api-key" and value.strip():
            api_key = value.strip()
    return None if api_key is None else api_key.decode("latin-1")


def unauthorized(message: str) -> GatewayError:
    return GatewayError(
        401,
        message,
        type="invalid_request_error",
        code="invalid_api_key",
        headers={"www-authenticate": 'Bearer realm="gateway"'},
    )


MISSING: Final = (
    "You didn't provide an API key. Send your gateway key in an Authorization header using "
    "Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
)
INCORRECT: Final = "Incorrect API key provided."


class AccessMiddleware:
    def __init__(self, app: ASGIApp, store: RuntimeStore) -> None:
        self.app = app
        self.store = store

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in PUBLIC_PATHS:
            await self.app(scope, receive, send)
            return
        access = self.store.current.access
        state = scope.setdefault("state", {})
        if access.open:
            principal = access.anonymous
        else:
            token = presented_key(scope["headers"])
            found = access.authenticate(token) if token is not None else None
            if found is None:
                await _reply(unauthorized(MISSING if token is None else INCORRECT), send)
                return
            principal = found
        if is_admin_path(scope["path"]) and not _may_administer(principal, access.open, scope):
            await _reply(admin_required(principal, open_gateway=access.open), send)
            return
        state["principal"] = principal
        await self.app(scope, receive, send)


def is_admin_path(path: str) -> bool:
    """Every route under ``/admin/`` needs an admin key, whoever adds it."""
    return path == "/admin" or path.startswith("/admin/")


def _may_administer(principal: Principal, open_gateway: bool, scope: Scope) -> bool:
    if principal.admin:
        return True
    client = scope.get("client")
    return open_gateway and client is not None and is_loopback(str(client[0]))


async def _reply(error: GatewayError, send: Send) -> None:
    body = orjson.dumps(error.body())
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(name.encode(), value.encode()) for name, value in error.headers.items()]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
