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


# Shapes with their own closures (a guarded path read once, a fresh empty list), checked
# against Jinja for a value that is present, falsy, None, of another type, or undefined.
GUARDED = [
    "x.a.b if x.a else none",
    "x.a if x else none",
    "x[0] if x else none",
    "x[0] if x else 'd'",
    "x.a[0] if x.a else 0",
    "x.a.b.c if x.a.b else none",
    "x.a.b if x.b else none",
    "x.a if x else []",
    "x and x.a",
    "x and x.a.b",
    "x and x.a.b.c",
    "x and x[0]",
    "x and y.a",
    "x.a or 0",
    "x or 'd'",
    "x.a.b or 1",
    "(x.b or 0) + 1",
    "x.a.b",
    "x.a[0]",
    "not x.a.b",
    # ``is none``, a comparison with a constant, and/or chains: their own closures too.
    "x is none",
    "x is not none",
    "x.a is not none and x.b is none",
    "x.b == 2",
    "x.b != 0",
    "x and x.a and x.b",
    "x.b or x.a or 'c'",
    "x or y.a or 0",
    "x and (x.a or x.b) and 1",
    "not x.b or x.a and x.b and not x",
    "x | map(attribute='a') | join(', ')",
    "x | map(attribute='a') | join",
    "x | selectattr('a', 'equalto', 2) | list",
    "x | rejectattr('a', 'equalto', 2) | list",
    "x | selectattr('a', 'ne', none) | list",
    "x | selectattr('a', 'in', [2, 's', none]) | list",
    "x | rejectattr('a', 'in', [2]) | list | length",
    "x.a ~ x.b",
    "x.a or x.b",
    "x.a.b or y.a",
    "x.b or x.a.b",
    "x and (x.a.b or x.b)",
    "x.a ~ '-' ~ x.b",
    "x.a ~ x.b ~ '-' ~ 1",
]
VALUES: list[Any] = [
    {"a": {"b": {"c": 1}, "0": 3}, "b": 2},
    {"a": {"b": 0}, "b": 0},
    {"a": [5], "b": 1},
    {"a": [], "b": None},
    {"a": None},
    {},
    [{"a": 2}],
    [{"a": "s"}, {"a": None}, {"b": 1}, {"a": [1]}],
    [7, 8],
    [],
    0,
    None,
    ENV.undefined(name="x"),
]


@pytest.mark.parametrize("source", GUARDED)
@pytest.mark.parametrize("value", [*VALUES, "absent"])
def test_guarded_shapes_match_jinja(source: str, value: Any) -> None:
    scope: dict[str, Any] = {"y": {"a": 4}} if value == "absent" else {"x": value, "y": {}}
    expected = ENV.compile_expression(source, undefined_to_none=True)(**scope)
    node = Parser(ENV, source, state="variable").parse_expression()
    compiled, condition = compile_fast(node, ENV), compile_condition(node, ENV)
    assert compiled is not None and condition is not None
    got = compiled(scope)
    assert got == expected and type(got) is type(expected)
    assert bool(condition(scope)) is bool(expected)


def _parts(source: str, scope: dict[str, Any]) -> Any:
    """``source`` evaluated from its separately compiled operands (the general path)."""

    def value(part: str) -> Any:
        compiled = compile_fast(Parser(ENV, part, state="variable").parse_expression(), ENV)
        assert compiled is not None
        return compiled(scope)

    if " if " in source:
        then, rest = source.split(" if ")
        test, otherwise = rest.split(" else ")
        return value(then) if value(test) else value(otherwise)
    left, right = source.split(" and ")
    return value(left) and value(right)


@pytest.mark.parametrize("source", [s for s in GUARDED[:13] if " if " in s or " and " in s])
def test_guarded_shapes_read_strings_as_plain_paths_do(source: str) -> None:
    # Lookups never index or read into a string (unlike Jinja's): the same with a guard.
    scope = {"x": "text", "y": {}}
    compiled = compile_fast(Parser(ENV, source, state="variable").parse_expression(), ENV)
    assert compiled is not None
    assert compiled(scope) == _parts(source, scope)


@pytest.mark.parametrize("text", ["models/gemini-2.5", "gemini", "", "a:b:c"])
@pytest.mark.parametrize(
    "method", ["removeprefix('models/')", "startswith('gem')", "split(':', 1)", "upper()"]
)
def test_string_methods_with_constant_arguments_match_jinja(text: str, method: str) -> None:
    source = f"x.{method}"
    expected = ENV.compile_expression(source, undefined_to_none=True)(x=text)
    compiled = compile_fast(Parser(ENV, source, state="variable").parse_expression(), ENV)
    assert compiled is not None
    assert compiled({"x": text}) == expected
    assert compiled({"x": 3}) is None and compiled({}) is None  # not a string: undefined
