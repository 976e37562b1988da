"""Admin endpoints: only an admin key may call them (or loopback, on an open gateway).

``POST /admin/reload`` rebuilds the config now, off the event loop, and answers with the
version that serves; a config with errors keeps the running version and answers 422 with
every issue.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import orjson
from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from gateway.access.policy import require_admin
from gateway.errors import GatewayError

if TYPE_CHECKING:
    from gateway.app import GatewayState

router = APIRouter()


@router.post("/admin/reload")
async def reload_config(request: Request) -> Response:
    state: GatewayState = request.app.state.gateway
    store = state.store
    require_admin(request, open_gateway=store.current.access.open)
    before = store.current.version
    ok = await asyncio.to_thread(store.reload)
    if not ok:
        errors = list(store.last_error.errors) if store.last_error is not None else []
        raise GatewayError(
            422,
            f"The config has {len(errors)} error(s); still serving version {before}: "
            + "; ".join(errors),
            code="config_invalid",
        )
    after = store.current.version
    body = {
        "object": "config.reload",
        "status": "reloaded" if after != before else "unchanged",
        "version": after,
        "previous_version": before,
    }
    return Response(orjson.dumps(body), 200, media_type="application/json")
