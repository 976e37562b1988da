"""Typed templates: native values, dropped fields, structural forms, and data that stays data."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.templating import (
    ENV,
    OMIT,
    RenderError,
    TemplateError,
    compile_bindings,
    compile_expression,
    compile_tree,
    data_url,
)


def render(tree: Any, **scope: Any) -> Any:
    return compile_tree(tree)(scope)


def test_single_expression_yields_native_values() -> None:
    assert render("{{ items }}", items=[1, 2]) == [1, 2]
    assert render("{{ n + 1 }}", n=1) == 2
    assert render("{{ flag }}", flag=False) is False


def test_text_with_substitution_is_a_string() -> None:
    assert render("Bearer {{ key }}", key="k") == "Bearer k"
    assert render("{{ a }}-{{ b }}", a=1, b=2) == "1-2"


def test_none_and_omit_drop_the_field() -> None:
    tree = {"a": "{{ missing }}", "b": "{{ omit }}", "c": "{{ none }}", "d": "{{ x }}"}
    assert render(tree, x=0) == {"d": 0}


def test_plain_paths_are_lenient_lookups() -> None:
    event = {"delta": {"text": "hi"}, "items": [{"v": 1}]}
    assert render("{{ event.delta.text }}", event=event) == "hi"
    assert render("{{ event.items[0].v }}", event=event) == 1
    assert render({"t": "{{ event.nope.deeper }}"}, event=event) == {}


def test_client_content_is_data_never_template() -> None:
    hostile = '{{ 7 * 7 }}", "injected": true, "x": "'
    assert render({"content": "{{ text }}"}, text=hostile) == {"content": hostile}
    assert render("say: {{ text }}", text="{{ 1 + 1 }}") == "say: {{ 1 + 1 }}"


def test_each_builds_lists_and_filters() -> None:
    tree = {"$each": "xs", "as": "x", "if": "x > 1", "do": {"v": "{{ x * 10 }}"}}
    assert render(tree, xs=[1, 2, 3]) == [{"v": 20}, {"v": 30}]


def test_each_flatten_splices_lists() -> None:
    tree = {"$each": "xs", "as": "x", "flatten": True, "do": ["{{ x }}", "{{ x }}"]}
    assert render(tree, xs=[1, 2]) == [1, 1, 2, 2]


def test_if_switch_concat_merge_let() -> None:
    assert render({"$if": "a", "then": 1, "else": 2}, a=False) == 2
    assert render({"k": {"$if": "a", "then": 1}}, a=False) == {}
    switch = {"$switch": "kind", "cases": {"x": "X", "true": "T"}, "default": "D"}
    assert render(switch, kind="x") == "X"
    assert render(switch, kind=True) == "T"
    assert render(switch, kind="y") == "D"
    assert render({"$concat": [[1], "{{ omit }}", "{{ more }}"]}, more=[2, 3]) == [1, 2, 3]
    assert render({"$merge": [{"a": 1}, "{{ extra }}"]}, extra={"b": 2}) == {"a": 1, "b": 2}
    assert render({"$let": {"y": "{{ x * 2 }}"}, "in": "{{ y + 1 }}"}, x=2) == 5
    assert render({"$literal": "{{ not rendered }}"}) == "{{ not rendered }}"


def test_unknown_form_and_bad_syntax_are_template_errors() -> None:
    with pytest.raises(TemplateError, match="unknown template form"):
        compile_tree({"$loop": "xs"})
    with pytest.raises(TemplateError, match="does not take"):
        compile_tree({"$if": "a", "than": 1})
    with pytest.raises(TemplateError, match="syntax error"):
        compile_tree("{{ a + }}")


def test_templates_cannot_reach_python_internals() -> None:
    # Refused at load time (tests/access/test_template_sandbox.py has the full catalogue).
    for hostile in ("{{ x.__class__.__mro__ }}", "{{ (x.__class__ ~ '') }}"):
        with pytest.raises(TemplateError, match="template refused"):
            render(hostile, x="")
    # What a static check cannot see runs in the immutable sandbox: unsafe names are undefined.
    assert render("{{ (x[k] ~ '') }}", x="", k="__class__") == ""
    with pytest.raises(RenderError):
        render("{{ x.append(1) }}", x=[])


def test_helpers() -> None:
    assert data_url("data:image/png;base64,AAAA") == {
        "media_type": "image/png",
        "data": "AAAA",
        "base64": True,
    }
    assert data_url("https://x/y.png") is None
    assert render("{{ s | fromjson }}", s='{"a": 1}') == {"a": 1}
    assert render("{{ s | fromjson }}", s="not json") == {}
    assert render("{{ v | tojson }}", v={"a": [1]}) == '{"a":[1]}'
    parts = [{"type": "text"}, {"type": "tool_result"}, {"type": "text"}]
    assert render("{{ p | by_type('tool_result') | length }}", p=parts) == 1
    assert render("{{ p | without_type('tool_result') | length }}", p=parts) == 2
    assert render("{{ coalesce(none, 0, 3) }}", x=1) == 0
    assert OMIT is render("{{ omit }}") or render({"a": "{{ omit }}"}) == {}


def test_missing_values_are_none_wherever_a_leaf_lands() -> None:
    # Containers read their leaves without a wrapper: an undefined must still be none there.
    assert render(["{{ a.b }}", "{{ x }}"], x=1) == [1]
    assert render({"$concat": ["{{ a.b }}", ["{{ x }}"]]}, x=1) == [1]
    assert render({"$let": {"v": "{{ a.b }}"}, "in": "{{ v is none }}"}) is True
    assert render({"$switch": "a.b", "cases": {"None": "missing"}}) == "missing"
    assert render({"$merge": ["{{ a.b }}", {"k": 1}]}) == {"k": 1}
    assert (
        render({"k": {"$if": "a.b", "then": 1}, "j": {"$if": "x", "then": "{{ a.b }}"}}, x=1) == {}
    )
    assert render({"$each": "a.b", "do": 1}) == []
    # A form whose branch, body or case is a leaf returns none for an undefined, never the
    # undefined itself, and a list leaves it out.
    assert render({"$if": "x", "then": "{{ a.b }}"}, x=1) is None
    assert render({"$if": "a", "then": 1, "else": "{{ a.b }}"}) is None
    assert render({"$let": {"v": 1}, "in": "{{ a.b }}"}) is None
    assert render({"$switch": "x", "cases": {"1": "{{ a.b }}"}}, x=1) is None
    assert render({"$switch": "x", "cases": {}, "default": "{{ a.b }}"}, x=1) is None
    assert render({"$each": "[1, 2]", "do": "{{ a.b }}"}) == []
    assert render({"$each": "[1, 2]", "as": "i", "do": "{{ i if i > 1 else a.b }}"}) == [2]
    assert render({"k": {"$if": "x", "then": {"$switch": "x", "cases": {}}}}, x=1) == {}


def test_bindings_fill_the_scope_in_order() -> None:
    bind = compile_bindings({"a": "{{ x + 1 }}", "b": "{{ a * 2 }}", "c": "{{ a.b }}"})
    scope: dict[str, Any] = {"x": 1}
    bind(scope)
    assert scope == {"x": 1, "a": 2, "b": 4, "c": None}
    with pytest.raises(RenderError, match=r"1 // x.*by zero"):
        compile_bindings({"a": "{{ 1 // x }}"})({"x": 0})


def test_a_failing_leaf_is_reported_with_its_source() -> None:
    failing = "{{ 1 // n }}"
    trees = [
        {"k": failing},
        [failing],
        {"$concat": [failing]},
        {"$concat": [{"$if": "1 // n", "then": 1}]},
        {"$concat": [{"$if": "true", "then": failing}]},
        {"k": {"$if": "1 // n", "then": 1}},
        [{"$if": "1 // n", "then": 1}],
        {"$if": "1 // n", "then": 1, "else": 2},
        {"$let": {"v": failing}, "in": "{{ v }}"},
        {"$each": "[1] if 1 // n else []", "do": 1},
        {"$each": "[1]", "if": "1 // n", "do": 1},
        {"$switch": "1 // n", "cases": {}},
        {"$merge": [failing]},
        # Forms hold their branches, bodies and cases unwrapped: they label a leaf's error.
        {"$if": "true", "then": failing},
        {"$if": "false", "then": 1, "else": failing},
        {"$let": {"v": 1}, "in": failing},
        {"$each": "[1]", "do": failing},
        {"$switch": "'a'", "cases": {"a": failing}},
        {"$switch": "'b'", "cases": {"a": 1}, "default": failing},
        "x{{ 1 // n }}",
    ]
    for tree in trees:
        with pytest.raises(RenderError, match=r"1 // n.*by zero") as caught:
            render(tree, n=0)
        assert isinstance(caught.value.__cause__, ZeroDivisionError)


def test_an_error_outside_any_leaf_is_not_relabelled() -> None:
    with pytest.raises(TypeError):
        render({"$concat": [{"$each": "n", "do": 1}]}, n=3)


def test_a_conditional_member_checks_its_keys() -> None:
    with pytest.raises(TemplateError, match="does not take"):
        compile_tree({"$concat": [{"$if": "a", "than": 1}]})


@pytest.mark.parametrize(
    "source", ["{{ x }}", "{{ x.a }}", " {{x.a}} ", "{{ x.a.b }}", "{{ x.a.b.c }}", "{{ x['a'] }}"]
)
@pytest.mark.parametrize(
    "x",
    [{"a": {"b": {"c": 1}}}, {"a": {"b": 0}}, {"a": None}, {"a": [1]}, {}, [1], "s", 0, None],
)
def test_a_short_path_field_is_read_as_its_leaf_is(source: str, x: Any) -> None:
    # A mapping reads ``{{ name.key.key }}`` inline: the same value, and the same dropped
    # field for none or a missing key, as the leaf rendered on its own.
    general = compile_expression(source.strip().removeprefix("{{").removesuffix("}}"))
    for scope in ({"x": x}, {}, {"x": ENV.undefined(name="x")}):
        alone = general(scope)
        assert compile_tree(source)(scope) == alone  # a short path on its own, too
        expected = {"t": 1} if alone is None else {"t": 1, "k": alone}
        assert compile_tree({"t": 1, "k": source})(scope) == expected
    for scope in ({"x": x}, {}, {"x": ENV.undefined(name="x")}):
        # The same path as a field's guard: the field is there when the form alone is.
        guard = source.strip().removeprefix("{{").removesuffix("}}")
        for condition in (source, guard):
            alone = compile_tree({"$if": condition, "then": 5})(scope)
            expected = {"t": 1} if alone is OMIT else {"t": 1, "k": 5}
            assert compile_tree({"t": 1, "k": {"$if": condition, "then": 5}})(scope) == expected
            concat = compile_tree({"$concat": [[1], {"$if": condition, "then": [5]}]})(scope)
            assert concat == ([1] if alone is OMIT else [1, 5])


@pytest.mark.parametrize(
    "value",
    ["gemini-2.5-flash", "a b", "x/y~z_1.", "é", "", "m?x=1&y", 7, {"a": "b c"}, [("a", "b")]],
)
def test_urlencode_is_jinjas(value: Any) -> None:
    from jinja2.filters import do_urlencode

    assert ENV.filters["urlencode"](value) == do_urlencode(value)
