"""The one emitter: canonical events in, Responses SSE events and the final Response out.

The emitter owns all stream state: ids, ``output_index``, ``content_index``,
``sequence_number``, text and argument accumulation, open/close bookkeeping, usage merging and
the terminal event. Templates only say *what happened*; this module says it on the wire exactly
as ``shared/reference/responses-api.md`` describes, for every provider alike.

At most one output item is open at a time: a new item closes the previous one, which is the
order every upstream format produces and the order the SDK's stream helper expects.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from gateway.canonical import CanonicalEvent
from gateway.ids import random_hex

ResponsesEvent = dict[str, Any]


@dataclass(frozen=True)
class FinishOutcome:
    """What a provider finish reason means for the Response."""

    status: str = "completed"  # completed | incomplete | failed
    reason: str | None = None  # incomplete_details.reason
    code: str | None = None  # error.code when failed
    message: str | None = None


COMPLETED: Final = FinishOutcome()


def new_id(prefix: str) -> str:
    """``prefix_`` and 48 random hex digits."""
    return f"{prefix}_{random_hex()}"


_ECHOED_DEFAULTS: Final[tuple[tuple[str, Any], ...]] = (
    ("instructions", None),
    ("max_output_tokens", None),
    ("max_tool_calls", None),
    ("parallel_tool_calls", True),
    ("previous_response_id", None),
    ("service_tier", "default"),
    ("store", True),
    ("temperature", 1.0),
    ("tool_choice", "auto"),
    ("tools", []),
    ("top_logprobs", 0),
    ("top_p", 1.0),
    ("truncation", "disabled"),
    ("user", None),
)


#: The Response before the request's fields are echoed, in the wire's key order: copied per
#: response (one C-level copy) rather than rebuilt key by key.
_SKELETON: Final[dict[str, Any]] = {
    "id": "",
    "object": "response",
    "created_at": 0,
    "status": "in_progress",
    "background": False,
    "completed_at": None,
    "error": None,
    "incomplete_details": None,
    **dict(_ECHOED_DEFAULTS),
    "model": "",
    "output": None,
    "reasoning": None,
    "text": None,
    "usage": None,
    "metadata": None,
}
_ECHOED: Final = frozenset(name for name, _ in _ECHOED_DEFAULTS)


def response_skeleton(
    response_id: str, model: str, body: dict[str, Any], created_at: int
) -> dict[str, Any]:
    """The full Response object (§2.1) with the request's echoed fields and empty output."""
    response = _SKELETON.copy()
    response["id"] = response_id
    response["created_at"] = created_at
    for name in _ECHOED.intersection(body):  # usually none: a small request echoes defaults
        value = body[name]
        if value is not None:
            response[name] = value
    response["model"] = model
    response["output"] = []
    reasoning = body.get("reasoning")
    if isinstance(reasoning, dict):
        response["reasoning"] = {
            "effort": reasoning.get("effort"),
            "summary": reasoning.get("summary"),
        }
    else:
        response["reasoning"] = {"effort": None, "summary": None}
    text = body.get("text")
    if isinstance(text, dict):
        response["text"] = {
            "format": text.get("format") or {"type": "text"},
            "verbosity": text.get("verbosity") or "medium",
        }
    else:
        response["text"] = {"format": {"type": "text"}, "verbosity": "medium"}
    response["metadata"] = body.get("metadata") or {}
    return response


_ID_PREFIXES: Final = {"message": "msg", "function_call": "fc", "reasoning": "rs"}


class _Item:
    """One output item being built."""

    __slots__ = (
        "arguments",
        "call_id",
        "encrypted",
        "id",
        "index",
        "key",
        "kind",
        "name",
        "part_type",
        "parts",
        "status",
        "summary",
    )

    def __init__(self, kind: str, index: int, key: Any) -> None:
        self.kind = kind  # message | function_call | reasoning
        self.index = index
        self.key = key
        self.id = new_id(_ID_PREFIXES[kind])
        # message: (type, text pieces) per content part; the pieces are joined when read, so
        # a long answer is not copied again on every delta
        self.parts: list[tuple[str, list[str]]] = []
        self.part_type: str | None = None  # the last part's type: a delta's one check
        self.summary: list[str] = []
        self.encrypted: str | None = None
        self.call_id = ""
        self.name = ""
        self.arguments = ""
        self.status = "completed"  # as closed: the item cut short by a limit is "incomplete"

    def texts(self) -> list[tuple[str, str]]:
        """The message's content parts as ``(type, text)``."""
        return [(kind, "".join(pieces)) for kind, pieces in self.parts]

    def added(self) -> dict[str, Any]:
        """The item as ``output_item.added`` announces it: in progress, nothing in it yet."""
        if self.kind == "reasoning":
            return {"id": self.id, "type": "reasoning", "summary": []}
        return self.as_output("in_progress")

    def as_output(self, status: str) -> dict[str, Any]:
        if self.kind == "message":
            content = [
                {"type": "output_text", "text": "".join(pieces), "annotations": [], "logprobs": []}
                if kind == "output_text"
                else {"type": "refusal", "refusal": "".join(pieces)}
                for kind, pieces in self.parts
            ]
            return {
                "id": self.id,
                "type": "message",
                "status": status,
                "role": "assistant",
                "content": content,
            }
        if self.kind == "function_call":
            return {
                "id": self.id,
                "type": "function_call",
                "status": status,
                "arguments": self.arguments,
                "call_id": self.call_id,
                "name": self.name,
            }
        return {
            "id": self.id,
            "type": "reasoning",
            "summary": [{"type": "summary_text", "text": text} for text in self.summary],
            "status": status,
            "encrypted_content": self.encrypted,
        }


_USAGE_FIELDS: Final = frozenset(
    {
        "input_tokens",
        "output_tokens",
        "cached_tokens",
        "cache_write_tokens",
        "reasoning_tokens",
        "total_tokens",
    }
)


class ResponseEmitter:
    """Turns canonical events into Responses events; ``stream=False`` only accumulates.

    A whole (non-streaming) answer sends no events, so in that mode no event is built at all:
    only the items' state, which the final Response is made of, is kept.
    """

    __slots__ = (
        "_done",
        "_finish",
        "_finish_reasons",
        "_items",
        "_open",
        "_sequence",
        "_started",
        "_stream",
        "_usage",
        "emitted_content",
        "response",
    )

    def __init__(
        self,
        *,
        model: str,
        body: dict[str, Any],
        finish_reasons: Mapping[str, FinishOutcome],
        stream: bool,
        response_id: str | None = None,
    ) -> None:
        self.response = response_skeleton(
            response_id or new_id("resp"), model, body, int(time.time())
        )
        self._finish_reasons = finish_reasons
        self._stream = stream
        self._sequence = 0
        self._items: list[_Item] = []
        self._open: _Item | None = None
        self._usage: dict[str, int] = {}
        self._finish: str | None = None
        self._started = False
        self._done = False
        self.emitted_content = False

    @property
    def done(self) -> bool:
        """A terminal event has been produced; later events are ignored."""
        return self._done

    @property
    def finish_reason(self) -> str | None:
        """The upstream's own finish reason (``stop``, ``end_turn``...), for logs and traces."""
        return self._finish

    # ------------------------------------------------------------------ outward

    def _event(self, out: list[ResponsesEvent], event: ResponsesEvent) -> None:
        """Number and send one event; callers build events only when ``self._stream``."""
        event["sequence_number"] = self._sequence
        self._sequence += 1
        out.append(event)

    def start(self) -> list[ResponsesEvent]:
        """``response.created`` and ``response.in_progress`` (idempotent)."""
        out: list[ResponsesEvent] = []
        if not self._started:
            self._started = True
            if not self._stream:  # a whole answer sends no events: no snapshots to copy
                return out
            self._event(out, {"type": "response.created", "response": self._snapshot()})
            self._event(out, {"type": "response.in_progress", "response": self._snapshot()})
        return out

    def _snapshot(self) -> dict[str, Any]:
        return dict(self.response)

    def feed(self, event: CanonicalEvent) -> list[ResponsesEvent]:
        """Apply one canonical event; return the Responses events it produces."""
        out = self.start() if not self._started else []
        if self._done:
            return out
        if event.get("snapshot"):
            unsent = self._unsent(event)
            if unsent is None:
                return out
            event = unsent
        kind = event.get("type")
        if kind == "text":  # the common case first; usage next (some send it every chunk)
            self._text(out, event, "output_text")
        elif kind == "usage":
            self._merge_usage(event)
        elif kind == "refusal":
            self._text(out, event, "refusal")
        elif kind == "tool_call":
            self._tool_call(out, event)
        elif kind == "reasoning":
            self._reasoning(out, event)
        elif kind == "finish":
            reason = event.get("reason")
            if reason is not None:
                self._finish = str(reason)
        elif kind == "end":
            if self._open is not None and (
                event.get("key") is None or event.get("key") == self._open.key
            ):
                self._close(out, "completed")
        elif kind == "start":
            pass  # the response id and model are the gateway's own; upstream ids are not exposed
        elif kind == "error":
            out.extend(
                self.fail(
                    str(event.get("code") or "server_error"),
                    str(event.get("message") or "Upstream error"),
                )
            )
        elif kind == "done":
            out.extend(self.finish())
        return out

    def _unsent(self, event: CanonicalEvent) -> CanonicalEvent | None:
        """A ``snapshot`` event carries an item's whole content (text, refusal, summary or
        arguments) rather than a delta, for upstreams that repeat the total when an item ends:
        keep only what was not sent yet under its ``key``; nothing for an item already closed
        or whose content went another way."""
        key = event.get("key")
        item = None
        if key is not None:
            item = next((each for each in reversed(self._items) if each.key == key), None)
        if item is None:
            return event  # never seen: the snapshot is all of it
        if item is not self._open:
            return None
        kind = event.get("type")
        field = "arguments" if kind == "tool_call" else "text"
        if kind == "tool_call":
            sent = item.arguments
        elif kind == "reasoning":
            sent = "".join(item.summary)
        else:
            part_type = "output_text" if kind == "text" else "refusal"
            sent = "".join(text for part, text in item.texts() if part == part_type)
        whole = str(event.get(field) or "")
        if not whole.startswith(sent):
            return None
        return {**event, field: whole[len(sent) :]}

    def finish(self) -> list[ResponsesEvent]:
        """The upstream said it is done: close items and send the terminal event."""
        outcome = self._finish_reasons.get(self._finish, COMPLETED) if self._finish else COMPLETED
        if outcome.status == "failed":
            return self.fail(
                outcome.code or "server_error",
                outcome.message or f"Upstream stopped: {self._finish}",
            )
        out = self.start() if not self._started else []
        if self.done:
            return out
        item_status = "completed" if outcome.status == "completed" else "incomplete"
        if self._open is not None:
            self._close(out, item_status)
        self._done = True
        response = self.response
        response["status"] = outcome.status
        response["completed_at"] = int(time.time()) if outcome.status == "completed" else None
        if outcome.status == "incomplete":
            response["incomplete_details"] = {"reason": outcome.reason or "max_output_tokens"}
        response["output"] = [item.as_output(item.status) for item in self._items]
        response["usage"] = self._final_usage()
        if self._stream:
            terminal = (
                "response.completed" if outcome.status == "completed" else "response.incomplete"
            )
            self._event(out, {"type": terminal, "response": response})
        return out

    def end_of_stream(self, *, requires_done: bool) -> list[ResponsesEvent]:
        """The upstream body ended: finish if it said it was finished, else fail."""
        if self.done:
            return []
        if self._finish is not None and not requires_done:
            return self.finish()
        return self.fail(
            "server_error", "The upstream stream ended before the response was finished."
        )

    def fail(self, code: str, message: str) -> list[ResponsesEvent]:
        """``response.failed`` then the ``error`` event (flat and nested, as clients need)."""
        out = self.start() if not self._started else []
        if self.done:
            return out
        self._done = True
        response = self.response
        response["status"] = "failed"
        response["error"] = {"code": code, "message": message}
        response["output"] = [
            item.as_output("incomplete" if item is self._open else "completed")
            for item in self._items
        ]
        response["usage"] = self._final_usage() if self._usage else None
        self._open = None
        if self._stream:
            self._event(out, {"type": "response.failed", "response": response})
            self._event(
                out,
                {
                    "type": "error",
                    "code": code,
                    "message": message,
                    "param": None,
                    "error": {"type": code, "code": code, "message": message, "param": None},
                },
            )
        return out

    # ------------------------------------------------------------------ items

    def _open_item(
        self, out: list[ResponsesEvent], kind: str, key: Any, *, call_id: str = "", name: str = ""
    ) -> _Item:
        """Close the open item, open a new one and announce it (``output_item.added``)."""
        if self._open is not None:
            self._close(out, "completed")
        item = _Item(kind, len(self._items), key)
        item.call_id, item.name = call_id, name
        self._items.append(item)
        self._open = item
        if self._stream:
            self._event(
                out,
                {
                    "type": "response.output_item.added",
                    "output_index": item.index,
                    "item": item.added(),
                },
            )
        return item

    def _continue_or_open(self, out: list[ResponsesEvent], kind: str, key: Any) -> _Item:
        """The open item of ``kind`` when ``key`` does not name another block, else a new one."""
        item = self._open
        if (
            item is not None
            and item.kind == kind
            and (key is None or item.key is None or key == item.key)
        ):
            return item
        return self._open_item(out, kind, key)

    def _text(self, out: list[ResponsesEvent], event: CanonicalEvent, part_type: str) -> None:
        """Append a text or refusal delta; the hot path of a stream, so it builds one event."""
        text = event.get("text")
        if not text:
            return
        if type(text) is not str:
            text = str(text)
        item = self._open
        key = event.get("key")
        if (
            item is None
            or item.kind != "message"
            or (key is not None and item.key is not None and key != item.key)
        ):  # _continue_or_open, inline: this runs once per delta
            item = self._open_item(out, "message", key)
        self.emitted_content = True
        if item.part_type != part_type:
            if item.parts:
                self._close_part(out, item)
            item.parts.append((part_type, []))
            item.part_type = part_type
            if self._stream:
                empty = (
                    {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
                    if part_type == "output_text"
                    else {"type": "refusal", "refusal": ""}
                )
                self._event(
                    out,
                    {
                        "type": "response.content_part.added",
                        "item_id": item.id,
                        "output_index": item.index,
                        "content_index": len(item.parts) - 1,
                        "part": empty,
                    },
                )
        item.parts[-1][1].append(text)
        if not self._stream:
            return
        sequence = self._sequence
        self._sequence = sequence + 1
        if part_type == "output_text":
            out.append(
                {
                    "type": "response.output_text.delta",
                    "item_id": item.id,
                    "output_index": item.index,
                    "content_index": len(item.parts) - 1,
                    "delta": text,
                    "logprobs": [],
                    "sequence_number": sequence,
                }
            )
        else:
            out.append(
                {
                    "type": "response.refusal.delta",
                    "item_id": item.id,
                    "output_index": item.index,
                    "content_index": len(item.parts) - 1,
                    "delta": text,
                    "sequence_number": sequence,
                }
            )

    def _close_part(self, out: list[ResponsesEvent], item: _Item) -> None:
        if not self._stream:
            return  # the part's text stays in item.parts for the final Response
        index = len(item.parts) - 1
        part_type, pieces = item.parts[index]
        text = "".join(pieces)
        common = {"item_id": item.id, "output_index": item.index, "content_index": index}
        if part_type == "output_text":
            self._event(
                out, {"type": "response.output_text.done", **common, "text": text, "logprobs": []}
            )
            part: dict[str, Any] = {
                "type": "output_text",
                "text": text,
                "annotations": [],
                "logprobs": [],
            }
        else:
            self._event(out, {"type": "response.refusal.done", **common, "refusal": text})
            part = {"type": "refusal", "refusal": text}
        self._event(out, {"type": "response.content_part.done", **common, "part": part})

    def _tool_call(self, out: list[ResponsesEvent], event: CanonicalEvent) -> None:
        key = event.get("key")
        item = self._open
        if item is None or item.kind != "function_call" or key is None or key != item.key:
            if event.get("continues"):
                return  # a delta for an upstream block that opened no item (a provider-run tool)
            item = self._open_item(
                out,
                "function_call",
                key,
                call_id=str(event.get("call_id") or new_id("call")),
                name=str(event.get("name") or ""),
            )
            self.emitted_content = True
        elif not item.name and event.get("name"):
            item.name = str(event["name"])
        arguments = event.get("arguments")
        if arguments:
            delta = str(arguments)
            item.arguments += delta
            if self._stream:
                self._event(
                    out,
                    {
                        "type": "response.function_call_arguments.delta",
                        "item_id": item.id,
                        "output_index": item.index,
                        "delta": delta,
                    },
                )
        if key is None:  # a whole call in one event (no key to continue it by)
            self._close(out, "completed")

    def _reasoning(self, out: list[ResponsesEvent], event: CanonicalEvent) -> None:
        item = self._continue_or_open(out, "reasoning", event.get("key"))
        signature = event.get("signature")
        if signature:
            item.encrypted = (item.encrypted or "") + str(signature)
        text = event.get("text")
        if not text:
            return
        first = not item.summary
        if first:
            item.summary.append("")
        item.summary[0] += str(text)
        if not self._stream:
            return
        common = {"item_id": item.id, "output_index": item.index, "summary_index": 0}
        if first:
            self._event(
                out,
                {
                    "type": "response.reasoning_summary_part.added",
                    **common,
                    "part": {"type": "summary_text", "text": ""},
                },
            )
        self._event(
            out, {"type": "response.reasoning_summary_text.delta", **common, "delta": str(text)}
        )

    def _close(self, out: list[ResponsesEvent], status: str) -> None:
        item = self._open
        if item is None:
            return
        self._open = None
        item.status = status
        if item.kind == "function_call" and not item.arguments and status == "completed":
            # A call to a function without parameters may stream no argument text at all.
            item.arguments = "{}"
            if self._stream:
                self._event(
                    out,
                    {
                        "type": "response.function_call_arguments.delta",
                        "item_id": item.id,
                        "output_index": item.index,
                        "delta": "{}",
                    },
                )
        if not self._stream:
            return
        if item.kind == "message":
            if item.parts:
                self._close_part(out, item)
        elif item.kind == "function_call":
            self._event(
                out,
                {
                    "type": "response.function_call_arguments.done",
                    "item_id": item.id,
                    "output_index": item.index,
                    "name": item.name,
                    "arguments": item.arguments,
                },
            )
        elif item.summary:
            common = {"item_id": item.id, "output_index": item.index, "summary_index": 0}
            text = item.summary[0]
            self._event(
                out, {"type": "response.reasoning_summary_text.done", **common, "text": text}
            )
            self._event(
                out,
                {
                    "type": "response.reasoning_summary_part.done",
                    **common,
                    "part": {"type": "summary_text", "text": text},
                },
            )
        self._event(
            out,
            {
                "type": "response.output_item.done",
                "output_index": item.index,
                "item": item.as_output(status),
            },
        )

    # ------------------------------------------------------------------ usage

    def _merge_usage(self, event: CanonicalEvent) -> None:
        usage = self._usage
        for name, value in event.items():  # the event's few fields, not every usage name
            if value is not None and name in _USAGE_FIELDS:
                usage[name] = int(value)

    def _final_usage(self) -> dict[str, Any]:
        usage = self._usage
        input_tokens = usage.get("input_tokens", 0)
        output_tokens = usage.get("output_tokens", 0)
        return {
            "input_tokens": input_tokens,
            "input_tokens_details": {
                "cached_tokens": usage.get("cached_tokens", 0),
                "cache_write_tokens": usage.get("cache_write_tokens", 0),
            },
            "output_tokens": output_tokens,
            "output_tokens_details": {"reasoning_tokens": usage.get("reasoning_tokens", 0)},
            "total_tokens": usage.get("total_tokens", input_tokens + output_tokens),
        }
