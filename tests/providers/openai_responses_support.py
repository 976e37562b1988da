"""A scripted OpenAI Responses upstream for the ``openai`` preset's tests.

No recorded Responses stream exists among the shared fixtures, so this module writes them the
way the API does (event grammar from shared/reference/provider-formats.md §D and the SDK's
types): ``response.created``, per item ``output_item.added`` → content/argument/summary deltas
→ ``*.done`` → ``output_item.done``, then one terminal event, every event with its
``sequence_number`` and the upstream's own ids (which the gateway must replace with its own).
"""

from __future__ import annotations

from typing import Any

UPSTREAM_MODEL = "gpt-5-2025-08-07"


def message(*chunks: str, refusal: str | None = None) -> dict[str, Any]:
    """A message item; ``chunks`` are the text deltas the stream sends."""
    item: dict[str, Any] = {"type": "message", "role": "assistant", "chunks": list(chunks)}
    if refusal is not None:
        item["refusal"] = refusal
    return item


def function_call(call_id: str, name: str, *chunks: str) -> dict[str, Any]:
    return {"type": "function_call", "call_id": call_id, "name": name, "chunks": list(chunks)}


def reasoning(*summary: str, encrypted: str | None = None) -> dict[str, Any]:
    return {"type": "reasoning", "summary": list(summary), "encrypted": encrypted}


def _final_item(item: dict[str, Any], index: int, status: str) -> dict[str, Any]:
    if item["type"] == "message":
        content: list[dict[str, Any]] = []
        if item["chunks"]:
            content.append(
                {
                    "type": "output_text",
                    "text": "".join(item["chunks"]),
                    "annotations": [],
                    "logprobs": [],
                }
            )
        if item.get("refusal") is not None:
            content.append({"type": "refusal", "refusal": item["refusal"]})
        return {
            "id": f"msg_upstream_{index}",
            "type": "message",
            "status": status,
            "role": "assistant",
            "content": content,
        }
    if item["type"] == "function_call":
        return {
            "id": f"fc_upstream_{index}",
            "type": "function_call",
            "status": "completed",
            "call_id": item["call_id"],
            "name": item["name"],
            "arguments": "".join(item["chunks"]),
        }
    final: dict[str, Any] = {
        "id": f"rs_upstream_{index}",
        "type": "reasoning",
        "summary": [{"type": "summary_text", "text": text} for text in item["summary"]],
    }
    if item["encrypted"] is not None:
        final["encrypted_content"] = item["encrypted"]
    return final


def usage(
    input_tokens: int = 31, output_tokens: int = 12, cached: int = 5, reasoning_tokens: int = 4
) -> dict[str, Any]:
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": cached},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": reasoning_tokens},
        "total_tokens": input_tokens + output_tokens,
    }


def response_object(
    items: list[dict[str, Any]],
    *,
    status: str = "completed",
    incomplete_reason: str | None = None,
    error: dict[str, Any] | None = None,
    with_usage: bool = True,
) -> dict[str, Any]:
    """A whole Response object, as ``POST /v1/responses`` without ``stream`` answers."""
    item_status = "incomplete" if status == "incomplete" else "completed"
    return {
        "id": "resp_upstream_1",
        "object": "response",
        "created_at": 1741290958,
        "status": status,
        "error": error,
        "incomplete_details": {"reason": incomplete_reason} if incomplete_reason else None,
        "model": UPSTREAM_MODEL,
        "output": [_final_item(item, index, item_status) for index, item in enumerate(items)],
        "usage": usage() if with_usage else None,
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "store": True,
    }


def stream_events(
    items: list[dict[str, Any]],
    *,
    terminal: str | None = "response.completed",
    incomplete_reason: str | None = None,
    error: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """The SSE events of one streamed response; ``terminal=None`` leaves the stream unfinished."""
    status = {
        "response.completed": "completed",
        "response.incomplete": "incomplete",
        "response.failed": "failed",
    }.get(terminal or "", "in_progress")
    skeleton = response_object([], status="in_progress", with_usage=False)
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": skeleton},
        {"type": "response.in_progress", "response": skeleton},
    ]
    item_status = "incomplete" if status == "incomplete" else "completed"
    for index, item in enumerate(items):
        final = _final_item(item, index, item_status)
        common = {"item_id": final["id"], "output_index": index}
        if item["type"] == "message":
            added = {**final, "status": "in_progress", "content": []}
        elif item["type"] == "function_call":
            added = {**final, "status": "in_progress", "arguments": ""}
        else:
            added = {**final, "summary": []}
            added.pop("encrypted_content", None)
        events.append({"type": "response.output_item.added", "output_index": index, "item": added})
        if item["type"] == "message":
            for content_index, part in enumerate(final["content"]):
                where = {**common, "content_index": content_index}
                empty = {**part, "text": ""} if part["type"] == "output_text" else {**part}
                if part["type"] == "refusal":
                    empty["refusal"] = ""
                events.append({"type": "response.content_part.added", **where, "part": empty})
                if part["type"] == "output_text":
                    for chunk in item["chunks"]:
                        events.append(
                            {
                                "type": "response.output_text.delta",
                                **where,
                                "delta": chunk,
                                "logprobs": [],
                            }
                        )
                    events.append(
                        {
                            "type": "response.output_text.done",
                            **where,
                            "text": part["text"],
                            "logprobs": [],
                        }
                    )
                else:
                    events.append(
                        {"type": "response.refusal.delta", **where, "delta": part["refusal"]}
                    )
                    events.append(
                        {"type": "response.refusal.done", **where, "refusal": part["refusal"]}
                    )
                events.append({"type": "response.content_part.done", **where, "part": part})
        elif item["type"] == "function_call":
            for chunk in item["chunks"]:
                events.append(
                    {"type": "response.function_call_arguments.delta", **common, "delta": chunk}
                )
            events.append(
                {
                    "type": "response.function_call_arguments.done",
                    **common,
                    "name": final["name"],
                    "arguments": final["arguments"],
                }
            )
        else:
            for summary_index, text in enumerate(item["summary"]):
                where = {**common, "summary_index": summary_index}
                part = {"type": "summary_text", "text": text}
                events.append(
                    {
                        "type": "response.reasoning_summary_part.added",
                        **where,
                        "part": {**part, "text": ""},
                    }
                )
                events.append(
                    {"type": "response.reasoning_summary_text.delta", **where, "delta": text}
                )
                events.append(
                    {"type": "response.reasoning_summary_text.done", **where, "text": text}
                )
                events.append(
                    {"type": "response.reasoning_summary_part.done", **where, "part": part}
                )
        events.append({"type": "response.output_item.done", "output_index": index, "item": final})
    if terminal is not None:
        response = response_object(
            items, status=status, incomplete_reason=incomplete_reason, error=error
        )
        if terminal == "response.failed":
            response["usage"] = None
        events.append({"type": terminal, "response": response})
    for number, event in enumerate(events):
        event["sequence_number"] = number
    return events


def gateway_config(upstream_url: str, **extra: str) -> str:
    """A gateway whose default provider is the ``openai`` preset pointed at ``upstream_url``."""
    lines = "".join(f"    {key}: {value}\n" for key, value in extra.items())
    return (
        "default_provider: openai\n"
        "providers:\n"
        "  openai:\n"
        "    preset: openai\n"
        f"    base_url: {upstream_url}/v1\n"
        "    api_key: sk-openai-test\n"
        "    retry: {attempts: 1}\n"
        "    breaker: {failures: 1000}\n"
        f"{lines}"
    )
