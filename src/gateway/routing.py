"""Model names → the provider and upstream model that answer them.

Resolution order: ``provider:model`` when the prefix names a configured provider; else an alias
from ``models:``; else a bare provider name (its ``default_model``); else the default provider
with the model name as given. A ``name:model`` whose prefix is no provider is an error rather
than a silent trip to the default provider, so typos are caught.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from gateway.errors import GatewayError
from gateway.resilience import DEFAULT_FALLBACK_CLASSES, RetryPolicy


@dataclass(frozen=True)
class Target:
    provider: str
    model: str
    params: Mapping[str, Any] = field(default_factory=dict)
    weight: float = 1.0
    on: frozenset[str] = DEFAULT_FALLBACK_CLASSES  # failures of the previous target that lead here


@dataclass(frozen=True)
class Route:
    requested: str
    alias: str | None
    targets: tuple[Target, ...]
    strategy: str = "fallback"  # fallback | weighted
    retry: RetryPolicy | None = None  # the alias's own policy, over the providers'
    # A dict, read-only by convention: read per request, and a dict's get is a C call in the
    # compiled request flow where a read-only mapping's is a Python method call.
    timeouts: dict[str, float] = field(default_factory=dict)

    def plan(self) -> list[Target]:
        """Targets in the order to try: listed order, or a weighted pick first then the rest."""
        if self.strategy != "weighted" or len(self.targets) < 2:
            return list(self.targets)
        weighted = [target for target in self.targets if target.weight > 0]
        if not weighted:
            return list(self.targets)
        first = random.choices(weighted, weights=[target.weight for target in weighted])[0]
        return [first, *(target for target in self.targets if target is not first)]


#: Model names whose routes a router remembers.
RESOLVED_KEPT: Final = 1024

_PREFIX = re.compile(r"^(?P<provider>[A-Za-z][\w.-]*):(?P<model>.+)$")


def parse_target(text: str) -> tuple[str, str] | None:
    """``"local:llama3:8b"`` → ``("local", "llama3:8b")``."""
    match = _PREFIX.match(text)
    return (match.group("provider"), match.group("model")) if match else None


class Router:
    def __init__(
        self,
        providers: Mapping[str, str | None],
        aliases: Mapping[str, Route],
        default_provider: str | None,
        kept: int = RESOLVED_KEPT,
    ) -> None:
        self._providers = providers  # name → default model
        self._aliases = aliases
        self._default = default_provider
        self._resolved: dict[str, Route] = {}
        self._kept = kept

    def resolve(self, model: str) -> Route:
        """The route for a model name; the same name resolves to the same (immutable) route
        for the life of this config, so a bounded number of them are remembered."""
        route = self._resolved.get(model)
        if route is None:
            route = self._resolve(model)
            if len(self._resolved) < self._kept:  # names come from clients: bounded
                self._resolved[model] = route
        return route

    def _resolve(self, model: str) -> Route:
        alias = self._aliases.get(model)
        if alias is not None:
            return alias
        prefixed = parse_target(model)
        if prefixed is not None:
            provider, upstream_model = prefixed
            if provider in self._providers:
                return Route(model, None, (Target(provider, upstream_model),))
            raise self._unknown(model, f"Unknown provider '{provider}' in model '{model}'.")
        if self._providers.get(model):
            return Route(model, None, (Target(model, str(self._providers[model])),))
        if self._default is not None:
            return Route(model, None, (Target(self._default, model),))
        raise self._unknown(model, f"The model '{model}' does not exist.")

    def _unknown(self, model: str, message: str) -> GatewayError:
        providers = ", ".join(sorted(self._providers)) or "none"
        aliases = ", ".join(sorted(self._aliases)) or "none"
        return GatewayError(
            404,
            f"{message} Use 'provider:model' with a configured provider ({providers}) or an alias ({aliases}).",
            param="model",
            code="model_not_found",
        )
