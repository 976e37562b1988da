"""Model names resolve to a provider and an upstream model, or a 404 that lists what exists."""

from __future__ import annotations

import pytest

from gateway.errors import GatewayError
from gateway.routing import Route, Router, Target

ROUTER = Router(
    providers={"echo": "echo", "claude": None, "local": None},
    aliases={"fast": Route("fast", "fast", (Target("claude", "claude-haiku"),))},
    default_provider="echo",
)


def test_provider_prefix_selects_the_provider() -> None:
    route = ROUTER.resolve("claude:claude-sonnet-4-5")
    assert route.targets == (Target("claude", "claude-sonnet-4-5"),)


def test_model_after_the_prefix_may_contain_colons() -> None:
    assert ROUTER.resolve("local:llama3:8b").targets == (Target("local", "llama3:8b"),)


def test_alias() -> None:
    assert ROUTER.resolve("fast").targets == (Target("claude", "claude-haiku"),)


def test_bare_provider_name_uses_its_default_model() -> None:
    assert ROUTER.resolve("echo").targets == (Target("echo", "echo"),)


def test_anything_else_goes_to_the_default_provider_as_given() -> None:
    assert ROUTER.resolve("gpt-5-nano").targets == (Target("echo", "gpt-5-nano"),)


def test_unknown_prefix_is_a_404_naming_what_exists() -> None:
    with pytest.raises(GatewayError) as caught:
        ROUTER.resolve("opnai:gpt-5")
    error = caught.value
    assert error.status == 404
    assert error.param == "model"
    assert error.code == "model_not_found"
    assert "'opnai'" in error.message
    assert "claude, echo, local" in error.message
    assert "fast" in error.message


def test_without_default_provider_unknown_models_are_404() -> None:
    router = Router(providers={"echo": "echo"}, aliases={}, default_provider=None)
    with pytest.raises(GatewayError, match="'gpt-5' does not exist"):
        router.resolve("gpt-5")


def test_a_name_resolves_to_the_same_route_each_time() -> None:
    router = Router(providers={"echo": "echo"}, aliases={}, default_provider="echo")
    first = router.resolve("echo:m")
    assert router.resolve("echo:m") is first
    assert first.plan() is not router.resolve("echo:m").plan()  # each request its own plan


def test_names_from_clients_are_remembered_only_up_to_a_bound() -> None:
    router = Router(providers={"echo": "echo"}, aliases={}, default_provider="echo", kept=3)
    for number in range(10):
        assert router.resolve(f"made-up-{number}").targets == (Target("echo", f"made-up-{number}"),)
    assert len(router._resolved) == 3
    assert router.resolve("made-up-9") == router.resolve("made-up-9")  # still resolved, anew


def test_a_refused_name_is_refused_every_time() -> None:
    router = Router(providers={"echo": "echo"}, aliases={}, default_provider=None)
    for _ in range(2):
        with pytest.raises(GatewayError, match="does not exist"):
            router.resolve("gpt-5")
