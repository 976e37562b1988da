"""Per-key policy: which models and providers a key may use (403 otherwise).

A route is allowed when the name the client asked for (or the alias it resolved to) matches one
of the key's ``models`` patterns, or when every target the route may try (fallbacks included)
matches as ``provider:model``. With ``providers``, every target's provider must be listed, so a
fallback can never carry a request to a provider the key may not reach.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import Scope

from gateway.access.keys import OPEN, Principal
from gateway.errors import GatewayError
from gateway.routing import Route


def principal_of(scope: Scope) -> Principal:
    """The authenticated caller; the open gateway's anonymous principal when none was set."""
    state = scope.get("state")
    principal = state.get("principal") if isinstance(state, dict) else None  # AccessMiddleware
    return principal if isinstance(principal, Principal) else OPEN.anonymous


def may_use(principal: Principal, route: Route) -> bool:
    return _refusal(principal, route) is None


def authorize(principal: Principal, route: Route) -> None:
    """Raise the 403 for a route this principal may not use."""
    refusal = _refusal(principal, route)
    if refusal is not None:
        message, code = refusal
        raise GatewayError(403, message, type="permission_error", param="model", code=code)


def _refusal(principal: Principal, route: Route) -> tuple[str, str] | None:
    if not principal.restricted:
        return None
    if principal.providers is not None:
        for target in route.targets:
            if target.provider not in principal.providers:
                return (
                    f"The API key '{principal.name}' may not use provider '{target.provider}' "
                    f"(model '{route.requested}').",
                    "provider_not_allowed",
                )
    models = principal.models
    if models is None:
        return None
    if models.matches(route.requested) or (route.alias is not None and models.matches(route.alias)):
        return None
    if route.targets and all(models.matches(f"{t.provider}:{t.model}") for t in route.targets):
        return None
    return (
        f"The API key '{principal.name}' may not use model '{route.requested}'.",
        "model_not_allowed",
    )


def require_admin(request: Request, *, open_gateway: bool) -> Principal:
    """An admin key's principal, or a 403. An open gateway lets loopback clients in.

    The access middleware already enforces this for every ``/admin/`` path; a route calls it
    again so that it stays safe wherever it is mounted.
    """
    from gateway.access.notices import is_loopback

    principal = principal_of(request.scope)
    if principal.admin:
        return principal
    if open_gateway and request.client is not None and is_loopback(request.client.host):
        return principal
    raise admin_required(principal, open_gateway=open_gateway)


def admin_required(principal: Principal, *, open_gateway: bool) -> GatewayError:
    if open_gateway:
        message = (
            "Admin endpoints need an admin key; this gateway has no keys configured, "
            "so only loopback clients may use them."
        )
    else:
        message = f"The API key '{principal.name}' is not an admin key."
    return GatewayError(403, message, type="permission_error", code="admin_required")
