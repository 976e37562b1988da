"""Validate a Responses request body and normalize it into the canonical request.

Validation and normalization are one pass: every problem becomes a 400 naming the ``param``
path the SDK user can find in their own call (``input[2].content[0].type``). Shapes the
official SDK and the Agents SDK really send are accepted: string input, easy messages without
``type``, typed parts, replayed output items with ids/status/annotations/logprobs, function
calls and outputs, reasoning items. Unknown top-level fields are ignored, never a 500.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import orjson

from gateway.canonical import CanonicalRequest, FunctionTool, OutputFormat, ToolChoice, Turn
from gateway.errors import GatewayError, invalid_request
from gateway.templating import data_url, fromjson


@dataclass(frozen=True)
class RequestLimits:
    """Bounds on what one request may carry, so a hostile body cannot exhaust the process."""

    max_body_bytes: int = 8 * 1024 * 1024
    max_input_items: int = 2048
    max_depth: int = 64
    max_string_chars: int = 4 * 1024 * 1024


class ResponsesRequest:
    """A validated request: the body and the fields the Response object echoes.

    Built per request: a plain class (README, "The hot path, compiled").
    """

    def __init__(self, body: dict[str, Any], model: str, stream: bool) -> None:
        self.body: Final = body
        self.model: Final = model
        self.stream: Final = stream


_ROLES: Final = frozenset({"user", "assistant", "system", "developer"})
_EFFORTS: Final = frozenset({"none", "minimal", "low", "medium", "high", "xhigh", "max"})
_UNSUPPORTED_ITEMS: Final = frozenset(
    {
        "file_search_call",
        "web_search_call",
        "computer_call",
        "computer_call_output",
        "image_generation_call",
        "code_interpreter_call",
        "local_shell_call",
        "local_shell_call_output",
        "shell_call",
        "shell_call_output",
        "apply_patch_call",
        "apply_patch_call_output",
        "mcp_list_tools",
        "mcp_approval_request",
        "mcp_approval_response",
        "mcp_call",
        "custom_tool_call",
        "custom_tool_call_output",
    }
)


def parse_body(raw: bytes, limits: RequestLimits) -> ResponsesRequest:
    """Bytes → validated request, or a ``GatewayError`` (400/413) that says what is wrong."""
    if len(raw) > limits.max_body_bytes:
        raise GatewayError(
            413,
            f"Request body is {len(raw)} bytes; the limit is {limits.max_body_bytes} bytes.",
            code="request_too_large",
        )
    if not raw or raw.isspace():  # no copy of the body, unlike strip()
        raise invalid_request("Request body is empty; send a JSON object.", code="invalid_json")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise invalid_request(
            f"Request body is not valid JSON: {exc}", code="invalid_json"
        ) from exc
    if not isinstance(body, dict):
        raise invalid_request("Request body must be a JSON object.", code="invalid_json")
    _check_shape(body, limits)
    _apply_shorthands(body)

    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise invalid_request(
            "Missing required parameter: 'model'."
            if model is None
            else "'model' must be a non-empty string.",
            param="model",
            code="missing_required_parameter" if model is None else "invalid_type",
        )
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise invalid_request("'stream' must be a boolean.", param="stream", code="invalid_type")
    if "input" not in body or body["input"] is None:
        raise invalid_request(
            "Missing required parameter: 'input'.", param="input", code="missing_required_parameter"
        )
    user_input = body["input"]
    if isinstance(user_input, str):
        if not user_input:
            raise invalid_request("'input' must not be empty.", param="input", code="empty_input")
    elif isinstance(user_input, list):
        if not user_input:
            raise invalid_request(
                "'input' must not be an empty list.", param="input", code="empty_input"
            )
        if len(user_input) > limits.max_input_items:
            raise invalid_request(
                f"'input' has {len(user_input)} items; the limit is {limits.max_input_items}.",
                param="input",
                code="too_many_items",
            )
    else:
        raise invalid_request(
            "'input' must be a string or a list of items.", param="input", code="invalid_type"
        )
    if body.get("previous_response_id") is not None:
        raise invalid_request(
            "previous_response_id is not supported by this gateway; send the full input history instead.",
            param="previous_response_id",
            code="unsupported_parameter",
        )
    if body.get("conversation") is not None:
        raise invalid_request(
            "conversation is not supported by this gateway; send the full input history instead.",
            param="conversation",
            code="unsupported_parameter",
        )
    if body.get("background"):
        raise invalid_request(
            "background responses are not supported by this gateway.",
            param="background",
            code="unsupported_parameter",
        )
    return ResponsesRequest(body=body, model=model.strip(), stream=bool(stream))


def _check_shape(body: Any, limits: RequestLimits) -> None:
    """Reject deep nesting and huge strings before any recursive work touches the body.

    One level of the tree at a time (the body is parsed JSON: exact dicts, lists and scalars).
    """
    level: list[Any] = [body]
    depth = 0
    while level:
        if depth > limits.max_depth:
            raise invalid_request(
                f"Request JSON is nested deeper than {limits.max_depth} levels.",
                code="nesting_too_deep",
            )
        below: list[Any] = []
        for node in level:
            kind = type(node)
            if kind is dict:
                below.extend(node.values())
            elif kind is list:
                below.extend(node)
            elif kind is str and len(node) > limits.max_string_chars:
                raise invalid_request(
                    f"A string in the request has {len(node)} characters; the limit is {limits.max_string_chars}.",
                    code="string_too_long",
                )
        level = below
        depth += 1


def _apply_shorthands(body: dict[str, Any]) -> None:
    """Accept the seed clients' top-level ``reasoning_effort`` and ``response_format``."""
    if "reasoning_effort" not in body and "response_format" not in body:
        return  # the usual case: dict.pop with a default is a Python method call in mypyc
    effort = body.pop("reasoning_effort", None)
    if effort is not None:
        reasoning = body.get("reasoning")
        if not isinstance(reasoning, dict):
            reasoning = {}
        body["reasoning"] = {**reasoning, "effort": reasoning.get("effort") or effort}
    response_format = body.pop("response_format", None)
    if response_format is not None:
        text = body.get("text")
        if not isinstance(text, dict):
            text = {}
        if isinstance(response_format, dict) and isinstance(
            response_format.get("json_schema"), dict
        ):
            # Chat Completions nests name/schema/strict; Responses keeps them flat.
            response_format = {"type": "json_schema", **response_format["json_schema"]}
        body["text"] = {**text, "format": text.get("format") or response_format}


# --------------------------------------------------------------------------- normalize


def normalize(
    request: ResponsesRequest, upstream_model: str, params: dict[str, Any] | None = None
) -> CanonicalRequest:
    """The canonical request a provider template reads."""
    body = request.body if not params else {**params, **request.body}
    turns, system_parts, call_names = _normalize_input(body["input"])
    instructions = body.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise invalid_request(
            "'instructions' must be a string.", param="instructions", code="invalid_type"
        )
    if instructions:
        system_parts.insert(0, instructions)
    return {
        "model": upstream_model,
        "requested_model": request.model,
        "stream": request.stream,
        "system": "\n\n".join(system_parts) if system_parts else None,
        "system_parts": system_parts,
        "turns": turns,
        "tools": _normalize_tools(body.get("tools")),
        "tool_choice": _normalize_tool_choice(body.get("tool_choice")),
        "parallel_tool_calls": _optional(body, "parallel_tool_calls", bool),
        "output_format": _normalize_format(body.get("text")),
        "reasoning": _normalize_reasoning(body.get("reasoning")),
        "max_output_tokens": _positive_int(body, "max_output_tokens"),
        "temperature": _number(body, "temperature", 0.0, 2.0),
        "top_p": _number(body, "top_p", 0.0, 1.0),
        "stop": _normalize_stop(body.get("stop")),
        "user": _optional(body, "user", str) or _optional(body, "safety_identifier", str),
        "metadata": _normalize_metadata(body.get("metadata")),
        "call_names": call_names,
        "raw": body,
    }


def _optional(body: dict[str, Any], name: str, kind: type) -> Any:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, kind):
        raise invalid_request(
            f"'{name}' must be a {kind.__name__}.", param=name, code="invalid_type"
        )
    return value


def _positive_int(body: dict[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise invalid_request(
            f"'{name}' must be a positive integer.", param=name, code="invalid_value"
        )
    return value


def _number(body: dict[str, Any], name: str, low: float, high: float) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise invalid_request(f"'{name}' must be a number.", param=name, code="invalid_type")
    if not low <= value <= high:
        raise invalid_request(
            f"'{name}' must be between {low:g} and {high:g}.", param=name, code="invalid_value"
        )
    return float(value)


def _normalize_stop(value: Any) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return list(value)
    raise invalid_request(
        "'stop' must be a string or a list of strings.", param="stop", code="invalid_type"
    )


def _normalize_metadata(value: Any) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise invalid_request(
            "'metadata' must be an object of strings.", param="metadata", code="invalid_type"
        )
    if len(value) > 16:
        raise invalid_request(
            "'metadata' may have at most 16 keys.", param="metadata", code="invalid_value"
        )
    return value


def _normalize_reasoning(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise invalid_request(
            "'reasoning' must be an object.", param="reasoning", code="invalid_type"
        )
    effort = value.get("effort")
    if effort is not None and effort not in _EFFORTS:
        raise invalid_request(
            f"'reasoning.effort' must be one of {sorted(_EFFORTS)}; got {effort!r}.",
            param="reasoning.effort",
            code="invalid_value",
        )
    return {"effort": effort, "summary": value.get("summary") or value.get("generate_summary")}


def _normalize_format(text: Any) -> OutputFormat | None:
    if text is None:
        return None
    if not isinstance(text, dict):
        raise invalid_request("'text' must be an object.", param="text", code="invalid_type")
    fmt = text.get("format")
    if fmt is None:
        return None
    if not isinstance(fmt, dict):
        raise invalid_request(
            "'text.format' must be an object.", param="text.format", code="invalid_type"
        )
    kind = fmt.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema":
        schema = fmt.get("schema")
        if not isinstance(schema, dict):
            raise invalid_request(
                "'text.format.schema' must be a JSON Schema object.",
                param="text.format.schema",
                code="invalid_type",
            )
        result: OutputFormat = {
            "type": "json_schema",
            "name": str(fmt.get("name") or "output"),
            "schema": schema,
        }
        result["strict"] = fmt.get("strict")
        if fmt.get("description"):
            result["description"] = str(fmt["description"])
        return result
    raise invalid_request(
        f"'text.format.type' must be one of ['text', 'json_object', 'json_schema']; got {kind!r}.",
        param="text.format.type",
        code="invalid_value",
    )


def _normalize_tools(value: Any) -> list[FunctionTool]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise invalid_request("'tools' must be a list.", param="tools", code="invalid_type")
    tools: list[FunctionTool] = []
    for index, tool in enumerate(value):
        param = f"tools[{index}]"
        if not isinstance(tool, dict):
            raise invalid_request(f"'{param}' must be an object.", param=param, code="invalid_type")
        if tool.get("type") != "function":
            raise invalid_request(
                f"Tool type {tool.get('type')!r} is not supported by this gateway; only 'function' tools are.",
                param=f"{param}.type",
                code="unsupported_value",
            )
        name = tool.get("name")
        if not isinstance(name, str) or not name:
            raise invalid_request(
                f"'{param}.name' must be a non-empty string.", param=f"{param}.name"
            )
        parameters = tool.get("parameters")
        if parameters is not None and not isinstance(parameters, dict):
            raise invalid_request(
                f"'{param}.parameters' must be an object.", param=f"{param}.parameters"
            )
        tools.append(
            {
                "name": name,
                "description": tool.get("description"),
                "parameters": parameters or {"type": "object", "properties": {}},
                "strict": tool.get("strict"),
            }
        )
    return tools


def _normalize_tool_choice(value: Any) -> ToolChoice | None:
    if value is None:
        return None
    if value in ("auto", "none", "required"):
        return {"mode": value}
    if isinstance(value, dict):
        kind = value.get("type")
        if kind == "function" and isinstance(value.get("name"), str):
            return {"mode": "function", "name": value["name"]}
        if kind == "allowed_tools" and value.get("mode") in ("auto", "required"):
            return {"mode": value["mode"]}
        if kind in ("auto", "none", "required"):
            return {"mode": kind}
    raise invalid_request(
        "'tool_choice' must be 'auto', 'none', 'required' or {'type': 'function', 'name': ...}.",
        param="tool_choice",
        code="invalid_value",
    )


# --------------------------------------------------------------------------- input items


def _normalize_input(value: Any) -> tuple[list[Turn], list[str], dict[str, str]]:
    """Input items → alternating turns, hoisted system text, and the call_id → name index."""
    if isinstance(value, str):  # the common case: one user turn, no closure to make
        return [{"role": "user", "parts": [{"type": "text", "text": value}]}], [], {}
    turns: list[Turn] = []
    system_parts: list[str] = []
    call_names: dict[str, str] = {}

    def add(role: str, parts: list[dict[str, Any]]) -> None:
        if not parts:
            return
        if turns and turns[-1]["role"] == role:
            turns[-1]["parts"].extend(parts)
        else:
            turns.append({"role": role, "parts": parts})  # type: ignore[typeddict-item]

    for index, item in enumerate(value):
        param = f"input[{index}]"
        if not isinstance(item, dict):
            raise invalid_request(f"'{param}' must be an object.", param=param, code="invalid_type")
        kind = item.get("type", "message" if "role" in item else None)
        if kind == "message":
            role = item.get("role")
            if role not in _ROLES:
                raise invalid_request(
                    f"'{param}.role' must be one of ['assistant', 'developer', 'system', 'user']; got {role!r}.",
                    param=f"{param}.role",
                    code="invalid_value",
                )
            parts = _message_parts(item.get("content"), f"{param}.content")
            if role in ("system", "developer"):
                text = "".join(part["text"] for part in parts if part["type"] == "text")
                if text:
                    system_parts.append(text)
            else:
                add(role, parts)
        elif kind == "function_call":
            call_id = _required_str(item, "call_id", param)
            name = _required_str(item, "name", param)
            arguments = item.get("arguments") or "{}"
            if not isinstance(arguments, str):
                raise invalid_request(
                    f"'{param}.arguments' must be a JSON string.", param=f"{param}.arguments"
                )
            call_names[call_id] = name
            add(
                "assistant",
                [
                    {
                        "type": "tool_call",
                        "call_id": call_id,
                        "name": name,
                        "arguments": arguments,
                        "args": fromjson(arguments, {}),
                        "id": item.get("id"),
                    }
                ],
            )
        elif kind == "function_call_output":
            call_id = _required_str(item, "call_id", param)
            output, content = _tool_output(item.get("output"), f"{param}.output")
            add(
                "user",
                [
                    {
                        "type": "tool_result",
                        "call_id": call_id,
                        "name": call_names.get(call_id),
                        "output": output,
                        "content": content,
                    }
                ],
            )
        elif kind == "reasoning":
            summary = [
                str(part.get("text", ""))
                for part in item.get("summary") or []
                if isinstance(part, dict) and part.get("type") == "summary_text"
            ]
            add(
                "assistant",
                [
                    {
                        "type": "reasoning",
                        "text": "\n\n".join(summary),
                        "summary": summary,
                        "encrypted_content": item.get("encrypted_content"),
                        "id": item.get("id"),
                    }
                ],
            )
        elif kind == "item_reference":
            raise invalid_request(
                "item_reference needs stored responses, which this gateway does not keep; send the item itself.",
                param=f"{param}.type",
                code="unsupported_value",
            )
        elif kind in _UNSUPPORTED_ITEMS:
            raise invalid_request(
                f"Input item type {kind!r} belongs to a built-in tool this gateway does not provide.",
                param=f"{param}.type",
                code="unsupported_value",
            )
        else:
            raise invalid_request(
                f"'{param}.type' {kind!r} is not a known input item type.",
                param=f"{param}.type",
                code="invalid_value",
            )
    for turn in turns:  # outputs may precede the call in odd histories; fill names late
        for part in turn["parts"]:
            if part["type"] == "tool_result" and part["name"] is None:
                part["name"] = call_names.get(part["call_id"])
    return turns, system_parts, call_names


def _required_str(item: dict[str, Any], name: str, param: str) -> str:
    value = item.get(name)
    if not isinstance(value, str) or not value:
        raise invalid_request(
            f"Missing required parameter: '{param}.{name}'.",
            param=f"{param}.{name}",
            code="missing_required_parameter",
        )
    return value


def _message_parts(content: Any, param: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list):
        raise invalid_request(
            f"'{param}' must be a string or a list of content parts.",
            param=param,
            code="invalid_type",
        )
    return [_content_part(part, f"{param}[{index}]") for index, part in enumerate(content)]


def _content_part(part: Any, param: str) -> dict[str, Any]:
    if not isinstance(part, dict):
        raise invalid_request(f"'{param}' must be an object.", param=param, code="invalid_type")
    kind = part.get("type")
    if kind in ("input_text", "output_text", "text", "summary_text"):
        text = part.get("text")
        if not isinstance(text, str):
            raise invalid_request(
                f"'{param}.text' must be a string.", param=f"{param}.text", code="invalid_type"
            )
        return {"type": "text", "text": text}
    if kind == "refusal":
        return {"type": "refusal", "text": str(part.get("refusal", ""))}
    if kind == "input_image":
        url = part.get("image_url")
        file_id = part.get("file_id")
        if not isinstance(url, str) and not isinstance(file_id, str):
            raise invalid_request(
                f"'{param}' needs an 'image_url' (https or data URL) or a 'file_id'.",
                param=f"{param}.image_url",
                code="missing_required_parameter",
            )
        parsed = data_url(url)
        if isinstance(url, str) and parsed is None and not url.startswith(("http://", "https://")):
            raise invalid_request(
                f"'{param}.image_url' must be an http(s) URL or a data URL.",
                param=f"{param}.image_url",
                code="invalid_image_url",
            )
        if parsed is not None and not parsed["base64"]:
            raise invalid_request(
                f"'{param}.image_url' data URL must be base64-encoded.",
                param=f"{param}.image_url",
                code="invalid_base64_image",
            )
        return {
            "type": "image",
            "url": None if parsed else url,
            "media_type": parsed["media_type"] if parsed else None,
            "data": parsed["data"] if parsed else None,
            "file_id": file_id,
            "detail": part.get("detail") or "auto",
        }
    if kind == "input_file":
        file_data = part.get("file_data")
        parsed = data_url(file_data)
        if isinstance(file_data, str) and parsed is None:
            parsed = {"media_type": None, "data": file_data, "base64": True}
        return {
            "type": "file",
            "filename": part.get("filename"),
            "url": part.get("file_url"),
            "media_type": parsed["media_type"] if parsed else None,
            "data": parsed["data"] if parsed else None,
            "file_id": part.get("file_id"),
        }
    if kind == "input_audio":
        raise invalid_request(
            "Audio input is not supported by this gateway.",
            param=f"{param}.type",
            code="unsupported_value",
        )
    raise invalid_request(
        f"'{param}.type' {kind!r} is not a known content part type.", param=f"{param}.type"
    )


def _tool_output(output: Any, param: str) -> tuple[str, list[dict[str, Any]]]:
    if isinstance(output, str):
        return output, [{"type": "text", "text": output}]
    if isinstance(output, list):
        parts = [_content_part(part, f"{param}[{index}]") for index, part in enumerate(output)]
        text = "".join(part["text"] for part in parts if part["type"] == "text")
        return text, parts
    if output is None:
        raise invalid_request(
            f"Missing required parameter: '{param}'.",
            param=param,
            code="missing_required_parameter",
        )
    return orjson.dumps(output).decode(), [{"type": "text", "text": orjson.dumps(output).decode()}]
