"""Jinja expressions compiled to plain Python closures, for the per-request and per-chunk path.

Jinja evaluates an expression by building a fresh render context for every call, which costs
tens of microseconds (it copies the environment's globals each time). Mapping templates run on
every upstream chunk, so this module walks the parsed expression once and builds a closure per
node instead. It covers what mapping templates use — names, dotted and indexed lookups,
literals, conditionals, boolean logic, comparisons, arithmetic, ``~``, filters, tests and calls
of the template globals. Anything else (method calls, slices, dynamic arguments) returns
``None`` from ``compile_fast`` and the caller uses Jinja's own evaluator.

Semantics follow the sandbox's: lookups read mapping keys and sequence items only (never
Python attributes), and a missing value is Jinja's chainable undefined, so ``a.b.c`` on missing
data is falsy, ``is defined`` is false, and a leaf yields ``None``.
"""

from __future__ import annotations

import inspect
import operator
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Final

from jinja2 import nodes
from jinja2.filters import do_join, make_attrgetter
from jinja2.nodes import EvalContext
from jinja2.runtime import ChainableUndefined, Undefined, new_context
from jinja2.sandbox import SandboxedEnvironment
from jinja2.tests import test_in, test_none
from jinja2.utils import _PassArg

Scope = dict[str, Any]
Closure = Callable[[Scope], Any]

MISSING: Final = ChainableUndefined()

_BINARY: Final[dict[type[nodes.BinExpr], Callable[[Any, Any], Any]]] = {
    nodes.Add: operator.add,
    nodes.Sub: operator.sub,
    nodes.Mul: operator.mul,
    nodes.Div: operator.truediv,
    nodes.FloorDiv: operator.floordiv,
    nodes.Mod: operator.mod,
}

_COMPARE: Final[dict[str, Callable[[Any, Any], Any]]] = {
    "eq": operator.eq,
    "ne": operator.ne,
    "lt": operator.lt,
    "gt": operator.gt,
    "lteq": operator.le,
    "gteq": operator.ge,
    "in": lambda left, right: left in right,
    "notin": lambda left, right: left not in right,
}


_STRING_METHODS: Final = frozenset(
    {
        "startswith", "endswith", "split", "rsplit", "strip", "lstrip", "rstrip", "lower",
        "upper", "replace", "count", "find", "removeprefix", "removesuffix", "splitlines",
        "isdigit", "isalnum", "title", "capitalize", "partition", "rpartition",
    }
)  # fmt: skip
_MAPPING_METHODS: Final = frozenset({"get", "keys", "values", "items"})


#: Names that are literals, never read from the scope.
CONSTANT_NAMES: Final = frozenset({"true", "True", "false", "False", "none", "None"})


_SELECTS: Final = frozenset({"select", "reject", "selectattr", "rejectattr"})

#: No second key (a key may itself be ``None``: ``x[none]``).
_NO_KEY: Final = object()


def _identity(value: Any) -> Any:
    return value


def _mapped(values: Any, getter: Callable[[Any], Any]) -> Iterator[Any]:
    """As Jinja's ``map``: a generator, empty for a falsy value."""
    if values:
        for item in values:
            yield getter(item)


def _selected(values: Any, keep: Callable[[Any], bool]) -> Iterator[Any]:
    """As Jinja's ``select`` family: a generator, empty for a falsy value."""
    if values:
        for item in values:
            if keep(item):
                yield item


class Unsupported(Exception):
    """An expression this compiler leaves to Jinja."""


def lookup(value: Any, key: Any) -> Any:
    """``value.key`` / ``value[key]`` on data: mapping keys and sequence items, else undefined."""
    if type(value) is dict:  # the common case, without an ABC check
        return value.get(key, MISSING)
    if type(value) is list and type(key) is int:
        return value[key] if -len(value) <= key < len(value) else MISSING
    if value is None or isinstance(value, Undefined):  # a read past a missing value
        return MISSING
    if isinstance(value, Mapping):  # an ABC check, slow: after the common cases
        return value.get(key, MISSING)
    if isinstance(key, int) and isinstance(value, Sequence) and not isinstance(value, str):
        return value[key] if -len(value) <= key < len(value) else MISSING
    return MISSING


def compile_closure(expression: nodes.Expr, environment: SandboxedEnvironment) -> Closure | None:
    """A closure evaluating ``expression``, or ``None`` when Jinja must evaluate it.

    A missing value comes back as the chainable undefined; ``compile_fast`` makes it ``None``.
    """
    try:
        return _Compiler(environment).build(expression)
    except Unsupported:
        return None


def compile_condition(expression: nodes.Expr, environment: SandboxedEnvironment) -> Closure | None:
    """``compile_closure`` for a result that is only tested for truth (``$if``): a missing
    value may come back as ``None``, which tests faster than the undefined."""
    try:
        return _Compiler(environment).condition(expression)
    except Unsupported:
        return None


def compile_fast(expression: nodes.Expr, environment: SandboxedEnvironment) -> Closure | None:
    """``compile_closure`` whose missing values are ``None``, as a template leaf yields them."""
    closure = compile_closure(expression, environment)
    if closure is None:
        return None

    def evaluate(scope: Scope) -> Any:
        value = closure(scope)
        return None if isinstance(value, Undefined) else value

    return evaluate


class _Compiler:
    def __init__(self, environment: SandboxedEnvironment) -> None:
        self.environment = environment
        self.eval_context = EvalContext(environment)
        # Context filters (map, selectattr…) only use the context's environment: one empty
        # context serves every call.
        self.context = new_context(environment, None, {}, None, False, environment.globals)

    def build(self, node: nodes.Node) -> Closure:
        if isinstance(node, nodes.BinExpr) and type(node) in _BINARY:  # + - * / // %
            return self._binary(node)
        method = getattr(self, f"_{type(node).__name__}", None)
        if method is None:
            raise Unsupported(type(node).__name__)
        closure: Closure = method(node)
        return closure

    def condition(self, node: nodes.Node) -> Closure:
        """``build`` for a value only tested for truth: names and paths read a missing key as
        ``None``; ``and``, ``or`` and ``not`` pass that on to their operands."""
        if isinstance(node, nodes.And | nodes.Or):
            return self._logic(node, self.condition, None)
        if isinstance(node, nodes.Not):
            return self._not(node, self.condition)
        name = self._scope_name(node)
        if name is not None:
            return lambda scope: scope.get(name)
        if isinstance(node, nodes.Getattr | nodes.Getitem):
            path = self._path(node, missing=None)
            if path is not None:
                return path
        return self.build(node)

    # ------------------------------------------------------------------ leaves

    def _Const(self, node: nodes.Const) -> Closure:
        value = node.value
        return lambda scope: value

    def _Name(self, node: nodes.Name) -> Closure:
        name = node.name
        globals_ = self.environment.globals
        if name in ("true", "True"):
            return lambda scope: True
        if name in ("false", "False"):
            return lambda scope: False
        if name in ("none", "None"):
            return lambda scope: None

        if name not in globals_:  # nearly every name: one dict read
            return lambda scope: scope.get(name, MISSING)

        def load(scope: Scope) -> Any:
            value = scope.get(name, MISSING)
            if value is MISSING:
                return globals_.get(name, MISSING)
            return value

        return load

    def _List(self, node: nodes.List) -> Closure:
        if not node.items:
            return lambda scope: []
        items = [self.build(item) for item in node.items]
        return lambda scope: [item(scope) for item in items]

    def _Tuple(self, node: nodes.Tuple) -> Closure:
        values = tuple(item.value for item in node.items if isinstance(item, nodes.Const))
        if len(values) == len(node.items):  # ('a', 'b'): a constant, immutable
            return lambda scope: values
        items = [self.build(item) for item in node.items]
        return lambda scope: tuple(item(scope) for item in items)

    def _Dict(self, node: nodes.Dict) -> Closure:
        pairs = [(self.build(pair.key), self.build(pair.value)) for pair in node.items]
        return lambda scope: {key(scope): value(scope) for key, value in pairs}

    # ------------------------------------------------------------------ lookups

    def _Getattr(self, node: nodes.Getattr) -> Closure:
        if node.attr.startswith("_"):
            raise Unsupported("internal attribute")  # Jinja's sandbox decides
        path = self._path(node)
        if path is not None:
            return path
        target = self.build(node.node)
        name = node.attr
        return lambda scope: lookup(target(scope), name)

    def _path_of(self, node: nodes.Node) -> tuple[str, tuple[Any, ...]] | None:
        """``(name, keys)`` when ``node`` reads constant keys from a scope name (no keys for
        the bare name), else ``None``."""
        keys: list[Any] = []
        key: Any  # an attribute name or a constant index
        while isinstance(node, nodes.Getattr | nodes.Getitem):
            if isinstance(node, nodes.Getattr):
                key = node.attr
            elif isinstance(node.arg, nodes.Const):
                key = node.arg.value
            else:
                return None
            if isinstance(key, str) and key.startswith("_"):
                raise Unsupported("internal key")
            keys.append(key)
            node = node.node
        name = self._scope_name(node)
        if name is None:
            return None
        keys.reverse()
        return name, tuple(keys)

    def _path(self, node: nodes.Node, missing: Any = MISSING) -> Closure | None:
        """``name.key[0].key``: constant keys from a scope name, read in one loop. A key that
        a mapping lacks reads as ``missing``."""
        found = self._path_of(node)
        if found is None or not found[1]:
            return None
        name, keys = found
        # Unrolled for the usual one or two keys: a loop costs more than the lookups.
        if len(keys) == 1:
            key = keys[0]

            def walk_one(scope: Scope) -> Any:
                value = scope.get(name, missing)
                if type(value) is dict:
                    return value.get(key, missing)
                if type(value) is list and type(key) is int and -len(value) <= key < len(value):
                    return value[key]
                return lookup(value, key)

            return walk_one
        if len(keys) == 2:
            first, second = keys

            def walk_two(scope: Scope) -> Any:
                value = scope.get(name, missing)
                value = value.get(first, missing) if type(value) is dict else lookup(value, first)
                if type(value) is dict:
                    return value.get(second, missing)
                if value is missing:  # a read past a missing key: missing again, at once
                    return missing
                if (
                    type(value) is list
                    and type(second) is int
                    and -len(value) <= second < len(value)
                ):
                    return value[second]
                return lookup(value, second)

            return walk_two

        def walk(scope: Scope) -> Any:
            value = scope.get(name, missing)
            for key in keys:
                value = value.get(key, missing) if type(value) is dict else lookup(value, key)
            return value

        return walk

    def _Getitem(self, node: nodes.Getitem) -> Closure:
        if isinstance(node.arg, nodes.Const):
            key = node.arg.value
            if isinstance(key, str) and key.startswith("_"):
                raise Unsupported("internal key")
            path = self._path(node)
            if path is not None:
                return path
        target = self.build(node.node)
        if isinstance(node.arg, nodes.Slice):
            return self._slice(target, node.arg)
        if isinstance(node.arg, nodes.Const):
            key = node.arg.value
            if isinstance(key, str) and key.startswith("_"):
                raise Unsupported("internal key")
            return lambda scope: lookup(target(scope), key)
        argument = self.build(node.arg)

        def item(scope: Scope) -> Any:
            key = argument(scope)
            if isinstance(key, str) and key.startswith("_"):
                return MISSING
            return lookup(target(scope), key)

        return item

    def _slice(self, target: Closure, node: nodes.Slice) -> Closure:
        bounds = [
            self.build(part) if part is not None else None
            for part in (node.start, node.stop, node.step)
        ]

        def sliced(scope: Scope) -> Any:
            value = target(scope)
            if not isinstance(value, str | list | tuple):
                return MISSING
            start, stop, step = (bound(scope) if bound is not None else None for bound in bounds)
            return value[start:stop:step]

        return sliced

    def _method(self, node: nodes.Call, method: nodes.Getattr) -> Closure:
        """``text.startswith('x')`` and friends: read-only methods of strings and mappings."""
        name = method.attr
        allowed = _STRING_METHODS if name in _STRING_METHODS else _MAPPING_METHODS
        if name not in allowed:
            raise Unsupported(f"method {name}")
        target = self.build(method.node)
        args, kwargs = self._arguments(node)
        constants = tuple(arg.value for arg in node.args if isinstance(arg, nodes.Const))
        if allowed is _STRING_METHODS and not kwargs and len(constants) == len(args):
            # ``model.removeprefix('models/')``: str's own method, the arguments known now
            unbound = getattr(str, name)

            def call_string(scope: Scope) -> Any:
                value = target(scope)
                if type(value) is str:
                    return unbound(value, *constants)
                if not isinstance(value, str):
                    return MISSING
                return getattr(value, name)(*constants)

            return call_string

        def call(scope: Scope) -> Any:
            value = target(scope)
            kind = str if allowed is _STRING_METHODS else Mapping
            if not isinstance(value, kind):
                return MISSING
            positional = [argument(scope) for argument in args]
            named = {key: closure(scope) for key, closure in kwargs}
            return getattr(value, name)(*positional, **named)

        return call

    # ------------------------------------------------------------------ logic

    def _scope_name(self, node: nodes.Node) -> str | None:
        """The name when ``node`` only reads the scope, for callers that inline the read."""
        if not isinstance(node, nodes.Name):
            return None
        name = node.name
        if name in self.environment.globals or name in CONSTANT_NAMES:
            return None
        return name

    def _CondExpr(self, node: nodes.CondExpr) -> Closure:
        if node.expr2 is None or isinstance(node.expr2, nodes.Const):
            # ``a if b else none``: the usual form, one call fewer.
            value = MISSING if node.expr2 is None else node.expr2.value
            guarded = self._guarded_item(node.test, node.expr1, value)
            if guarded is not None:
                return guarded
            test, then = self.condition(node.test), self.build(node.expr1)
            return lambda scope: then(scope) if test(scope) else value
        test, then = self.condition(node.test), self.build(node.expr1)
        if isinstance(node.expr2, nodes.List) and not node.expr2.items:
            return lambda scope: then(scope) if test(scope) else []  # a fresh list, no call
        otherwise = self.build(node.expr2)
        return lambda scope: then(scope) if test(scope) else otherwise(scope)

    def _guarded_item(self, test: nodes.Node, then: nodes.Node, otherwise: Any) -> Closure | None:
        """``a.b.c if a.b else none``: one closure reading ``a.b`` once, then one key more
        from the value when it is truthy (a truthy value is the same whether a missing key
        reads as ``None`` or the undefined)."""
        head, path = self._path_of(test), self._path_of(then)
        if head is None or path is None or head[0] != path[0]:
            return None
        name, keys = head
        if len(path[1]) != len(keys) + 1 or path[1][: len(keys)] != keys:
            return None
        key = path[1][-1]
        read = self._path(test, missing=None) if len(keys) > 1 else None
        first = keys[0] if keys else None
        # Each variant reads the head inline where it can; ``key`` is read as ``lookup`` does.

        def item(value: Any) -> Any:
            if type(value) is dict:
                return value.get(key, MISSING)
            if type(value) is list and type(key) is int and -len(value) <= key < len(value):
                return value[key]
            return lookup(value, key)

        if not keys:

            def from_name(scope: Scope) -> Any:
                value = scope.get(name)
                if not value:
                    return otherwise
                if type(value) is dict:
                    return value.get(key, MISSING)
                return item(value)

            return from_name
        if len(keys) == 1:

            def from_key(scope: Scope) -> Any:
                value = scope.get(name)
                value = value.get(first) if type(value) is dict else lookup(value, first)
                if not value:
                    return otherwise
                if type(value) is dict:
                    return value.get(key, MISSING)
                if type(value) is list and type(key) is int and -len(value) <= key < len(value):
                    return value[key]
                return lookup(value, key)

            return from_key

        if read is None:
            return None

        def from_path(scope: Scope) -> Any:
            value = read(scope)
            if not value:
                return otherwise
            if type(value) is dict:
                return value.get(key, MISSING)
            return item(value)

        return from_path

    def _logic(
        self, node: nodes.And | nodes.Or, operand: Callable[[nodes.Node], Closure], missing: Any
    ) -> Closure:
        if isinstance(node, nodes.Or) and isinstance(node.right, nodes.Const):
            return self._or_constant(node.left, node.right.value, operand)
        if isinstance(node.left, type(node)):  # ``a and b and c``: one closure, a loop
            return self._chain(node, operand)
        if isinstance(node, nodes.Or):
            either = self._either_path(node.left, node.right, missing)
            if either is not None:
                return either
        left, right = operand(node.left), operand(node.right)
        if isinstance(node, nodes.Or):
            return lambda scope: left(scope) or right(scope)
        name = self._scope_name(node.left)
        if name is not None:  # ``choice and choice.delta.content``: the name read inline
            guarded = self._guarded_path(name, node.right, missing)
            if guarded is not None:
                return guarded
            return lambda scope: scope.get(name, missing) and right(scope)
        return lambda scope: left(scope) and right(scope)

    def _chain(
        self, node: nodes.And | nodes.Or, operand: Callable[[nodes.Node], Closure]
    ) -> Closure:
        """``a and b and c`` (parsed as ``(a and b) and c``) as one loop over the operands: the
        first falsy one (for ``or``, truthy one), else the last, as the nested form gives."""
        kind = type(node)
        chain: list[nodes.Node] = [node.right]
        left: nodes.Node = node.left
        while isinstance(left, kind):
            chain.append(left.right)
            left = left.left
        chain.append(left)
        operands = tuple(operand(part) for part in reversed(chain))
        if kind is nodes.Or:

            def any_of(scope: Scope) -> Any:
                for read in operands:
                    value = read(scope)
                    if value:
                        return value
                return value

            return any_of

        def all_of(scope: Scope) -> Any:
            for read in operands:
                value = read(scope)
                if not value:
                    return value
            return value

        return all_of

    def _either_path(self, left: nodes.Node, right: nodes.Node, missing: Any) -> Closure | None:
        """``delta.reasoning_content or delta.reasoning``: two paths of one or two keys read
        in one closure (a missing key reads as ``missing``, as each path alone would)."""
        paths = self._path_of(left), self._path_of(right)
        if any(path is None or not 1 <= len(path[1]) <= 2 for path in paths):
            return None
        (name, keys), (other, other_keys) = paths  # type: ignore[misc]
        key, more = keys[0], keys[1] if len(keys) == 2 else _NO_KEY
        other_key, other_more = other_keys[0], other_keys[1] if len(other_keys) == 2 else _NO_KEY

        def either(scope: Scope) -> Any:
            value = scope.get(name, missing)
            value = value.get(key, missing) if type(value) is dict else lookup(value, key)
            if more is not _NO_KEY:
                value = value.get(more, missing) if type(value) is dict else lookup(value, more)
            if value:
                return value
            value = scope.get(other, missing)
            value = (
                value.get(other_key, missing) if type(value) is dict else lookup(value, other_key)
            )
            if other_more is not _NO_KEY:
                value = (
                    value.get(other_more, missing)
                    if type(value) is dict
                    else lookup(value, other_more)
                )
            return value

        return either

    def _or_constant(
        self,
        left: nodes.Node,
        value: Any,
        operand: Callable[[nodes.Node], Closure],
    ) -> Closure:
        """``usage.count or 0``: the constant inline, and a one-key path read inline too."""
        path = self._path_of(left)
        if path is None or len(path[1]) != 1:
            read = operand(left)
            return lambda scope: read(scope) or value
        name, (key,) = path

        # A falsy left gives way to the constant, so a missing key may read as None here
        # whatever ``missing`` is (the undefined tests slower).
        def either(scope: Scope) -> Any:
            found = scope.get(name)
            found = found.get(key) if type(found) is dict else lookup(found, key)
            return found or value

        return either

    def _guarded_path(self, name: str, right: nodes.Node, missing: Any) -> Closure | None:
        """``choice and choice.delta.content``: one closure that reads ``choice`` once and
        walks on from it when it is truthy (one or two keys, unrolled; a missing key reads as
        ``missing``, as the path alone would)."""
        path = self._path_of(right)
        if path is None or path[0] != name or not 1 <= len(path[1]) <= 2:
            return None
        keys = path[1]
        if len(keys) == 1:
            (key,) = keys

            def guard_one(scope: Scope) -> Any:
                value = scope.get(name, missing)
                if not value:
                    return value
                return value.get(key, missing) if type(value) is dict else lookup(value, key)

            return guard_one
        first, second = keys

        def guard_two(scope: Scope) -> Any:
            value = scope.get(name, missing)
            if not value:
                return value
            value = value.get(first, missing) if type(value) is dict else lookup(value, first)
            return value.get(second, missing) if type(value) is dict else lookup(value, second)

        return guard_two

    def _And(self, node: nodes.And) -> Closure:
        return self._logic(node, self.build, MISSING)

    def _Or(self, node: nodes.Or) -> Closure:
        return self._logic(node, self.build, MISSING)

    def _Not(self, node: nodes.Not) -> Closure:
        return self._not(node, self.condition)

    def _not(self, node: nodes.Not, operand: Callable[[nodes.Node], Closure]) -> Closure:
        subject = self._none_test(node.node)
        if subject is not None:  # ``x is not none``: one comparison, no test call
            return lambda scope: subject(scope) is not None
        inner = operand(node.node)
        return lambda scope: not inner(scope)

    def _none_test(self, node: nodes.Node) -> Closure | None:
        """The subject of ``x is none`` when that is Jinja's own ``none`` test."""
        if (
            isinstance(node, nodes.Test)
            and node.name == "none"
            and self.environment.tests.get("none") is test_none
            and not node.args
            and not node.kwargs
            and node.dyn_args is None
            and node.dyn_kwargs is None
        ):
            return self.build(node.node)
        return None

    def _Neg(self, node: nodes.Neg) -> Closure:
        inner = self.build(node.node)
        return lambda scope: -inner(scope)

    def _Compare(self, node: nodes.Compare) -> Closure:
        first = self.build(node.expr)
        steps = [(_COMPARE[operand.op], self.build(operand.expr)) for operand in node.ops]
        if len(steps) == 1:  # ``a == b``: no chain
            function, right = steps[0]
            operator_name, other = node.ops[0].op, node.ops[0].expr
            if isinstance(other, nodes.Const) and operator_name in ("eq", "ne"):
                # ``x == 'text'``: the constant and the operator inline
                value = other.value
                if operator_name == "eq":
                    return lambda scope: bool(first(scope) == value)
                return lambda scope: bool(first(scope) != value)
            return lambda scope: bool(function(first(scope), right(scope)))

        def compare(scope: Scope) -> Any:
            left = first(scope)
            for function, right_closure in steps:
                right = right_closure(scope)
                if not function(left, right):
                    return False
                left = right
            return True

        return compare

    def _binary(self, node: nodes.BinExpr) -> Closure:
        function = _BINARY[type(node)]
        left, right = self.build(node.left), self.build(node.right)
        return lambda scope: function(left(scope), right(scope))

    def _Concat(self, node: nodes.Concat) -> Closure:
        parts = [self.build(part) for part in node.nodes]
        # ``'tool:' ~ x``: two or three parts added up, with no generator to run.
        if len(parts) == 2:
            first, second = parts
            return lambda scope: str(first(scope)) + str(second(scope))
        if len(parts) == 3:
            first, second, third = parts
            return lambda scope: str(first(scope)) + str(second(scope)) + str(third(scope))
        return lambda scope: "".join([str(part(scope)) for part in parts])

    # ------------------------------------------------------------------ filters, tests, calls

    def _arguments(
        self, node: nodes.Filter | nodes.Test | nodes.Call
    ) -> tuple[list[Closure], list[tuple[str, Closure]]]:
        if node.dyn_args is not None or node.dyn_kwargs is not None:
            raise Unsupported("dynamic arguments")
        args = [self.build(arg) for arg in node.args]
        kwargs = [(str(keyword.key), self.build(keyword.value)) for keyword in node.kwargs]
        return args, kwargs

    def _prefix(self, function: Callable[..., Any]) -> tuple[Any, ...]:
        passing = _PassArg.from_obj(function)
        if passing is None:
            return ()
        if passing is _PassArg.environment:
            return (self.environment,)
        if passing is _PassArg.eval_context:
            return (self.eval_context,)
        return (self.context,)

    def _apply(
        self,
        function: Callable[..., Any],
        subject: Closure | None,
        node: nodes.Filter | nodes.Test | nodes.Call,
    ) -> Closure:
        if getattr(function, "jinja_async_variant", False):
            # Jinja's sync/async dispatcher around a filter; ``__wrapped__`` is the sync one.
            function = inspect.unwrap(function)
        prefix = self._prefix(function)
        args, kwargs = self._arguments(node)
        constants = tuple(arg.value for arg in node.args if isinstance(arg, nodes.Const))
        if not kwargs and len(constants) == len(args):
            # ``x | by_type('text')``, ``x is mapping``: the arguments are known now.
            if subject is None:
                head = (*prefix, *constants)
                return lambda scope: function(*head)
            if not prefix:
                return lambda scope: function(subject(scope), *constants)
            return lambda scope: function(*prefix, subject(scope), *constants)

        def call(scope: Scope) -> Any:
            positional = [argument(scope) for argument in args]
            named = {key: value(scope) for key, value in kwargs}
            if subject is None:
                return function(*prefix, *positional, **named)
            return function(*prefix, subject(scope), *positional, **named)

        return call

    def _Filter(self, node: nodes.Filter) -> Closure:
        function: Any = self.environment.filters.get(node.name)
        if function is None or node.node is None:
            raise Unsupported(f"filter {node.name}")
        subject = self.build(node.node)
        if node.name == "map":
            closure = self._map(node, subject)
        elif node.name == "join" and function is do_join:
            closure = self._join_map(node, self._apply(function, subject, node))
        elif node.name in _SELECTS:
            closure = self._select(node, subject)
        else:
            closure = None
        return closure if closure is not None else self._apply(function, subject, node)

    # ``map(attribute='x')`` and ``select``/``reject``/``selectattr``/``rejectattr`` with a
    # constant attribute and test: Jinja's own attribute getter and test, looked up once here
    # instead of on every call (the test on every item); anything else goes to Jinja's filter.

    def _map(self, node: nodes.Filter, subject: Closure) -> Closure | None:
        if node.args or node.dyn_args or node.dyn_kwargs:
            return None
        kwargs = {
            str(keyword.key): keyword.value.value
            for keyword in node.kwargs
            if isinstance(keyword.value, nodes.Const)
        }
        if len(kwargs) != len(node.kwargs) or set(kwargs) - {"attribute", "default"}:
            return None
        if "attribute" not in kwargs:
            return None
        getter = make_attrgetter(
            self.environment, kwargs["attribute"], default=kwargs.get("default")
        )
        return lambda scope: _mapped(subject(scope), getter)

    def _join_map(self, node: nodes.Filter, general: Closure) -> Closure | None:
        """``parts | map(attribute='text') | join('\\n')`` over a list: the strings read and
        joined in one loop (no generator, no getter call per item). An item that is not a
        dict holding the key is read by Jinja's getter, and anything but a list goes the
        general way."""
        inner = node.node
        if (
            len(node.args) > 1
            or node.kwargs
            or node.dyn_args is not None
            or node.dyn_kwargs is not None
            or not all(isinstance(arg, nodes.Const) for arg in node.args)
            or not isinstance(inner, nodes.Filter)
            or inner.name != "map"
            or inner.args
            or inner.dyn_args is not None
            or inner.dyn_kwargs is not None
            or len(inner.kwargs) != 1
            or inner.kwargs[0].key != "attribute"
            or not isinstance(inner.kwargs[0].value, nodes.Const)
            or inner.node is None
        ):
            return None
        attribute = inner.kwargs[0].value.value
        if not isinstance(attribute, str) or "." in attribute or attribute.isdigit():
            return None
        separator = str(node.args[0].value) if node.args else ""  # type: ignore[attr-defined]
        getter = make_attrgetter(self.environment, attribute)
        values_of = self.build(inner.node)

        def joined(scope: Scope) -> Any:
            values = values_of(scope)
            if type(values) is not list:
                return general(scope)
            texts = []
            for item in values:
                if type(item) is dict and attribute in item:
                    value = item[attribute]
                else:
                    value = getter(item)
                texts.append(value if type(value) is str else str(value))
            return separator.join(texts)

        return joined

    @staticmethod
    def _select_attribute(
        subject: Closure,
        attribute: str,
        test: Callable[..., bool],
        argument: Closure,
        getter: Callable[[Any], Any],
        keep: bool,
    ) -> Closure:
        """``selectattr('role', 'equalto', 'assistant')`` and ``in``/``ne``: a dict item's
        value read directly and tested inline, one call per item instead of four (Jinja's
        getter and test, for any other item)."""

        def select(scope: Scope) -> Any:
            values, other = subject(scope), argument(scope)

            def matches(item: Any) -> bool:
                value = (
                    item[attribute] if type(item) is dict and attribute in item else getter(item)
                )
                return bool(test(value, other)) is keep

            return _selected(values, matches)

        return select

    def _select(self, node: nodes.Filter, subject: Closure) -> Closure | None:
        if node.kwargs or node.dyn_args or node.dyn_kwargs:
            return None
        args = list(node.args)
        getter: Callable[[Any], Any] = _identity
        attribute_name: Any = None
        if node.name.endswith("attr"):
            attribute = args.pop(0) if args else None
            if not isinstance(attribute, nodes.Const):
                return None
            attribute_name = attribute.value
            getter = make_attrgetter(self.environment, attribute_name)
        keep = node.name.startswith("select")
        if not args:
            return lambda scope: _selected(subject(scope), lambda item: bool(getter(item)) is keep)
        name = args.pop(0)
        test: Any = (
            self.environment.tests.get(name.value) if isinstance(name, nodes.Const) else None
        )
        if test is None:
            return None
        prefix, rest = self._prefix(test), [self.build(arg) for arg in args]
        simple = (
            isinstance(attribute_name, str)
            and "." not in attribute_name
            and not attribute_name.isdigit()
        )
        if simple and len(rest) == 1 and test in (test_in, operator.eq, operator.ne):
            return self._select_attribute(subject, attribute_name, test, rest[0], getter, keep)

        def select(scope: Scope) -> Any:
            values = subject(scope)
            more = [argument(scope) for argument in rest]
            return _selected(values, lambda item: bool(test(*prefix, getter(item), *more)) is keep)

        return select

    def _Test(self, node: nodes.Test) -> Closure:
        subject = self._none_test(node)
        if subject is not None:  # ``x is none``: one comparison, no test call
            return lambda scope: subject(scope) is None
        function: Any = self.environment.tests.get(node.name)
        if function is None:
            raise Unsupported(f"test {node.name}")
        return self._apply(function, self.build(node.node), node)

    def _Call(self, node: nodes.Call) -> Closure:
        if isinstance(node.node, nodes.Getattr):
            return self._method(node, node.node)
        if not isinstance(node.node, nodes.Name):
            raise Unsupported("call")
        function: Any = self.environment.globals.get(node.node.name)
        if not callable(function):
            raise Unsupported(f"call of {node.node.name}")
        return self._apply(function, None, node)
