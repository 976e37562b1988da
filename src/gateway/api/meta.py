"""``GET /healthz`` and ``GET /v1/models``: what is running, with no secret in sight."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from gateway.access.policy import may_use, principal_of
from gateway.access.redaction import public_url

if TYPE_CHECKING:
    from gateway.app import GatewayState


def _json(payload: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(payload), status, media_type="application/json")


async def healthz(request: Request) -> Response:
    state: GatewayState = request.app.state.gateway
    runtime = state.store.current
    last_error = state.store.last_error
    providers = {
        name: {
            "base_url": public_url(adapter.base_url),  # no credentials in user info or query
            "status": "no_api_key" if name in runtime.missing_keys else "configured",
            **(
                {"missing_variable": runtime.missing_keys[name]}
                if name in runtime.missing_keys
                else {}
            ),
            **({"breaker": breaker} if (breaker := state.breakers.state(name)) else {}),
        }
        for name, adapter in runtime.providers.items()
    }
    return _json(
        {
            "status": "ok",
            "version": runtime.version,
            "loaded_at": runtime.loaded_at,
            "config": runtime.source,
            "last_error": None
            if last_error is None
            else {"at": last_error.at, "errors": list(last_error.errors)},
            "default_provider": runtime.default_provider,
            "providers": providers,
            "models": sorted(runtime.aliases),
            "reloads": {
                "ok": state.store.reloads_ok,
                "failed": state.store.reloads_failed,
                "watching": state.store.watching,
            },
            "pid": os.getpid(),
        }
    )


async def list_models(request: Request) -> Response:
    state: GatewayState = request.app.state.gateway
    runtime = state.store.current
    created = int(runtime.loaded_at)
    data: list[dict[str, Any]] = []
    seen: set[str] = set()
    for alias in sorted(runtime.aliases):
        data.append({"id": alias, "object": "model", "created": created, "owned_by": "gateway"})
        seen.add(alias)
    for name, adapter in sorted(runtime.providers.items()):
        for model in adapter.models or ((adapter.default_model,) if adapter.default_model else ()):
            model_id = f"{name}:{model}"
            if model_id not in seen:
                seen.add(model_id)
                data.append(
                    {"id": model_id, "object": "model", "created": created, "owned_by": name}
                )
    principal = principal_of(request.scope)
    if principal.restricted:  # a key sees the models it may use
        data = [item for item in data if may_use(principal, runtime.router.resolve(item["id"]))]
    return _json({"object": "list", "data": data})
