"""The ``agents:`` section: defaults, the documented shape, and what a load refuses."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from gateway.agents.config import (
    DEFAULT_RETENTION,
    AgentsConfig,
    ChannelConfig,
    Retention,
)


def test_an_absent_section_means_memory_backend_and_no_channels() -> None:
    config = AgentsConfig.from_dict(None)

    assert config.backend == "memory"
    assert config.max_message_bytes == 65536
    assert dict(config.channels) == {}
    assert config.agent_ids == frozenset()
    assert config.retention_for(None) == Retention(10_000, 7 * 24 * 3600)


def test_the_documented_shape_is_read_whole() -> None:
    config = AgentsConfig.from_dict(
        {
            "backend": "redis://127.0.0.1:6379/0",
            "max_message_bytes": 1024,
            "channels": {
                "review": {
                    "members": ["planner", "coder", "reviewer"],
                    "retention": {"max_messages": 1000, "max_age_seconds": 86400},
                },
                "ops": {"members": ["planner"]},
            },
        }
    )

    assert config.backend == "redis://127.0.0.1:6379/0"
    assert config.max_message_bytes == 1024
    assert config.channels["review"] == ChannelConfig(
        "review", ("planner", "coder", "reviewer"), 1000, 86400.0
    )
    assert config.channels["ops"].retention == DEFAULT_RETENTION
    assert config.agent_ids == {"planner", "coder", "reviewer"}


def test_retention_for_a_channel_direct_messages_and_a_removed_channel() -> None:
    config = AgentsConfig.from_dict(
        {"channels": {"tiny": {"members": ["a"], "retention": {"max_messages": 2}}}}
    )

    assert config.retention_for("tiny") == Retention(2, DEFAULT_RETENTION.max_age_seconds)
    assert config.retention_for(None) == DEFAULT_RETENTION
    assert config.retention_for("gone") == DEFAULT_RETENTION


def test_duplicate_members_are_kept_once_in_order() -> None:
    config = AgentsConfig.from_dict({"channels": {"c": {"members": ["b", "a", "b"]}}})

    assert config.channels["c"].members == ("b", "a")


def test_the_config_is_immutable() -> None:
    config = AgentsConfig.from_dict({"channels": {"c": {"members": ["a"]}}})

    with pytest.raises(dataclasses.FrozenInstanceError):
        config.backend = "redis://x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.channels["d"] = config.channels["c"]  # type: ignore[index]


@pytest.mark.parametrize(
    ("data", "where"),
    [
        ({"backend": "postgres://db"}, "agents.backend"),
        ({"max_message_bytes": 0}, "agents.max_message_bytes"),
        ({"max_message_bytes": True}, "agents.max_message_bytes"),
        ({"channels": ["review"]}, "agents.channels"),
        ({"channels": {"bad name": {"members": []}}}, "agents.channels.bad name"),
        ({"channels": {"c": {"members": "planner"}}}, "agents.channels.c.members"),
        ({"channels": {"c": {"members": ["a:b"]}}}, "agents.channels.c.members"),
        (
            {"channels": {"c": {"members": ["a"], "retention": {"max_messages": 0}}}},
            "agents.channels.c.retention.max_messages",
        ),
        (
            {"channels": {"c": {"members": ["a"], "retention": {"max_age_seconds": -1}}}},
            "agents.channels.c.retention.max_age_seconds",
        ),
        (
            {"channels": {"c": {"members": ["a", "d"]}, "d": {"members": ["a"]}}},
            "agents.channels.d",
        ),
    ],
)
def test_a_config_the_bus_cannot_route_is_refused_naming_the_key(
    data: dict[str, Any], where: str
) -> None:
    with pytest.raises(ValueError, match=f"^{where}:"):
        AgentsConfig.from_dict(data)
