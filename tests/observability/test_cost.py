"""Cost arithmetic against a price table (USD per million tokens)."""

from __future__ import annotations

import pytest

from gateway.observability.cost import Price, PriceTable

TABLE = PriceTable.from_config(
    {
        "smart": {"input": 3.0, "cached_input": 0.3, "output": 15.0, "cache_write": 3.75},
        "openai:gpt-4o": {"input": 2.5, "cached_input": 1.25, "output": 10.0},
        "gpt-4o": {"input": 99.0, "output": 99.0},
        "gpt-4o-mini": {"input": 0.15, "output": 0.6},
    }
)


def test_plain_input_and_output() -> None:
    price = TABLE.lookup(None, "openai", "gpt-4o-mini")
    assert price is not None
    # 1000 in at $0.15/M + 500 out at $0.60/M
    assert price.cost(1000, 500) == pytest.approx(0.00015 + 0.0003)


def test_cached_tokens_are_billed_at_the_cached_price() -> None:
    price = TABLE.lookup(None, "openai", "gpt-4o")
    assert price is not None
    # 10_000 input of which 8_000 cached: 2_000 x 2.5 + 8_000 x 1.25, plus 1_000 x 10
    assert price.cost(10_000, 1_000, cached_tokens=8_000) == pytest.approx(
        (2_000 * 2.5 + 8_000 * 1.25 + 1_000 * 10.0) / 1e6
    )


def test_cache_writes_have_their_own_price_and_default_to_input() -> None:
    smart = TABLE.lookup("smart", "claude", "claude-sonnet-4-5")
    assert smart is not None
    cost = smart.cost(1_000_000, 0, cached_tokens=500_000, cache_write_tokens=100_000)
    assert cost == pytest.approx(400_000 * 3.0 / 1e6 + 500_000 * 0.3 / 1e6 + 100_000 * 3.75 / 1e6)
    plain = Price(input=2.0, output=4.0)
    assert plain.cost(1_000_000, 0, cached_tokens=1_000_000) == pytest.approx(2.0)
    assert plain.cost(1_000_000, 0, cache_write_tokens=250_000) == pytest.approx(2.0)


def test_counts_that_do_not_add_up_never_bill_negative_tokens() -> None:
    price = Price(input=1.0, output=1.0, cached_input=0.5)
    assert price.cost(100, 0, cached_tokens=1_000) == pytest.approx(100 * 0.5 / 1e6)
    assert price.cost(-5, -5) == 0.0


def test_lookup_prefers_alias_then_provider_model_then_model() -> None:
    assert TABLE.lookup("smart", "openai", "gpt-4o") is TABLE.prices["smart"]
    assert TABLE.lookup("other", "openai", "gpt-4o") is TABLE.prices["openai:gpt-4o"]
    assert TABLE.lookup(None, "azure", "gpt-4o") is TABLE.prices["gpt-4o"]
    assert TABLE.lookup(None, "azure", "unknown") is None
    assert TABLE.lookup(None, None, None) is None
    assert not PriceTable() and TABLE
