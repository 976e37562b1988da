"""Typed templates: YAML trees whose string leaves are sandboxed Jinja.

A leaf that is exactly one ``{{ expression }}`` yields the expression's native value (a list
stays a list; ``none`` or ``omit`` drops the field); a leaf with surrounding text yields a
string. JSON is never assembled from text, so client content cannot inject fields.

Besides plain dicts and lists, a tree may use a few structural forms, each a mapping with one
``$``-key, so that lists of messages or events can be built without text splicing:

``{"$each": expr, "as": name, "do": tree, "if": expr}``
    A list: ``tree`` rendered once per item (items rendering to ``omit`` are dropped).
    ``"flatten": true`` splices list results into the outer list.
``{"$if": expr, "then": tree, "else": tree}``
    One branch; a missing branch is ``omit``.
``{"$switch": expr, "cases": {value: tree}, "default": tree}``
    The tree whose key equals the value (compared as strings).
``{"$concat": [tree, ...]}``
    Lists joined; ``omit`` parts are skipped.
``{"$merge": [tree, ...]}``
    Mappings merged left to right; ``omit`` parts are skipped.
``{"$let": {name: tree}, "in": tree}``
    Names bound for the inner tree.
``{"$literal": value}``
    The value as is, never rendered.

Trees are compiled once per config version; rendering a compiled node is a function call.
Plain dotted paths (``event.delta.text``) skip Jinja entirely and become direct lookups.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar, Final, NoReturn

import orjson
from jinja2 import ChainableUndefined, TemplateSyntaxError, Undefined, nodes
from jinja2.filters import do_urlencode
from jinja2.parser import Parser
from jinja2.sandbox import ImmutableSandboxedEnvironment

from gateway.expressions import CONSTANT_NAMES, compile_closure, compile_condition, lookup

Scope = dict[str, Any]
Renderer = Callable[[Scope], Any]


class _Omit:
    """Marker: the field or item this value lands in is left out."""

    _instance: ClassVar[_Omit | None] = None

    def __new__(cls) -> _Omit:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "omit"

    def __bool__(self) -> bool:
        return False


OMIT: Final = _Omit()


class TemplateError(Exception):
    """A template that does not compile, or names something that does not exist."""

    def __init__(self, message: str, path: tuple[str | int, ...] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.path = path


class RenderError(Exception):
    """A template that failed while rendering one request or event."""


class TemplateRaised(RenderError):
    """A template refused its input on purpose (``raise_error``): the client can fix it."""

    def __init__(self, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


# --------------------------------------------------------------------------- helpers

_DATA_URL = re.compile(
    r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(;[^,;]*)*?)(?P<b64>;base64)?,(?P<data>.*)$",
    re.S,
)


def data_url(url: Any) -> dict[str, Any] | None:
    """Split a ``data:`` URL into ``{media_type, data, base64}``; ``None`` for anything else."""
    if not isinstance(url, str) or not url.startswith("data:"):
        return None
    match = _DATA_URL.match(url)
    if match is None:
        return None
    return {
        "media_type": match.group("mime") or "text/plain",
        "data": match.group("data"),
        "base64": bool(match.group("b64")),
    }


def fromjson(value: Any, default: Any = OMIT) -> Any:
    """Parse a JSON string; on invalid JSON return ``default`` (``{}``-like callers pass one)."""
    if not isinstance(value, str | bytes):
        return value
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        if default is OMIT:
            return {}
        return default


def tojson(value: Any) -> str:
    """Compact JSON text, as providers expect for tool-call arguments."""
    return orjson.dumps(value).decode()


def pick(mapping: Any, *keys: str) -> dict[str, Any]:
    """The subset of ``mapping`` whose keys are listed and whose values are not ``None``."""
    if not isinstance(mapping, Mapping):
        return {}
    return {key: mapping[key] for key in keys if mapping.get(key) is not None}


def omit_keys(mapping: Any, *keys: str) -> dict[str, Any]:
    """``mapping`` without the listed keys."""
    if not isinstance(mapping, Mapping):
        return {}
    return {key: value for key, value in mapping.items() if key not in keys}


def b64encode(value: Any) -> str:
    raw = value.encode() if isinstance(value, str) else bytes(value)
    return base64.b64encode(raw).decode()


def b64decode(value: Any) -> str:
    return base64.b64decode(str(value)).decode()


def group_turns(items: Iterable[Mapping[str, Any]], key: str = "role") -> list[dict[str, Any]]:
    """Merge consecutive items with the same ``key`` into ``{key, items}`` groups.

    The canonical request's turns are already grouped; this is for templates that regroup
    (for example Chat Completions splitting tool results out of a user turn).
    """
    groups: list[dict[str, Any]] = []
    for item in items:
        value = item.get(key)
        if groups and groups[-1][key] == value:
            groups[-1]["items"].append(item)
        else:
            groups.append({key: value, "items": [item]})
    return groups


# by_type and without_type loop rather than use a comprehension: a turn has a part or two, and
# a comprehension's own frame costs more than that.


def by_type(parts: Iterable[Mapping[str, Any]], *types: str) -> list[Mapping[str, Any]]:
    """Parts whose ``type`` is one of ``types``, in order."""
    kept = []
    for part in parts:
        if part.get("type") in types:
            kept.append(part)
    return kept


def without_type(parts: Iterable[Mapping[str, Any]], *types: str) -> list[Mapping[str, Any]]:
    """Parts whose ``type`` is none of ``types``, in order."""
    kept = []
    for part in parts:
        if part.get("type") not in types:
            kept.append(part)
    return kept


def first(value: Any, default: Any = None) -> Any:
    """The first element of a sequence, or ``default`` when it is empty or not a sequence."""
    if isinstance(value, list | tuple) and value:
        return value[0]
    return default


def coalesce(*values: Any) -> Any:
    """The first value that is neither ``None`` nor undefined."""
    for value in values:
        if value is not None and value is not OMIT:
            return value
    return None


def raise_error(message: Any, param: Any = None, code: Any = None) -> NoReturn:
    """Refuse the request from a template (a 400 naming ``param``), e.g. an unsupported input.

    For what a provider cannot take and the gateway will not fake, such as a URL it would have
    to fetch: the client gets a clear answer instead of an upstream 400 or a silent drop.
    """
    raise TemplateRaised(
        str(message), None if param is None else str(param), None if code is None else str(code)
    )


#: Characters ``urllib.parse.quote(text, safe="/")`` leaves as they are.
_URL_SAFE: Final = re.compile(r"[A-Za-z0-9_.~/-]*")


def urlencode(value: Any) -> str:
    """Jinja's ``urlencode``; a string with nothing to quote (a model id) is returned as is,
    which is what quoting it would give, without the encode and scan."""
    if type(value) is str and _URL_SAFE.fullmatch(value):
        return value
    return do_urlencode(value)


def clamp(value: Any, low: int | float, high: int | float) -> Any:
    # Not ``float`` bounds: compiled by mypyc, those would turn a whole number into a float.
    if value is None:
        return None
    return max(low, min(high, value))


FILTERS: Final[dict[str, Callable[..., Any]]] = {
    "data_url": data_url,
    "fromjson": fromjson,
    "tojson": tojson,
    "pick": pick,
    "omit_keys": omit_keys,
    "b64encode": b64encode,
    "b64decode": b64decode,
    "group_turns": group_turns,
    "by_type": by_type,
    "without_type": without_type,
    "first": first,
    "clamp": clamp,
    "urlencode": urlencode,
}

GLOBALS: Final[dict[str, Any]] = {
    "omit": OMIT,
    "coalesce": coalesce,
    "data_url": data_url,
    "fromjson": fromjson,
    "tojson": tojson,
    "pick": pick,
    "raise_error": raise_error,
}


class _SandboxEnvironment(ImmutableSandboxedEnvironment):
    """Immutable sandbox: templates read data, never mutate it or reach Python internals."""


def _make_environment() -> _SandboxEnvironment:
    env = _SandboxEnvironment(undefined=ChainableUndefined, autoescape=False)
    env.filters.update(FILTERS)
    env.globals.update(GLOBALS)
    env.globals.pop("range", None)
    env.globals.pop("lipsum", None)
    env.globals.pop("cycler", None)
    env.globals.pop("joiner", None)
    env.globals.pop("namespace", None)
    env.globals.pop("dict", None)
    return env


ENV: Final = _make_environment()

_SINGLE_EXPRESSION = re.compile(r"^\s*\{\{(?P<expr>.*?)\}\}\s*$", re.S)
_PLAIN_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*|\[\d+\])*$")
_JINJA_MARKERS = ("{{", "{%", "{#")


# --------------------------------------------------------------------------- sandbox checks

#: Attributes that lead from data to the interpreter (frames, code, globals, class graph).
_INTERNAL_NAMES: Final = frozenset(
    {
        "mro", "globals", "builtins", "subclasses", "environ", "getenv", "modules",
        "import_module", "format_map", "gi_frame", "gi_code", "gi_yieldfrom", "cr_frame",
        "cr_code", "cr_await", "ag_frame", "ag_code", "ag_await", "f_globals", "f_locals",
        "f_back", "f_builtins", "f_code", "tb_frame", "tb_next", "func_globals", "func_code",
        "func_closure", "im_func", "im_self", "im_class", "co_code",
    }
)  # fmt: skip
#: Filters whose string arguments name attributes to read.
_ATTRIBUTE_FILTERS: Final = frozenset(
    {"attr", "map", "selectattr", "rejectattr", "sort", "groupby", "unique", "min", "max", "sum"}
)
_FORMAT_FIELD: Final = re.compile(r"\{[^}]*[.\[]\s*_")


def _unsafe_name(name: str, *, attribute: bool) -> bool:
    """``_x`` as an attribute; ``__`` (dunder, name-mangled) anywhere; ``_INTERNAL_NAMES``."""
    return (attribute and name.startswith("_")) or "__" in name or name in _INTERNAL_NAMES


def _refuse(source: str, what: str, where: tuple[str | int, ...]) -> TemplateError:
    return TemplateError(
        f"template refused in {source!r}: {what}; templates may only read the data they are given",
        where,
    )


def check_sandbox(ast: nodes.Node, source: str, where: tuple[str | int, ...] = ()) -> None:
    """Refuse, at load time, a template that reaches for Python internals, files or
    expensive constants. The sandbox would stop most of it at render time; this makes a
    hostile template a config error that names its line instead of a request failure."""
    for node in (ast, *ast.find_all(nodes.Node)):  # find_all leaves out the root itself
        if isinstance(node, nodes.Include | nodes.Import | nodes.FromImport | nodes.Extends):
            raise _refuse(source, f"{type(node).__name__.lower()} reads other templates", where)
        if isinstance(node, nodes.Getattr) and _unsafe_name(node.attr, attribute=True):
            raise _refuse(source, f"attribute '{node.attr}' is internal", where)
        if (
            isinstance(node, nodes.Getitem)
            and isinstance(node.arg, nodes.Const)
            and isinstance(node.arg.value, str)
            and _unsafe_name(node.arg.value, attribute=False)
        ):
            raise _refuse(source, f"item '{node.arg.value}' is internal", where)
        if isinstance(node, nodes.Name) and (node.name == "self" or node.name.startswith("_")):
            raise _refuse(source, f"name '{node.name}' is internal", where)
        if isinstance(node, nodes.Filter) and node.name in _ATTRIBUTE_FILTERS:
            _check_attribute_arguments(node, source, where)
        if (
            isinstance(node, nodes.Const)
            and isinstance(node.value, str)
            and _FORMAT_FIELD.search(node.value)
        ):
            raise _refuse(source, "a format field reads an internal attribute", where)
        if isinstance(node, nodes.Pow):
            raise _refuse(source, "the ** operator is not allowed", where)
        if isinstance(node, nodes.Mul) and any(
            isinstance(side, nodes.Const) and isinstance(side.value, int) and side.value > 100_000
            for side in (node.left, node.right)
        ):
            raise _refuse(source, "a constant repetition larger than 100000", where)


def _check_attribute_arguments(
    node: nodes.Filter, source: str, where: tuple[str | int, ...]
) -> None:
    arguments = [*node.args, *(keyword.value for keyword in node.kwargs)]
    if node.name == "attr" and not all(isinstance(arg, nodes.Const) for arg in node.args):
        raise _refuse(source, "attr() needs a constant attribute name", where)
    for keyword in node.kwargs:
        if keyword.key == "attribute" and not isinstance(keyword.value, nodes.Const):
            raise _refuse(source, f"{node.name}(attribute=...) needs a constant name", where)
    for arg in arguments:
        if isinstance(arg, nodes.Const) and isinstance(arg.value, str):
            for part in arg.value.split("."):
                if _unsafe_name(part, attribute=True):
                    raise _refuse(source, f"attribute '{part}' is internal", where)


def _parse_checked(source: str, where: tuple[str | int, ...]) -> nodes.Template:
    ast = ENV.parse(source)
    check_sandbox(ast, source, where)
    return ast


def _check_expression(source: str, where: tuple[str | int, ...]) -> None:
    """Parse an expression as ``compile_expression`` will (same syntax errors), then check it
    before compiling: Jinja folds constants while compiling, so ``9 ** 9999999`` must not get
    that far."""
    parser = Parser(ENV, source, state="variable")
    check_sandbox(parser.parse_expression(), source, where)


#: Compiled Jinja by source text. Compiling is ~3 ms a template and a config reload compiles
#: every preset again, nearly all unchanged: reuse them (they are immutable and thread-safe).
_COMPILED: dict[tuple[str, str], Any] = {}


def _remember(key: tuple[str, str], compiled: Any) -> None:
    if len(_COMPILED) > 20_000:  # edits over a long life: bound it, never grow without end
        _COMPILED.clear()
    _COMPILED[key] = compiled


#: A compiled tree node: a function of the scope, and for a leaf (an expression or a text with
#: substitutions) the label its errors are reported with. A leaf's function is raw: it may
#: return Jinja's undefined and raise anything. The node holding a leaf catches and converts
#: inline, which saves a call per expression on every request and chunk.
Node = tuple[Callable[[Scope], Any], str | None]


def _wrap(node: Node) -> Renderer:
    """A leaf as a standalone renderer: errors labelled, undefined as ``None``."""
    function, label = node
    if label is None:
        return function

    def evaluate(scope: Scope) -> Any:
        try:
            value = function(scope)
        except Exception as exc:  # a template bug, reported with its source
            _reraise(exc, label)
        return None if isinstance(value, Undefined) else value

    return evaluate


def compile_expression(source: str, *, where: tuple[str | int, ...] = ()) -> Renderer:
    """Compile one Jinja expression to a function of the scope returning a native value."""
    return _wrap(_expression_node(source, where))


def _expression_node(source: str, where: tuple[str | int, ...], *, condition: bool = False) -> Node:
    """A leaf for one expression; a ``condition`` is only tested for truth (``$if``), and
    may read a missing value as ``None`` rather than the undefined."""
    source = source.strip()
    if _PLAIN_PATH.match(source) and source not in ("none", "None", "true", "false", "omit"):
        parts = re.split(r"[.\[\]]", source)
        if parts[0] == "self" or any(_unsafe_name(part, attribute=False) for part in parts):
            raise _refuse(source, "a path segment is internal", where)
    key = ("condition" if condition else "expression", source)
    expression = _COMPILED.get(key)
    if expression is None:
        try:
            _check_expression(source, where)
            expression = _fast_or_jinja(source, condition=condition)
        except TemplateSyntaxError as exc:
            raise TemplateError(
                f"template syntax error in {{{{ {source} }}}}: {exc.message}", where
            ) from exc
        _remember(key, expression)
    return expression, f"{{{{ {source} }}}}"


def _fast_or_jinja(source: str, *, condition: bool = False) -> Callable[[Scope], Any]:
    """A closure compiled from the expression's AST, or Jinja's evaluator when it must be.

    Either may return an undefined value for missing data; ``compile_expression`` maps it to
    ``None``.
    """
    parser = Parser(ENV, source, state="variable")
    node = parser.parse_expression()
    if not parser.stream.eos:
        raise TemplateSyntaxError("chunk after expression", parser.stream.current.lineno)
    fast = compile_condition(node, ENV) if condition else compile_closure(node, ENV)
    if fast is not None:
        return fast
    slow = ENV.compile_expression(source, undefined_to_none=True)
    return lambda scope: slow(**scope)


def _text_node(source: str, where: tuple[str | int, ...]) -> Node:
    template = _COMPILED.get(("text", source))
    if template is None:
        try:
            ast = _parse_checked(source, where)
            template = _substitutions(ast) or ENV.from_string(ast).render
        except TemplateSyntaxError as exc:
            raise TemplateError(f"template syntax error: {exc.message}", where) from exc
        _remember(("text", source), template)
    return template, repr(source)


def _substitutions(ast: nodes.Template) -> Callable[[Scope], str] | None:
    """Text with ``{{ }}`` substitutions only (no tags), joined as Jinja would (``str`` of each
    value, undefined as ``""``) without a render context; ``None`` for anything else."""
    if len(ast.body) != 1 or not isinstance(ast.body[0], nodes.Output):
        return None
    parts: list[Callable[[Scope], Any]] = []
    for node in ast.body[0].nodes:
        if isinstance(node, nodes.TemplateData):
            parts.append(_constant(node.data))
            continue
        closure = compile_closure(node, ENV)
        if closure is None:
            return None
        parts.append(closure)
    return lambda scope: "".join([str(part(scope)) for part in parts])


def compile_string(source: str, where: tuple[str | int, ...] = ()) -> Renderer:
    """A string leaf: a constant, one native expression, or text with substitutions."""
    node = _string_node(source, where)
    path = _short_path(source, leaf=True)
    return _wrap(node) if path is None else _short_reader(*path)


def _short_reader(name: str, first: str | None, second: str | None) -> Renderer:
    """A leaf that is a short path (a stream's discriminator, ``event.type``), read in one
    call rather than a wrapper around a walk."""

    def read(scope: Scope) -> Any:
        value = scope.get(name)
        if first is not None:
            value = value.get(first) if type(value) is dict else lookup(value, first)
            if second is not None:
                value = value.get(second) if type(value) is dict else lookup(value, second)
        return None if isinstance(value, Undefined) else value

    return read


def _string_node(source: str, where: tuple[str | int, ...]) -> Node:
    if not any(marker in source for marker in _JINJA_MARKERS):
        return _constant(source), None
    single = _SINGLE_EXPRESSION.match(source)
    if single is not None and "}}" not in single.group("expr") and "{{" not in single.group("expr"):
        return _expression_node(single.group("expr"), where)
    return _text_node(source, where)


def _constant(value: Any) -> Renderer:
    return lambda scope: value


def compile_tree(tree: Any, where: tuple[str | int, ...] = ()) -> Renderer:
    """Compile a YAML tree into one render function."""
    node = _node(tree, where)
    path = _short_path(tree, leaf=True)
    return _wrap(node) if path is None else _short_reader(*path)


def _node(tree: Any, where: tuple[str | int, ...]) -> Node:
    if isinstance(tree, str):
        return _string_node(tree, where)
    if isinstance(tree, Mapping):
        if len(tree) and next(iter(tree)).startswith("$"):
            return _compile_form(tree, where), None
        return _compile_mapping(tree, where), None
    if isinstance(tree, list):
        return _compile_list(tree, where), None
    return _constant(tree), None


def _reraise(exc: Exception, label: str | None) -> NoReturn:
    """Raise what a node reports for ``exc`` from its child: a leaf's error as a render error
    naming the leaf's source; a render error, or any error of a child that is not a leaf, as
    it is."""
    if label is None or isinstance(exc, RenderError):
        raise exc
    error = RenderError(f"{label}: {exc}")
    error.__cause__ = exc  # as ``raise … from exc`` would: compiled by mypyc, it does not
    raise error


#: A node as a member of a mapping, list or ``$concat``: a ``$if`` without ``else`` is held as
#: its condition (function, label) and its ``then`` node (function, label), tested by the
#: container itself, one call fewer per conditional member; other nodes have no condition.
Part = tuple[Callable[[Scope], Any] | None, str | None, Callable[[Scope], Any], str | None]


def _part(tree: Any, where: tuple[str | int, ...]) -> Part:
    if isinstance(tree, Mapping) and next(iter(tree), None) == "$if" and "else" not in tree:
        _check_form(tree, where)
        condition, label = _expression_of(tree["$if"], (*where, "$if"), condition=True)
        return (condition, label, *_node(tree.get("then", OMIT), (*where, "then")))
    return (None, None, *_node(tree, where))


#: A member of a compiled mapping, as its renderer reads it: key, condition and its label,
#: field and its label, constant value, and the short path (name, key, key) it reads inline.
#: Precise tuple types matter here: mypyc unpacks a row of a known shape by index, but one
#: typed ``tuple[Any, ...]`` through the iterator protocol, a call per item.
_MappingRow = tuple[
    str,
    Callable[[Scope], Any] | None,
    str | None,
    Callable[[Scope], Any] | None,
    str | None,
    Any,
    str | None,
    str | None,
    str | None,
]
#: A member of a compiled ``$concat``: condition and its label, the part and its label, and the
#: short path guarding it (name, key, key).
_ConcatRow = tuple[
    Callable[[Scope], Any] | None,
    str | None,
    Callable[[Scope], Any],
    str | None,
    str | None,
    str | None,
    str | None,
]


def _compile_mapping(tree: Mapping[str, Any], where: tuple[str | int, ...]) -> Renderer:
    if not any(_has_template(value) for value in tree.values()):
        frozen = dict(tree)
        return lambda scope: dict(frozen)
    # A field with a constant scalar (``type: text``) keeps its value; a field that is a short
    # path (``{{ req.top_p }}``), or is guarded by one (``{$if: req.tools, then: ...}``), reads
    # the path inline, without a call; the others render.
    rows: list[_MappingRow] = []
    for key, value in tree.items():
        constant = value is None or isinstance(value, bool | int | float | str)
        if constant and not _has_template(value):
            rows.append((str(key), None, None, None, None, value, None, None, None))
            continue
        part = _part(value, (*where, key))  # compiled, and so checked, in every case
        if part[0] is None and (path := _short_path(value, leaf=True)) is not None:
            rows.append((str(key), None, None, None, None, None, *path))
        elif part[0] is not None and (path := _guard(value)) is not None:
            rows.append((str(key), None, None, part[2], part[3], None, *path))
        else:
            rows.append((str(key), *part, None, None, None, None))
    frozen_rows = tuple(rows)

    def render(scope: Scope) -> Any:
        result: dict[str, Any] = {}
        for (
            key,
            condition,
            condition_label,
            field,
            label,
            value,
            name,
            first,
            second,
        ) in frozen_rows:
            if name is not None:  # a short path: the field's value, or its guard
                found = scope.get(name)
                if first is not None:
                    found = found.get(first) if type(found) is dict else lookup(found, first)
                    if second is not None:
                        found = found.get(second) if type(found) is dict else lookup(found, second)
                if field is None:
                    if isinstance(found, Undefined):
                        continue
                    value = found
                elif not found:
                    continue
            elif condition is not None:
                try:
                    test = condition(scope)
                except Exception as exc:
                    _reraise(exc, condition_label)
                if not test:
                    continue
            if field is not None:
                try:
                    value = field(scope)
                except Exception as exc:
                    _reraise(exc, label)
                if isinstance(value, Undefined):
                    continue
            if value is not None and value is not OMIT:
                result[key] = value
        return result

    return render


def _compile_list(tree: list[Any], where: tuple[str | int, ...]) -> Renderer:
    items = tuple(_part(value, (*where, index)) for index, value in enumerate(tree))

    def render(scope: Scope) -> Any:
        result = []
        for condition, condition_label, item, label in items:
            if condition is not None:
                try:
                    test = condition(scope)
                except Exception as exc:
                    _reraise(exc, condition_label)
                if not test:
                    continue
            try:
                value = item(scope)
            except Exception as exc:
                _reraise(exc, label)
            if value is not None and value is not OMIT and not isinstance(value, Undefined):
                result.append(value)
        return result

    return render


_SHORT_PATH: Final = re.compile(r"^\s*([A-Za-z]\w*)(?:\.([A-Za-z]\w*))?(?:\.([A-Za-z]\w*))?\s*$")


def _short_path(source: Any, *, leaf: bool = False) -> tuple[str, str | None, str | None] | None:
    """``(name, key, key)`` for an expression that reads a scope name and at most two keys
    (``{{ req.top_p }}``; a ``leaf`` needs the braces, an ``$if`` takes it bare), which a
    mapping reads inline. A missing key reads as ``None``: it drops the field, or fails the
    guard, as the undefined does."""
    if not isinstance(source, str):
        return None
    single = _SINGLE_EXPRESSION.match(source)
    if single is not None:
        source = single.group("expr")
    elif leaf:
        return None
    match = _SHORT_PATH.match(source)
    if match is None:
        return None
    name, first, second = match.groups()
    if name in ENV.globals or name in CONSTANT_NAMES or (first is None and second is not None):
        return None
    return name, first, second


def _has_template(value: Any) -> bool:
    if isinstance(value, str):
        return any(marker in value for marker in _JINJA_MARKERS)
    if isinstance(value, Mapping):
        return any(str(key).startswith("$") for key in value) or any(
            _has_template(item) for item in value.values()
        )
    if isinstance(value, list):
        return any(_has_template(item) for item in value)
    return False


_FORM_KEYS: Final[dict[str, frozenset[str]]] = {
    "$each": frozenset({"$each", "as", "do", "if", "flatten"}),
    "$if": frozenset({"$if", "then", "else"}),
    "$switch": frozenset({"$switch", "cases", "default"}),
    "$concat": frozenset({"$concat"}),
    "$merge": frozenset({"$merge"}),
    "$let": frozenset({"$let", "in"}),
    "$literal": frozenset({"$literal"}),
}


def _expression_of(value: Any, where: tuple[str | int, ...], *, condition: bool = False) -> Node:
    """A form's expression slot accepts ``"{{ expr }}"`` or a bare ``expr``."""
    if not isinstance(value, str):
        return _constant(value), None
    single = _SINGLE_EXPRESSION.match(value)
    return _expression_node(single.group("expr") if single else value, where, condition=condition)


def _check_form(tree: Mapping[str, Any], where: tuple[str | int, ...]) -> str:
    """The form's name, once its keys are known to be the form's."""
    form = str(next(iter(tree)))
    allowed = _FORM_KEYS.get(form)
    if allowed is None:
        raise TemplateError(f"unknown template form {form!r}; known: {sorted(_FORM_KEYS)}", where)
    unknown = set(tree) - allowed
    if unknown:
        raise TemplateError(
            f"{form} does not take {sorted(unknown)}; it takes {sorted(allowed)}", where
        )
    return form


def _compile_form(tree: Mapping[str, Any], where: tuple[str | int, ...]) -> Renderer:
    form = _check_form(tree, where)
    here = (*where, form)
    if form == "$literal":
        return _constant(tree["$literal"])
    if form == "$each":
        return _compile_each(tree, here)
    if form == "$if":
        return _compile_if(tree, here, where)
    if form == "$switch":
        return _compile_switch(tree, here, where)
    if form in ("$concat", "$merge"):
        parts_source = tree[form]
        if not isinstance(parts_source, list):
            raise TemplateError(f"{form} takes a list", here)
        if form == "$merge":
            return _merge(
                tuple(_node(part, (*here, index)) for index, part in enumerate(parts_source))
            )
        return _concat(
            tuple(_part(part, (*here, index)) for index, part in enumerate(parts_source)),
            tuple(_guard(part) for part in parts_source),
        )
    return _compile_let(tree, here, where)


def _compile_if(
    tree: Mapping[str, Any], here: tuple[str | int, ...], where: tuple[str | int, ...]
) -> Renderer:
    condition, label = _expression_of(tree["$if"], here, condition=True)
    then = _node(tree.get("then", OMIT), (*where, "then"))
    otherwise = _node(tree["else"], (*where, "else")) if "else" in tree else None
    if then[1] is None and (otherwise is None or otherwise[1] is None):
        # No leaf branch: each branch is called as it is, with nothing to convert.
        then_branch = then[0]
        else_branch = otherwise[0] if otherwise is not None else None

        def render_nodes(scope: Scope) -> Any:
            try:
                test = condition(scope)
            except Exception as exc:
                _reraise(exc, label)
            if test:
                return then_branch(scope)
            return OMIT if else_branch is None else else_branch(scope)

        return render_nodes

    def render(scope: Scope) -> Any:
        try:
            test = condition(scope)
        except Exception as exc:
            _reraise(exc, label)
        if test:
            branch, branch_label = then
        elif otherwise is None:
            return OMIT
        else:
            branch, branch_label = otherwise
        try:
            value = branch(scope)
        except Exception as exc:
            _reraise(exc, branch_label)
        return None if branch_label is not None and isinstance(value, Undefined) else value

    return render


def _compile_let(
    tree: Mapping[str, Any], here: tuple[str | int, ...], where: tuple[str | int, ...]
) -> Renderer:
    bindings_source = tree["$let"]
    if not isinstance(bindings_source, Mapping):
        raise TemplateError("$let takes a mapping of names to trees", here)
    bindings = tuple(
        (str(name), *_node(value, (*here, name))) for name, value in bindings_source.items()
    )
    body, label = _node(tree.get("in", OMIT), (*where, "in"))

    def render(scope: Scope) -> Any:
        inner = dict(scope)
        for name, binding, binding_label in bindings:
            try:
                value = binding(inner)
            except Exception as exc:
                _reraise(exc, binding_label)
            inner[name] = None if isinstance(value, Undefined) else value
        if label is None:  # a tree, not a leaf: its value is never undefined
            return body(inner)
        try:
            value = body(inner)
        except Exception as exc:
            _reraise(exc, label)
        return None if isinstance(value, Undefined) else value

    return render


def compile_bindings(
    source: Mapping[str, Any], where: tuple[str | int, ...] = ()
) -> Callable[[dict[str, Any]], None]:
    """``$let``'s bindings on their own: a function that adds each name in turn to the scope
    it is given, a later one seeing the earlier ones (``request.let``: one call per request,
    not a wrapped renderer per name)."""
    bindings = tuple((str(name), *_node(value, (*where, name))) for name, value in source.items())

    def bind(scope: dict[str, Any]) -> None:
        for name, binding, label in bindings:
            try:
                value = binding(scope)
            except Exception as exc:
                _reraise(exc, label)
            scope[name] = None if isinstance(value, Undefined) else value

    return bind


def _compile_each(tree: Mapping[str, Any], where: tuple[str | int, ...]) -> Renderer:
    # Read as a condition reads: a missing list comes back as ``None``, not Jinja's undefined,
    # whose ``__bool__`` is a Python call (once a chunk, for ``choice.delta.tool_calls``).
    iterable, iterable_label = _expression_of(tree["$each"], where, condition=True)
    name = str(tree.get("as", "item"))
    body, body_label = _node(tree.get("do", f"{{{{ {name} }}}}"), (*where[:-1], "do"))
    condition, label = (
        _expression_of(tree["if"], (*where[:-1], "if"), condition=True)
        if "if" in tree
        else (None, None)
    )
    flatten = bool(tree.get("flatten", False))

    def render(scope: Scope) -> Any:
        try:
            values = iterable(scope)
        except Exception as exc:
            _reraise(exc, iterable_label)
        if not values:
            return []
        inner = dict(scope)
        result: list[Any] = []
        for index, value in enumerate(values):
            inner[name] = value
            inner["loop_index"] = index
            if condition is not None:
                try:
                    keep = condition(inner)
                except Exception as exc:
                    _reraise(exc, label)
                if not keep:
                    continue
            if body_label is None:
                rendered = body(inner)
            else:
                try:
                    rendered = body(inner)
                except Exception as exc:
                    _reraise(exc, body_label)
                if isinstance(rendered, Undefined):
                    continue
            if rendered is None or rendered is OMIT:
                continue
            if flatten and isinstance(rendered, list):
                result.extend(rendered)
            else:
                result.append(rendered)
        return result

    return render


def _compile_switch(
    tree: Mapping[str, Any], here: tuple[str | int, ...], where: tuple[str | int, ...]
) -> Renderer:
    subject, label = _expression_of(tree["$switch"], here)
    cases_source = tree.get("cases", {})
    if not isinstance(cases_source, Mapping):
        raise TemplateError("$switch cases must be a mapping", (*where, "cases"))
    cases = {str(key): _node(value, (*where, "cases", key)) for key, value in cases_source.items()}
    default = _node(tree.get("default", OMIT), (*where, "default"))
    leaves = any(case[1] is not None for case in (*cases.values(), default))

    def render(scope: Scope) -> Any:
        try:
            value = subject(scope)
        except Exception as exc:
            _reraise(exc, label)
        key = (
            value
            if type(value) is str or isinstance(value, str)
            else "None"
            if isinstance(value, Undefined)
            else str(value).lower()
            if isinstance(value, bool)
            else str(value)
        )
        case, case_label = cases.get(key, default)
        if not leaves:  # trees only: called as they are
            return case(scope)
        try:
            value = case(scope)
        except Exception as exc:
            _reraise(exc, case_label)
        return None if case_label is not None and isinstance(value, Undefined) else value

    return render


def _guard(tree: Any) -> tuple[str, str | None, str | None] | None:
    """The short path a conditional member (``$if`` without ``else``) is guarded by."""
    if isinstance(tree, Mapping) and next(iter(tree), None) == "$if" and "else" not in tree:
        return _short_path(tree["$if"])
    return None


def _concat(
    parts: tuple[Part, ...], guards: tuple[tuple[str, str | None, str | None] | None, ...]
) -> Renderer:
    # A part guarded by a short path (``$if: event.usage``) reads it inline, as a mapping does.
    rows: tuple[_ConcatRow, ...] = tuple(
        (None, None, part[2], part[3], *guard) if guard is not None else (*part, None, None, None)
        for part, guard in zip(parts, guards, strict=True)
    )

    def render(scope: Scope) -> Any:
        result: list[Any] = []
        for condition, condition_label, part, label, name, first, second in rows:
            if name is not None:
                found = scope.get(name)
                if first is not None:
                    found = found.get(first) if type(found) is dict else lookup(found, first)
                    if second is not None:
                        found = found.get(second) if type(found) is dict else lookup(found, second)
                if not found:
                    continue
            elif condition is not None:
                try:
                    test = condition(scope)
                except Exception as exc:
                    _reraise(exc, condition_label)
                if not test:
                    continue
            try:
                value = part(scope)
            except Exception as exc:
                _reraise(exc, label)
            if value is None or value is OMIT:
                continue
            if isinstance(value, list):
                result.extend(value)
            elif not isinstance(value, Undefined):
                result.append(value)
        return result

    return render


def _merge(parts: tuple[Node, ...]) -> Renderer:
    def render(scope: Scope) -> Any:
        result: dict[str, Any] = {}
        for part, label in parts:
            try:
                value = part(scope)
            except Exception as exc:
                _reraise(exc, label)
            if isinstance(value, Mapping):
                result.update(value)
        return result

    return render


# --------------------------------------------------------------------------- static checks


def undeclared_names(source: str) -> set[str]:
    """Names a template string reads from its scope (for ``gateway check``)."""
    from jinja2 import meta

    try:
        ast = ENV.parse(source)
    except TemplateSyntaxError:
        return set()
    return set(meta.find_undeclared_variables(ast)) - set(ENV.globals)


def used_filters(source: str) -> set[str]:
    """Filter and test names a template uses, to report unknown helpers before deploy."""
    try:
        ast = ENV.parse(source)
    except TemplateSyntaxError:
        return set()
    names = {node.name for node in ast.find_all(nodes.Filter)}
    return names


def unknown_filters(source: str) -> set[str]:
    return {name for name in used_filters(source) if name not in ENV.filters}


def unknown_tests(source: str) -> set[str]:
    try:
        ast = ENV.parse(source)
    except TemplateSyntaxError:
        return set()
    return {node.name for node in ast.find_all(nodes.Test) if node.name not in ENV.tests}


def template_strings(
    tree: Any, where: tuple[str | int, ...] = ()
) -> Iterable[tuple[tuple[str | int, ...], str]]:
    """Every Jinja-bearing string in a tree with its path, including form expressions."""
    if isinstance(tree, str):
        if any(marker in tree for marker in _JINJA_MARKERS):
            yield where, tree
    elif isinstance(tree, Mapping):
        for key, value in tree.items():
            if (
                key in ("$each", "$if", "$switch", "if")
                and isinstance(value, str)
                and not any(marker in value for marker in _JINJA_MARKERS)
            ):
                yield (*where, key), "{{ " + value + " }}"
            else:
                yield from template_strings(value, (*where, key))
    elif isinstance(tree, list):
        for index, value in enumerate(tree):
            yield from template_strings(value, (*where, index))


def bound_names(tree: Any) -> set[str]:
    """Names a tree binds itself (``$each ... as``, ``$let``), which are not free variables."""
    names: set[str] = set()
    if isinstance(tree, Mapping):
        if "$each" in tree:
            names.add(str(tree.get("as", "item")))
            names.add("loop_index")
        if "$let" in tree and isinstance(tree["$let"], Mapping):
            names.update(str(key) for key in tree["$let"])
        for value in tree.values():
            names |= bound_names(value)
    elif isinstance(tree, list):
        for value in tree:
            names |= bound_names(value)
    return names
