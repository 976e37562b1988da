"""The ``agents:`` section of ``gateway.yaml``: the bus backend and the declared channels.

The JSON Schema validates the shape upstream; ``AgentsConfig.from_dict`` still checks the
cross-references a schema cannot (names usable as ids, no channel named like an agent) so a
config that would make routing ambiguous is rejected at load time, never at request time.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

DEFAULT_BACKEND = "memory"
DEFAULT_MAX_MESSAGE_BYTES = 65_536
DEFAULT_MAX_MESSAGES = 10_000
DEFAULT_MAX_AGE_SECONDS = 7 * 24 * 3600.0

# Agent ids and channel names end up in URLs and Redis key names: no ':' or '/' or spaces.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}")


def is_valid_name(name: str) -> bool:
    """True for a usable agent id or channel name (see ``NAME_PATTERN``)."""
    return NAME_PATTERN.fullmatch(name) is not None


@dataclass(frozen=True, slots=True)
class Retention:
    """How long an inbox keeps a message: at most ``max_messages`` per inbox and source,
    none older than ``max_age_seconds``."""

    max_messages: int = DEFAULT_MAX_MESSAGES
    max_age_seconds: float = DEFAULT_MAX_AGE_SECONDS


DEFAULT_RETENTION = Retention()


@dataclass(frozen=True, slots=True)
class ChannelConfig:
    name: str
    members: tuple[str, ...]
    max_messages: int = DEFAULT_MAX_MESSAGES
    max_age_seconds: float = DEFAULT_MAX_AGE_SECONDS

    @property
    def retention(self) -> Retention:
        return Retention(self.max_messages, self.max_age_seconds)


@dataclass(frozen=True)
class AgentsConfig:
    backend: str = DEFAULT_BACKEND
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    channels: Mapping[str, ChannelConfig] = field(default_factory=lambda: MappingProxyType({}))
    # Every agent id that is a member of at least one channel; computed, not configured.
    agent_ids: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        ids = frozenset(member for channel in self.channels.values() for member in channel.members)
        object.__setattr__(self, "agent_ids", ids)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> AgentsConfig:
        """Build from the parsed ``agents:`` mapping (``None`` when the section is absent).

        Raises ``ValueError`` naming the offending key for anything the bus cannot route.
        """
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise ValueError("agents: must be a mapping")
        backend = data.get("backend", DEFAULT_BACKEND)
        if not isinstance(backend, str) or not _is_backend_url(backend):
            raise ValueError(
                f"agents.backend: expected 'memory' or a redis:// URL, got {backend!r}"
            )
        max_bytes = _positive_int(
            data.get("max_message_bytes", DEFAULT_MAX_MESSAGE_BYTES), "agents.max_message_bytes"
        )
        raw_channels = data.get("channels") or {}
        if not isinstance(raw_channels, Mapping):
            raise ValueError("agents.channels: must be a mapping of channel name to channel")
        channels = {
            str(name): _channel_from_dict(str(name), body) for name, body in raw_channels.items()
        }
        config = cls(backend, max_bytes, MappingProxyType(channels))
        clashes = sorted(config.agent_ids.intersection(channels))
        if clashes:
            raise ValueError(
                f"agents.channels.{clashes[0]}: a channel may not share its name with an agent id"
            )
        return config

    def retention_for(self, channel: str | None) -> Retention:
        """The retention of a channel's messages; direct messages (and messages of a channel
        that was removed from the config) keep the defaults."""
        if channel is not None and channel in self.channels:
            return self.channels[channel].retention
        return DEFAULT_RETENTION


def _channel_from_dict(name: str, body: Any) -> ChannelConfig:
    where = f"agents.channels.{name}"
    if not is_valid_name(name):
        raise ValueError(f"{where}: channel names must match {NAME_PATTERN.pattern}")
    if body is None:
        body = {}
    if not isinstance(body, Mapping):
        raise ValueError(f"{where}: must be a mapping")
    members = body.get("members") or []
    if not isinstance(members, list | tuple) or not all(isinstance(m, str) for m in members):
        raise ValueError(f"{where}.members: must be a list of agent ids")
    for member in members:
        if not is_valid_name(member):
            raise ValueError(f"{where}.members: {member!r} must match {NAME_PATTERN.pattern}")
    retention = body.get("retention") or {}
    if not isinstance(retention, Mapping):
        raise ValueError(f"{where}.retention: must be a mapping")
    max_messages = _positive_int(
        retention.get("max_messages", DEFAULT_MAX_MESSAGES), f"{where}.retention.max_messages"
    )
    max_age = retention.get("max_age_seconds", DEFAULT_MAX_AGE_SECONDS)
    if isinstance(max_age, bool) or not isinstance(max_age, int | float) or not max_age > 0:
        raise ValueError(f"{where}.retention.max_age_seconds: must be a positive number")
    return ChannelConfig(name, tuple(dict.fromkeys(members)), max_messages, float(max_age))


def _positive_int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{where}: must be a positive integer")
    return value


def _is_backend_url(backend: str) -> bool:
    return backend == "memory" or backend.startswith(("redis://", "rediss://", "unix://"))
