"""Authentication schemes: the only provider-specific knowledge that lives in Python.

Each scheme places the provider key on the upstream request: a bearer token, a named header, or
a query parameter. Which scheme a provider uses is data in its preset.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from gateway.errors import GatewayError

Scheme = Literal["bearer", "header", "query", "none"]


class Secret:
    """A string that never shows itself in ``repr``/``str``, logs or tracebacks."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "Secret('***')"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class Auth:
    scheme: Scheme
    name: str  # header or query parameter name
    prefix: str  # e.g. "Bearer " for the bearer scheme
    key: Secret | None
    missing_variable: str | None  # the env variable to set when ``key`` is None
    provider: str
    extra: tuple[Secret, ...] = ()  # other secrets the provider's entry holds (header values)

    def apply(self, headers: dict[str, str], query: dict[str, str]) -> None:
        if self.scheme == "none":
            return
        if self.key is None:
            variable = (
                f" Set {self.missing_variable} in the environment or .env."
                if self.missing_variable
                else ""
            )
            raise GatewayError(
                503,
                f"Provider '{self.provider}' has no API key configured.{variable}",
                type="server_error",
                code="provider_not_configured",
            )
        value = self.key.reveal()
        if self.scheme == "bearer":
            headers[self.name or "Authorization"] = f"{self.prefix or 'Bearer '}{value}"
        elif self.scheme == "header":
            headers[self.name] = f"{self.prefix}{value}"
        elif self.scheme == "query":
            query[self.name] = value

    def secret_values(self) -> tuple[str, ...]:
        """Every secret an upstream might echo back, for redaction."""
        key = (self.key.reveal(),) if self.key is not None else ()
        return key + tuple(secret.reveal() for secret in self.extra)
