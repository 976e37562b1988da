"""The provider-neutral middle: one request shape in, one event vocabulary out.

Inbound Responses requests are normalized once into a ``CanonicalRequest``; provider templates
read it. Upstream answers (whole bodies and stream chunks) are turned by templates into
``CanonicalEvent`` dicts; the emitter owns every piece of stream state from there on.
Both are plain dicts so templates can read them with no adaptation and the hot path copies
nothing.
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict


class TextPart(TypedDict):
    type: Literal["text"]
    text: str


class ImagePart(TypedDict):
    type: Literal["image"]
    url: str | None  # the https URL, or None for data URLs and file ids
    media_type: str | None  # from a data URL
    data: str | None  # base64 payload from a data URL
    file_id: str | None
    detail: str


class FilePart(TypedDict):
    type: Literal["file"]
    filename: str | None
    url: str | None
    media_type: str | None
    data: str | None
    file_id: str | None


class ToolCallPart(TypedDict):
    type: Literal["tool_call"]
    call_id: str
    name: str
    arguments: str  # JSON text, as the client sent it
    args: Any  # parsed arguments ({} when the text is not JSON)
    id: str | None


class ToolResultPart(TypedDict):
    type: Literal["tool_result"]
    call_id: str
    name: str | None  # looked up from the matching tool call, for providers that key by name
    output: str  # the text of the result
    content: list[dict[str, Any]]  # text/image parts when the client sent a list


class ReasoningPart(TypedDict):
    type: Literal["reasoning"]
    text: str
    summary: list[str]
    encrypted_content: str | None
    id: str | None


class RefusalPart(TypedDict):
    type: Literal["refusal"]
    text: str


Part = TextPart | ImagePart | FilePart | ToolCallPart | ToolResultPart | ReasoningPart | RefusalPart


class Turn(TypedDict):
    role: Literal["user", "assistant"]
    parts: list[dict[str, Any]]


class ToolChoice(TypedDict):
    mode: Literal["auto", "none", "required", "function"]
    name: NotRequired[str]


class OutputFormat(TypedDict):
    type: Literal["text", "json_object", "json_schema"]
    name: NotRequired[str]
    schema: NotRequired[dict[str, Any]]
    strict: NotRequired[bool | None]
    description: NotRequired[str]


class FunctionTool(TypedDict):
    name: str
    description: str | None
    parameters: dict[str, Any]
    strict: bool | None


class CanonicalRequest(TypedDict):
    model: str  # the upstream model name
    requested_model: str  # what the client asked for
    stream: bool
    system: str | None  # instructions + every system/developer message, in order
    system_parts: list[str]
    turns: list[Turn]  # alternating user/assistant turns of typed parts
    tools: list[FunctionTool]
    tool_choice: ToolChoice | None
    parallel_tool_calls: bool | None
    output_format: OutputFormat | None
    reasoning: dict[str, Any] | None  # {"effort", "summary"} as given
    max_output_tokens: int | None
    temperature: float | None
    top_p: float | None
    stop: list[str] | None
    user: str | None
    metadata: dict[str, str] | None
    call_names: dict[str, str]  # call_id → function name
    raw: dict[str, Any]  # the client's body, for pass-through presets


#: Canonical event types the emitter understands. Templates produce dicts with one of these
#: as ``type``; anything else is a config error caught by ``gateway check``.
EVENT_TYPES = frozenset(
    {
        "start",
        "text",
        "refusal",
        "reasoning",
        "tool_call",
        "end",
        "usage",
        "finish",
        "error",
        "done",
    }
)

CanonicalEvent = dict[str, Any]
