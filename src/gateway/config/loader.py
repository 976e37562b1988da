"""Read YAML with positions, and interpolate ``${VAR}`` / ``${VAR:-default}`` from the environment.

The loader keeps a side table from config path to file position, so every later stage (schema,
cross-references, template compilation) can name ``file:line:col`` without holding ruamel nodes.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path as FilePath
from typing import Any

from dotenv import dotenv_values
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError

from gateway.config.errors import ConfigError, ConfigIssue, Location, Path

_ENV_REFERENCE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}")

#: Fields whose missing variable leaves the provider unusable instead of failing the file:
#: a gateway starts without every provider's key and says which variable to set.
SECRET_FIELDS = frozenset({"api_key", "key", "token"})


@dataclass
class Document:
    """Plain data from one YAML file plus where each path sits in it."""

    data: Any
    name: str = "<config>"
    positions: dict[Path, Location] = field(default_factory=dict)
    missing_secrets: dict[Path, str] = field(default_factory=dict)

    def locate(self, path: Path) -> Location | None:
        """The position of ``path`` or its nearest ancestor that has one (else the file's start)."""
        while True:
            location = self.positions.get(path)
            if location is not None:
                return location
            if not path:
                return Location(self.name, 1, 1)
            path = path[:-1]


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = False
    return yaml


def read_yaml(path: FilePath, *, display_name: str | None = None) -> Document:
    """Parse one YAML file into plain data with positions; syntax errors become a ConfigError."""
    name = display_name or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            [ConfigIssue(f"cannot read config file: {exc.strerror}", (), Location(name, 1, 1))]
        ) from exc
    return parse_yaml(text, name)


def parse_yaml(text: str, name: str) -> Document:
    try:
        root = _yaml().load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        location = Location(name, mark.line + 1, mark.column + 1) if mark else Location(name, 1, 1)
        problem = re.sub(r" with value .*", "", exc.problem or exc.context or "invalid YAML")
        raise ConfigError([ConfigIssue(f"invalid YAML: {problem}", (), location)]) from exc
    except Exception as exc:  # ruamel raises a few non-marked errors (bad unicode)
        message = re.sub(r" with value .*", "", str(exc).splitlines()[0])
        raise ConfigError(
            [ConfigIssue(f"invalid YAML: {message}", (), Location(name, 1, 1))]
        ) from exc
    document = Document(data=None, name=name)
    document.data = _plain(root, (), name, document)
    if document.data is None:
        document.data = {}
    return document


def _plain(node: Any, path: Path, name: str, document: Document) -> Any:
    if isinstance(node, CommentedMap):
        result: dict[str, Any] = {}
        for key, value in node.items():
            child = (*path, str(key))
            line, column = _key_position(node, key)
            document.positions[child] = Location(name, line + 1, column + 1)
            result[str(key)] = _plain(value, child, name, document)
        return result
    if isinstance(node, CommentedSeq):
        items: list[Any] = []
        for index, value in enumerate(node):
            child = (*path, index)
            try:
                line, column = node.lc.item(index)
                document.positions[child] = Location(name, line + 1, column + 1)
            except (KeyError, IndexError, TypeError):
                pass
            items.append(_plain(value, child, name, document))
        return items
    if isinstance(node, str):
        return str(node)
    if isinstance(node, float):  # ruamel's ScalarFloat: plain, so orjson and hashing take it
        return float(node)
    if isinstance(node, int) and not isinstance(node, bool):
        return int(node)
    return node


def _key_position(node: CommentedMap, key: Any) -> tuple[int, int]:
    try:
        line, column = node.lc.key(key)
        return int(line), int(column)
    except (KeyError, TypeError):
        return int(node.lc.line), int(node.lc.col)


def load_env_file(config_path: FilePath) -> dict[str, str]:
    """Variables from ``.env`` beside the config and in the working directory (process env wins)."""
    values: dict[str, str] = {}
    for candidate in (FilePath.cwd() / ".env", config_path.parent / ".env"):
        if candidate.is_file():
            values.update({k: v for k, v in dotenv_values(candidate).items() if v is not None})
    return values


def interpolate(document: Document, environ: Mapping[str, str]) -> list[ConfigIssue]:
    """Replace ``${VAR}`` references in place; return the issues for variables that are unset.

    A missing variable in a secret field (``api_key``) is recorded in ``missing_secrets``
    rather than reported: that provider answers with an error naming the variable.
    """
    issues: list[ConfigIssue] = []

    def substitute(value: str, path: Path) -> str | None:
        missing: list[str] = []

        def replace(match: re.Match[str]) -> str:
            name, default = match.group("name"), match.group("default")
            if name in environ and environ[name] != "":
                return environ[name]
            if default is not None:
                return default
            missing.append(name)
            return ""

        result = _ENV_REFERENCE.sub(replace, value)
        if not missing:
            return result
        if path and path[-1] in SECRET_FIELDS:
            document.missing_secrets[path] = missing[0]
            return None
        issues.append(
            ConfigIssue(
                f"environment variable {missing[0]} is not set and has no default "
                f"(write ${{{missing[0]}:-default}} to give one)",
                path,
                document.locate(path),
            )
        )
        return result

    def walk(node: Any, path: Path) -> Any:
        if isinstance(node, dict):
            for key in list(node):
                value = walk(node[key], (*path, key))
                if value is None and (*path, key) in document.missing_secrets:
                    del node[key]
                else:
                    node[key] = value
            return node
        if isinstance(node, list):
            return [walk(item, (*path, index)) for index, item in enumerate(node)]
        if isinstance(node, str) and "${" in node:
            return substitute(node, path)
        return node

    document.data = walk(document.data, ())
    return issues


def environment_for(
    config_path: FilePath, environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    merged = load_env_file(config_path)
    merged.update(os.environ if environ is None else environ)
    return merged
