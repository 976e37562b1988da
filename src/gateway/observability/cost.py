"""What a request cost, from its real usage and the ``prices:`` table (USD per million tokens).

A price is looked up by the most specific name first: the alias the client used, then
``provider:model``, then the bare upstream model name. Canonical usage counts cached reads and
cache writes inside ``input_tokens`` (as the Responses API does), so those tokens are taken out
of the plain input count and billed at their own rates.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

PER_TOKENS = 1_000_000


@dataclass(frozen=True, slots=True)
class Price:
    """USD per million tokens. Cached reads and cache writes default to the input price."""

    input: float
    output: float
    cached_input: float | None = None
    cache_write: float | None = None

    def cost(
        self,
        input_tokens: int,
        output_tokens: int,
        cached_tokens: int = 0,
        cache_write_tokens: int = 0,
    ) -> float:
        cached = min(max(cached_tokens, 0), max(input_tokens, 0))
        written = min(max(cache_write_tokens, 0), max(input_tokens - cached, 0))
        plain = max(input_tokens - cached - written, 0)
        cached_price = self.input if self.cached_input is None else self.cached_input
        write_price = self.input if self.cache_write is None else self.cache_write
        total = (
            plain * self.input
            + cached * cached_price
            + written * write_price
            + max(output_tokens, 0) * self.output
        )
        return total / PER_TOKENS


@dataclass(frozen=True)
class PriceTable:
    prices: Mapping[str, Price] = field(default_factory=lambda: MappingProxyType({}))

    @classmethod
    def from_config(cls, section: Mapping[str, Any]) -> PriceTable:
        return cls(
            MappingProxyType(
                {
                    str(name): Price(
                        input=float(entry.get("input", 0.0)),
                        output=float(entry.get("output", 0.0)),
                        cached_input=_optional(entry.get("cached_input")),
                        cache_write=_optional(entry.get("cache_write")),
                    )
                    for name, entry in section.items()
                }
            )
        )

    def __bool__(self) -> bool:
        return bool(self.prices)

    def lookup(self, alias: str | None, provider: str | None, model: str | None) -> Price | None:
        prices = self.prices
        if alias is not None and alias in prices:
            return prices[alias]
        if provider is not None and model is not None:
            qualified = prices.get(f"{provider}:{model}")
            if qualified is not None:
                return qualified
        return prices.get(model) if model is not None else None


def _optional(value: Any) -> float | None:
    return None if value is None else float(value)
