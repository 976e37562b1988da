"""Agent message types, and the bus-wide position that orders and addresses them.

Every accepted message gets one ``Position``: ``(ms, sequence)``, where ``sequence`` is a
bus-wide counter and ``ms`` the acceptance time, never smaller than the previous message's.
Positions are strictly increasing in acceptance order and identical in every inbox a message
is delivered to, so the message id (which encodes the position) is also the cursor: "give me
what came after ``amsg_…``" means the same thing in any inbox, on any replica.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

MessageKind = Literal["message", "handoff"]
MESSAGE_KINDS: tuple[MessageKind, ...] = ("message", "handoff")
Content = str | dict[str, Any]

_ID_PREFIX = "amsg_"


@dataclass(frozen=True, slots=True, order=True)
class Position:
    ms: int
    sequence: int

    @property
    def message_id(self) -> str:
        return f"{_ID_PREFIX}{self.ms}_{self.sequence}"

    @property
    def stream_id(self) -> str:
        """The same position as a Redis stream entry id."""
        return f"{self.ms}-{self.sequence}"

    @classmethod
    def from_message_id(cls, message_id: str) -> Position:
        """Parse an id made by ``message_id``; ``ValueError`` for anything else."""
        ms, sep, sequence = message_id.removeprefix(_ID_PREFIX).partition("_")
        if (
            not message_id.startswith(_ID_PREFIX)
            or not sep
            or not ms.isdigit()
            or not sequence.isdigit()
        ):
            raise ValueError(f"not an agent message id: {message_id!r}")
        return cls(int(ms), int(sequence))

    @classmethod
    def from_stream_id(cls, stream_id: str) -> Position:
        ms, _, sequence = stream_id.partition("-")
        return cls(int(ms), int(sequence))


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """A validated message, before the bus accepts it.

    ``recipient`` is the agent id of a direct message, or the channel name of a channel
    message (then ``channel`` is the same name).
    """

    sender: str
    recipient: str
    channel: str | None
    content: Content
    kind: MessageKind = "message"
    thread_id: str | None = None
    reply_to: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_payload(self) -> dict[str, Any]:
        """What the bus stores; id, sequence and time come from the position."""
        return {
            "sender": self.sender,
            "recipient": self.recipient,
            "channel": self.channel,
            "content": self.content,
            "kind": self.kind,
            "thread_id": self.thread_id,
            "reply_to": self.reply_to,
            "metadata": self.metadata,
        }


@dataclass(frozen=True, slots=True)
class StoredMessage:
    position: Position
    message: OutgoingMessage

    @property
    def id(self) -> str:
        return self.position.message_id

    @property
    def sequence(self) -> int:
        return self.position.sequence

    @property
    def created_at(self) -> int:
        return self.position.ms // 1000

    @classmethod
    def from_payload(cls, position: Position, payload: dict[str, Any]) -> StoredMessage:
        kind = payload.get("kind")
        message = OutgoingMessage(
            sender=payload["sender"],
            recipient=payload["recipient"],
            channel=payload.get("channel"),
            content=payload["content"],
            kind="handoff" if kind == "handoff" else "message",
            thread_id=payload.get("thread_id"),
            reply_to=payload.get("reply_to"),
            metadata=payload.get("metadata") or {},
        )
        return cls(position, message)

    def to_dict(self) -> dict[str, Any]:
        """The wire form: an ``agent.message`` object."""
        return {
            "id": self.id,
            "object": "agent.message",
            "created_at": self.created_at,
            "sequence": self.sequence,
            **self.message.to_payload(),
        }


@dataclass(frozen=True, slots=True)
class Page:
    """One page of an inbox.

    ``next_cursor`` is what to pass as ``after`` next time: the last message's id, or the
    ``after`` that was asked for when the page is empty (so a consumer can always keep it).
    """

    messages: tuple[StoredMessage, ...]
    next_cursor: str | None
    has_more: bool

    def to_dict(self) -> dict[str, Any]:
        data = [message.to_dict() for message in self.messages]
        return {
            "object": "list",
            "data": data,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
            "next_cursor": self.next_cursor,
            "has_more": self.has_more,
        }
