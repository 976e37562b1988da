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
from jinja2.filters import make_attrgetter
from jinja2.nodes import EvalContext
from jinja2.runtime import ChainableUndefined, Undefined, new_context
from jinja2.sandbox import SandboxedEnvironment
from jinja2.utils import _PassArg

Scope = Mapping[str, Any]
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
_CONSTANT_NAMES: Final = frozenset({"true", "True", "false", "False", "none", "None"})


_SELECTS: Final = frozenset({"select", "reject", "selectattr", "rejectattr"})


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
            inner = self.condition(node.node)
            return lambda scope: not inner(scope)
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

    def _path(self, node: nodes.Node, missing: Any = MISSING) -> Closure | None:
        """``name.key[0].key``: constant keys from a scope name, read in one loop. A key that
        a mapping lacks reads as ``missing``."""
        keys: list[Any] = []
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
        name = node.name if isinstance(node, nodes.Name) else None
        if name is None or name in self.environment.globals or name in _CONSTANT_NAMES:
            return None
        keys.reverse()
        # Unrolled for the usual one or two keys: a loop costs more than the lookups.
        if len(keys) == 1:
            key = keys[0]

            def walk_one(scope: Scope) -> Any:
                value = scope.get(name, missing)
                return value.get(key, missing) if type(value) is dict else lookup(value, key)

            return walk_one
        if len(keys) == 2:
            first, second = keys

            def walk_two(scope: Scope) -> Any:
                value = scope.get(name, missing)
                value = value.get(first, missing) if type(value) is dict else lookup(value, first)
                return value.get(second, missing) if type(value) is dict else lookup(value, second)

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
        if name in self.environment.globals or name in _CONSTANT_NAMES:
            return None
        return name

    def _CondExpr(self, node: nodes.CondExpr) -> Closure:
        test = self.condition(node.test)
        then = self.build(node.expr1)
        if node.expr2 is None or isinstance(node.expr2, nodes.Const):
            # ``a if b else none``: the usual form, one call fewer.
            value = MISSING if node.expr2 is None else node.expr2.value
            return lambda scope: then(scope) if test(scope) else value
        otherwise = self.build(node.expr2)
        return lambda scope: then(scope) if test(scope) else otherwise(scope)

    def _logic(
        self, node: nodes.And | nodes.Or, operand: Callable[[nodes.Node], Closure], missing: Any
    ) -> Closure:
        left, right = operand(node.left), operand(node.right)
        if isinstance(node, nodes.Or):
            return lambda scope: left(scope) or right(scope)
        name = self._scope_name(node.left)
        if name is not None:  # ``choice and choice.delta.content``: the name read inline
            return lambda scope: scope.get(name, missing) and right(scope)
        return lambda scope: left(scope) and right(scope)

    def _And(self, node: nodes.And) -> Closure:
        return self._logic(node, self.build, MISSING)

    def _Or(self, node: nodes.Or) -> Closure:
        return self._logic(node, self.build, MISSING)

    def _Not(self, node: nodes.Not) -> Closure:
        inner = self.condition(node.node)
        return lambda scope: not inner(scope)

    def _Neg(self, node: nodes.Neg) -> Closure:
        inner = self.build(node.node)
        return lambda scope: -inner(scope)

    def _Compare(self, node: nodes.Compare) -> Closure:
        first = self.build(node.expr)
        steps = [(_COMPARE[operand.op], self.build(operand.expr)) for operand in node.ops]
        if len(steps) == 1:  # ``a == b``: no chain
            function, right = steps[0]
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

    _Add = _Sub = _Mul = _Div = _FloorDiv = _Mod = _binary

    def _Concat(self, node: nodes.Concat) -> Closure:
        parts = [self.build(part) for part in node.nodes]
        return lambda scope: "".join(str(part(scope)) for part in parts)

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

    def _select(self, node: nodes.Filter, subject: Closure) -> Closure | None:
        if node.kwargs or node.dyn_args or node.dyn_kwargs:
            return None
        args = list(node.args)
        getter: Callable[[Any], Any] = _identity
        if node.name.endswith("attr"):
            attribute = args.pop(0) if args else None
            if not isinstance(attribute, nodes.Const):
                return None
            getter = make_attrgetter(self.environment, attribute.value)
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

        def select(scope: Scope) -> Any:
            values = subject(scope)
            more = [argument(scope) for argument in rest]
            return _selected(values, lambda item: bool(test(*prefix, getter(item), *more)) is keep)

        return select

    def _Test(self, node: nodes.Test) -> Closure:
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
