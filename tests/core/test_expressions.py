"""Compiled expressions agree with Jinja's own evaluator on the data templates read."""

from __future__ import annotations

from typing import Any

import pytest
from jinja2.parser import Parser

from gateway.expressions import compile_condition, compile_fast
from gateway.templating import ENV

SCOPE: dict[str, Any] = {
    "event": {
        "type": "content_block_delta",
        "index": 2,
        "delta": {"type": "text_delta", "text": "hi"},
        "choices": [
            {
                "delta": {"content": "x", "tool_calls": [{"index": 0, "id": "c1"}]},
                "finish_reason": None,
            }
        ],
        "usage": None,
    },
    "req": {
        "model": "m",
        "stream": True,
        "max_output_tokens": 100,
        "turns": [
            {
                "role": "user",
                "parts": [{"type": "text", "text": "a"}, {"type": "tool_result", "call_id": "c"}],
            },
            {"role": "assistant", "parts": [{"type": "text", "text": "b"}]},
        ],
        "encrypted": "anthropic:thinking:sig",
        "stop": [" ", "END"],
    },
    "n": 7,
}

EXPRESSIONS = [
    "event.delta.text",
    "event.missing.deeper",
    "event.choices[0].delta.content",
    "event.choices[0].delta.tool_calls[0].id",
    "event.choices[5]",
    "event['delta']['type']",
    "event.usage",
    "event.usage.prompt_tokens if event.usage else none",
    "event.delta.text or 'fallback'",
    "event.missing or 'fallback'",
    "event.index == 2 and event.type != 'x'",
    "not event.missing",
    "event.missing is defined",
    "event.delta is defined",
    "event.usage is none",
    "req.max_output_tokens > 50",
    "1 < n <= 7",
    "'text' in event.delta",
    "n * 2 + 1 - 3",
    "n // 2",
    "n % 4",
    "-n",
    "'tool:' ~ event.index",
    "'x' ~ event.missing ~ 'y'",
    "[1, n, 'a']",
    "{'a': n, 'b': event.type}",
    "req.turns | length",
    "req.turns[0].parts | by_type('tool_result') | length",
    "req.turns[0].parts | map(attribute='type') | join(',')",
    "req.turns | selectattr('role', 'equalto', 'assistant') | list | length",
    "req.stop | reject('equalto', ' ') | list",
    "req.encrypted.startswith('anthropic:')",
    "req.encrypted.split(':', 2)[2]",
    "req.encrypted[0:9]",
    "req.model | upper",
    "event.missing | default('d')",
    "coalesce(event.missing, none, 3)",
    "tojson({'a': n})",
    "event.get('type')",
    "req.turns[-1].role",
    "true if req.stream else false",
]


def jinja(source: str) -> Any:
    return ENV.compile_expression(source, undefined_to_none=True)(**SCOPE)


def fast(source: str) -> Any:
    node = Parser(ENV, source, state="variable").parse_expression()
    compiled = compile_fast(node, ENV)
    assert compiled is not None, f"{source} fell back to Jinja"
    return compiled(SCOPE)


@pytest.mark.parametrize("source", EXPRESSIONS)
def test_compiled_expression_matches_jinja(source: str) -> None:
    assert fast(source) == jinja(source)


def test_lookups_read_data_not_python_attributes() -> None:
    assert fast("req.turns.append") is None
    assert fast("req.model.upper") is None


def test_unsupported_constructs_fall_back() -> None:
    node = Parser(ENV, "req.model.format(1)", state="variable").parse_expression()
    assert compile_fast(node, ENV) is None


CONDITIONS = [
    *EXPRESSIONS,
    "event and event.missing",
    "n and event.missing.deeper",
    "missing and event.delta",
    "event.missing or event.usage or event.delta.missing",
    "not (event.missing or missing)",
    "not event.delta.text",
    "event.delta.missing is defined",
    "(event.missing and 1) is defined",
    "event.choices[0].delta.content",
    "event.choices[0].missing.deeper[1]",
    "event.choices[3] or event.delta['missing']",
    "missing",
    "n",
    "'x' if event.missing else ''",
]


@pytest.mark.parametrize("source", CONDITIONS)
def test_compiled_condition_tests_as_jinja_does(source: str) -> None:
    # A condition's value is only tested for truth; a missing value may come back as none.
    node = Parser(ENV, source, state="variable").parse_expression()
    compiled = compile_condition(node, ENV)
    assert compiled is not None, f"{source} fell back to Jinja"
    assert bool(compiled(SCOPE)) is bool(jinja(source))
