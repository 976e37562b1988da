"""Static checks of every provider template, for ``gateway check`` before deploy.

A Jinja name that is not in scope renders as nothing, so a typo such as ``req.mesages`` or
``evnt.delta`` silently drops a field at run time. Each template section is rendered with a
known set of names (the adapter builds these scopes), plus what the tree binds itself with
``$each ... as``, ``$let`` and ``request.let``; anything else is reported, as are unknown
filters and tests, with the ``file:line:col`` of the template (in the preset's own file when
the template comes from a preset).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path as FilePath
from typing import Any, Final

from jinja2 import TemplateSyntaxError

from gateway.config.errors import ConfigIssue, Location, Path
from gateway.config.loader import Document, environment_for, interpolate, read_yaml
from gateway.templating import ENV, undeclared_names, unknown_filters, unknown_tests

#: The names each section's templates are rendered with (see ``providers.adapter``).
SECTION_NAMES: Final[Mapping[str, frozenset[str]]] = {
    "request": frozenset({"req", "model", "stream", "provider"}),
    "response": frozenset({"body", "req", "provider"}),
    "stream": frozenset({"event", "sse", "req", "provider"}),
    "errors": frozenset({"body", "status", "text", "provider"}),
}

#: Keys under a section that are data, not templates.
_NOT_TEMPLATES: Final = {
    "request": frozenset({"method"}),
    "stream": frozenset({"framing", "done_data", "terminal"}),
    "errors": frozenset({"statuses"}),
    "response": frozenset(),
}

_MARKERS: Final = ("{{", "{%", "{#")
_SLOTS: Final = ("$each", "$if", "$switch", "if")  # form keys whose value is an expression


@dataclass(frozen=True)
class TemplateUse:
    """One template string, where it sits and which names are in scope there."""

    path: Path  # inside the provider entry, e.g. ("request", "body", "messages", "$each")
    source: str  # Jinja text, an expression slot wrapped as ``{{ expr }}``
    names: frozenset[str]


def template_uses(spec: Mapping[str, Any]) -> Iterator[TemplateUse]:
    """Every template in a merged provider entry with the names in scope at its place."""
    for section, names in SECTION_NAMES.items():
        tree = spec.get(section)
        if not isinstance(tree, Mapping):
            continue
        scope = set(names)
        if section == "request" and isinstance(tree.get("let"), Mapping):
            for name, binding in tree["let"].items():  # each sees the ones before it
                yield from _walk(binding, (section, "let", name), frozenset(scope))
                scope.add(str(name))
        for key, value in tree.items():
            if key in _NOT_TEMPLATES[section] or (section == "request" and key == "let"):
                continue
            if section == "stream" and key == "discriminator" and isinstance(value, str):
                yield TemplateUse((section, key), _as_expression(value), frozenset(scope))
                continue
            yield from _walk(value, (section, key), frozenset(scope))


def _as_expression(value: str) -> str:
    return value if any(marker in value for marker in _MARKERS) else "{{ " + value + " }}"


def _walk(tree: Any, path: Path, names: frozenset[str]) -> Iterator[TemplateUse]:
    if isinstance(tree, str):
        if any(marker in tree for marker in _MARKERS):
            yield TemplateUse(path, tree, names)
        return
    if isinstance(tree, list):
        for index, item in enumerate(tree):
            yield from _walk(item, (*path, index), names)
        return
    if not isinstance(tree, Mapping):
        return
    form = next(iter(tree), None)
    if not (isinstance(form, str) and form.startswith("$")):
        for key, value in tree.items():
            yield from _walk(value, (*path, key), names)
        return
    if form == "$literal":
        return
    for slot in _SLOTS:
        if slot == "if" and form != "$each":
            continue
        value = tree.get(slot)
        if isinstance(value, str):
            inner = names | {str(tree.get("as", "item")), "loop_index"} if slot == "if" else names
            yield TemplateUse((*path, slot), _as_expression(value), inner)
    if form == "$each":
        inner = names | {str(tree.get("as", "item")), "loop_index"}
        yield from _walk(tree.get("do"), (*path, "do"), inner)
    elif form == "$let":
        bindings = tree.get("$let")
        scope = set(names)
        if isinstance(bindings, Mapping):
            for name, binding in bindings.items():
                yield from _walk(binding, (*path, "$let", name), frozenset(scope))
                scope.add(str(name))
        yield from _walk(tree.get("in"), (*path, "in"), frozenset(scope))
    elif form == "$if":
        for branch in ("then", "else"):
            yield from _walk(tree.get(branch), (*path, branch), names)
    elif form == "$switch":
        cases = tree.get("cases")
        if isinstance(cases, Mapping):
            for key, value in cases.items():
                yield from _walk(value, (*path, "cases", key), names)
        yield from _walk(tree.get("default"), (*path, "default"), names)
    elif form in ("$concat", "$merge"):
        yield from _walk(tree.get(form), (*path, form), names)


def problems(use: TemplateUse) -> list[str]:
    """What is wrong with one template: unknown variables, filters and tests."""
    found: list[str] = []
    source = use.source.strip()
    for name in sorted(unknown_filters(use.source)):
        found.append(
            f"unknown filter '{name}' in {source!r} (helpers: {', '.join(sorted(ENV.filters))})"
        )
    for name in sorted(unknown_tests(use.source)):
        found.append(f"unknown test '{name}' in {source!r}")
    if found:  # Jinja cannot analyse names in a template it cannot compile
        return found
    try:
        unknown = undeclared_names(use.source) - use.names
    except TemplateSyntaxError as exc:
        return [f"template error in {source!r}: {exc.message}"]
    known = ", ".join(sorted(use.names))
    return [
        f"unknown variable '{name}' in {source!r} (known here: {known})" for name in sorted(unknown)
    ]


def lint_provider(
    name: str,
    spec: Mapping[str, Any],
    document: Document,
    preset_positions: Mapping[Path, Location],
) -> list[ConfigIssue]:
    """Issues in one merged provider entry, located in the config or in the preset's file."""
    from gateway.config.build import _preset_location

    issues: list[ConfigIssue] = []
    for use in template_uses(spec):
        messages = problems(use)
        if not messages:
            continue
        where: Path = ("providers", name, *use.path)
        location = (
            document.positions.get(where)
            or _preset_location(preset_positions, use.path)
            or document.locate(where)
        )
        issues.extend(ConfigIssue(message, where, location) for message in messages)
    return issues


def lint_document(document: Document) -> list[ConfigIssue]:
    """Template issues of every provider in a parsed (and interpolated) config."""
    from gateway.config.build import _resolve_preset, merge
    from gateway.config.errors import ConfigError

    data = document.data
    providers = data.get("providers") if isinstance(data, Mapping) else None
    if not isinstance(providers, Mapping):
        return []
    issues: list[ConfigIssue] = []
    for name, entry in providers.items():
        if not isinstance(entry, Mapping):
            continue
        positions: Mapping[Path, Location] = {}
        spec: Mapping[str, Any] = entry
        preset = entry.get("preset")
        if isinstance(preset, str):
            try:
                base, positions = _resolve_preset(preset)
            except (OSError, ConfigError):  # an unknown preset, a cycle: the build reports it
                continue
            spec = merge(base, {key: value for key, value in entry.items() if key != "preset"})
        issues.extend(lint_provider(str(name), spec, document, positions))
    return issues


def lint_file(path: str | FilePath, environ: Mapping[str, str] | None = None) -> list[ConfigIssue]:
    """Template issues of a config file; a file that does not parse has none to report here."""
    from gateway.config.build import _display_name
    from gateway.config.errors import ConfigError

    file_path = FilePath(path)
    try:
        document = read_yaml(file_path, display_name=_display_name(file_path))
    except ConfigError:
        return []
    interpolate(document, environment_for(file_path, environ))
    return lint_document(document)
