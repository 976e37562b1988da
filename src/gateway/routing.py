"""Model names → the provider and upstream model that answer them.

Resolution order: ``provider:model`` when the prefix names a configured provider; else an alias
from ``models:``; else a bare provider name (its ``default_model``); else the default provider
with the model name as given. A ``name:model`` whose prefix is no provider is an error rather
than a silent trip to the default provider, so typos are caught.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.errors import GatewayError


@dataclass(frozen=True)
class Target:
    provider: str
    model: str
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Route:
    requested: str
    alias: str | None
    targets: tuple[Target, ...]


_PREFIX = re.compile(r"^(?P<provider>[A-Za-z][\w.-]*):(?P<model>.+)$")


def parse_target(text: str) -> tuple[str, str] | None:
    """``"claude:claude-sonnet-4-5"`` → ``("claude", "claude-sonnet-4-5")``."""
    match = _PREFIX.match(text)
    return (match.group("provider"), match.group("model")) if match else None


class Router:
    def __init__(
        self,
        providers: Mapping[str, str | None],
        aliases: Mapping[str, Route],
        default_provider: str | None,
    ) -> None:
        self._providers = providers  # name → default model
        self._aliases = aliases
        self._default = default_provider

    def resolve(self, model: str) -> Route:
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
