"""Validation of agent-bus requests, and the routing policy of a message.

Everything a client can get wrong is answered here with an OpenAI-shaped ``GatewayError``:
400 for a malformed request, 404 for an unknown channel or recipient, 403 for a sender that
may not post there. The routing policy reads the current config snapshot, so a hot reload
changes who receives the *next* message, never what was already accepted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.agents.bus import MAX_WAIT_SECONDS
from gateway.agents.config import AgentsConfig, Retention, is_valid_name
from gateway.agents.messages import MESSAGE_KINDS, OutgoingMessage, Position
from gateway.errors import GatewayError, invalid_request

MESSAGE_FIELDS = frozenset(
    {"sender", "recipient", "channel", "content", "kind", "thread_id", "reply_to", "metadata"}
)
MAX_REFERENCE_LENGTH = 256
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
DEFAULT_STREAM_SECONDS = 300.0
MAX_STREAM_SECONDS = 3600.0


@dataclass(frozen=True, slots=True)
class Delivery:
    """A message and the inboxes it goes to."""

    message: OutgoingMessage
    recipients: tuple[str, ...]
    retention: Retention


def parse_message(body: bytes) -> dict[str, Any]:
    """The fields of a ``POST /v1/agents/messages`` body, type-checked."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise invalid_request("The request body is not valid JSON.", code="invalid_json") from None
    if not isinstance(data, dict):
        raise invalid_request("The request body must be a JSON object.", code="invalid_type")
    for key in data:
        if key not in MESSAGE_FIELDS:
            raise invalid_request(
                f"Unknown parameter: '{key}'.", param=key, code="unknown_parameter"
            )
    fields = dict(data)
    fields["sender"] = _agent_id(data.get("sender"), "sender")
    for name in ("recipient", "channel"):
        if data.get(name) is not None:
            fields[name] = _agent_id(data[name], name)
    if "content" not in data or data["content"] is None:
        raise _missing("content")
    if not isinstance(data["content"], str | dict):
        raise invalid_request(
            "'content' must be a string or a JSON object.", param="content", code="invalid_type"
        )
    kind = data.get("kind", "message")
    if kind not in MESSAGE_KINDS:
        raise invalid_request(
            "'kind' must be 'message' or 'handoff'.", param="kind", code="invalid_value"
        )
    for name in ("thread_id", "reply_to"):
        value = data.get(name)
        if value is not None and (not isinstance(value, str) or len(value) > MAX_REFERENCE_LENGTH):
            raise invalid_request(
                f"'{name}' must be a string of at most {MAX_REFERENCE_LENGTH} characters.",
                param=name,
                code="invalid_type",
            )
    metadata = data.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise invalid_request(
            "'metadata' must be a JSON object.", param="metadata", code="invalid_type"
        )
    return fields


def plan_delivery(fields: dict[str, Any], config: AgentsConfig) -> Delivery:
    """Resolve the recipient against the current config.

    ``channel: NAME`` must name a channel. ``recipient: NAME`` names a channel or a declared
    agent (one that is a member of some channel); the config forbids a name that is both.
    A channel message goes to every current member except the sender, who must be a member.
    """
    sender: str = fields["sender"]
    channel_name: str | None = fields.get("channel")
    recipient: str | None = fields.get("recipient")
    if channel_name is not None and recipient is not None and channel_name != recipient:
        raise invalid_request(
            "Give either 'recipient' or 'channel', not both.", param="channel", code="invalid_value"
        )
    if channel_name is not None:
        recipients, retention = _channel_recipients(sender, channel_name, "channel", config)
    elif recipient is None:
        raise _missing("recipient")
    elif recipient in config.channels:
        channel_name = recipient
        recipients, retention = _channel_recipients(sender, channel_name, "recipient", config)
    else:
        recipients, retention = _direct_recipients(sender, recipient, config)

    message = OutgoingMessage(
        sender=sender,
        recipient=channel_name or recipients[0],
        channel=channel_name,
        content=fields["content"],
        kind=fields.get("kind", "message"),
        thread_id=fields.get("thread_id"),
        reply_to=fields.get("reply_to"),
        metadata=fields.get("metadata") or {},
    )
    return Delivery(message, recipients, retention)


def _channel_recipients(
    sender: str, name: str, param: str, config: AgentsConfig
) -> tuple[tuple[str, ...], Retention]:
    channel = config.channels.get(name)
    if channel is None:
        raise GatewayError(
            404, f"Channel '{name}' does not exist.", param=param, code="channel_not_found"
        )
    if sender not in channel.members:
        raise _not_a_member(f"Agent '{sender}' is not a member of channel '{name}'.")
    recipients = tuple(member for member in channel.members if member != sender)
    return recipients, channel.retention


def _direct_recipients(
    sender: str, recipient: str, config: AgentsConfig
) -> tuple[tuple[str, ...], Retention]:
    if recipient not in config.agent_ids:
        raise GatewayError(
            404,
            f"No channel or agent named '{recipient}'.",
            param="recipient",
            code="recipient_not_found",
        )
    if sender not in config.agent_ids:
        raise _not_a_member(f"Agent '{sender}' is not a member of any channel.")
    return (recipient,), config.retention_for(None)


def _not_a_member(message: str) -> GatewayError:
    return GatewayError(403, message, type="permission_error", param="sender", code="not_a_member")


def parse_agent_id(value: str) -> str:
    return _agent_id(value, "agent_id")


def parse_after(value: str | None) -> Position | None:
    if value is None or value == "":
        return None
    try:
        return Position.from_message_id(value)
    except ValueError:
        raise invalid_request(
            "'after' must be a message id returned by this gateway.",
            param="after",
            code="invalid_cursor",
        ) from None


def parse_limit(value: str | None) -> int:
    if value is None:
        return DEFAULT_LIMIT
    try:
        limit = int(value)
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_LIMIT:
        raise invalid_request(
            f"'limit' must be an integer from 1 to {MAX_LIMIT}.",
            param="limit",
            code="invalid_value",
        )
    return limit


def parse_wait(value: str | None) -> float:
    """Seconds to long-poll; values above the cap are clamped, not refused."""
    return min(_seconds(value, "wait", default=0.0, allow_zero=True), MAX_WAIT_SECONDS)


def parse_stream_timeout(value: str | None) -> float:
    """How long an SSE stream stays open before the server ends it (the client reconnects)."""
    seconds = _seconds(value, "timeout", default=DEFAULT_STREAM_SECONDS, allow_zero=False)
    return min(seconds, MAX_STREAM_SECONDS)


def _seconds(value: str | None, param: str, *, default: float, allow_zero: bool) -> float:
    if value is None or value == "":
        return default
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if math.isnan(seconds) or seconds < 0 or (seconds == 0 and not allow_zero):
        sign = "non-negative" if allow_zero else "positive"
        raise invalid_request(
            f"'{param}' must be a {sign} number of seconds.",
            param=param,
            code="invalid_value",
        )
    return seconds


def _agent_id(value: Any, param: str) -> str:
    if value is None:
        raise _missing(param)
    if not isinstance(value, str) or not is_valid_name(value):
        raise invalid_request(
            f"'{param}' must be an agent id or channel name: letters, digits, '_', '.', '-', "
            "at most 128 characters.",
            param=param,
            code="invalid_value",
        )
    return value


def _missing(param: str) -> GatewayError:
    return invalid_request(
        f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter"
    )
