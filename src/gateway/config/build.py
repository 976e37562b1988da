"""gateway.yaml → an immutable ``Runtime``: load, interpolate, validate, merge presets, compile.

Every stage collects issues instead of stopping at the first, so one run of ``gateway check``
shows everything wrong with a file. Nothing here touches the running gateway: the caller swaps
the returned snapshot in atomically, or keeps the old one when a ``ConfigError`` is raised.
"""

from __future__ import annotations

import copy
import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path as FilePath
from types import MappingProxyType
from typing import Any, Final

import orjson
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from gateway.access.keys import AccessConfig, compile_access, key_sources
from gateway.access.redaction import (
    config_secrets,
    hide_long_value,
    is_secret_path,
    provider_secrets,
    safe_schema_message,
    scrubbed_errors,
    shows_value,
    with_secrets,
)
from gateway.agents.config import AgentsConfig
from gateway.config.errors import ConfigError, ConfigIssue, Location, Path
from gateway.config.loader import Document, environment_for, interpolate, parse_yaml, read_yaml
from gateway.providers.adapter import ProviderAdapter, compile_adapter, make_auth
from gateway.resilience import DEFAULT_FALLBACK_CLASSES, BreakerPolicy, RetryPolicy
from gateway.responses.normalize import RequestLimits
from gateway.routing import Route, Router, Target, parse_target
from gateway.templating import TemplateError

#: Sections of a provider entry that are template trees: an operator's override replaces a
#: field inside them, a stream rule, a finish reason; never the whole section by accident.
MERGED_SECTIONS: Final = (
    "request",
    "response",
    "stream",
    "errors",
    "finish_reasons",
    "headers",
    "auth",
    "settings",
)


@dataclass(frozen=True)
class ServerSettings:
    hot_reload: bool = True
    reload_poll_interval: float | None = None  # None: use file events
    reload_debounce: float = 0.3
    redis_url: str | None = None


@dataclass(frozen=True)
class Runtime:
    """One compiled config version. Requests keep the snapshot they started with."""

    version: str
    loaded_at: float
    source: str
    files: tuple[str, ...]
    providers: Mapping[str, ProviderAdapter]
    aliases: Mapping[str, Route]
    default_provider: str | None
    router: Router
    agents: AgentsConfig
    limits: RequestLimits
    server: ServerSettings
    retry: Mapping[str, RetryPolicy] = field(default_factory=dict)  # per provider
    breakers: Mapping[str, BreakerPolicy] = field(default_factory=dict)  # per provider
    fingerprints: Mapping[str, str] = field(default_factory=dict)  # "provider local" → hash
    missing_keys: Mapping[str, str] = field(default_factory=dict)  # provider → env variable
    raw: Mapping[str, Any] = field(default_factory=dict)  # the validated file, secrets removed
    access: AccessConfig = field(default_factory=AccessConfig)  # gateway keys and rate limits


# --------------------------------------------------------------------------- schema and presets


@cache
def gateway_schema() -> dict[str, Any]:
    text = (
        resources.files("gateway")
        .joinpath("schema/gateway.schema.json")
        .read_text(encoding="utf-8")
    )
    schema: dict[str, Any] = orjson.loads(text)
    return schema


@cache
def _validator() -> Draft202012Validator:
    return Draft202012Validator(gateway_schema())


def preset_names() -> list[str]:
    folder = resources.files("gateway").joinpath("presets")
    return sorted(
        entry.name.removesuffix(".yaml")
        for entry in folder.iterdir()
        if entry.name.endswith(".yaml")
    )


@cache
def _preset_document(name: str) -> Document:
    text = resources.files("gateway").joinpath(f"presets/{name}.yaml").read_text(encoding="utf-8")
    return parse_yaml(text, f"presets/{name}.yaml")


def _resolve_preset(
    name: str, seen: tuple[str, ...] = ()
) -> tuple[dict[str, Any], dict[Path, Location]]:
    """A preset with its ``extends`` chain merged, and positions for every path."""
    if name in seen:
        raise ConfigError([ConfigIssue(f"preset cycle: {' -> '.join((*seen, name))}")])
    document = _preset_document(name)
    data = copy.deepcopy(document.data)
    positions = dict(document.positions)
    parent = data.pop("extends", None)
    if parent is None:
        return data, positions
    base, base_positions = _resolve_preset(str(parent), (*seen, name))
    return merge(base, data), {**base_positions, **positions}


def merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge mappings; lists and scalars replace; ``null`` deletes the key.

    A template form (a mapping with a ``$`` key) is one value: it replaces, and is replaced,
    whole, so overriding a body field the preset computes with ``$if`` swaps the field.
    """
    result = dict(base)
    for key, value in override.items():
        if value is None:
            result.pop(key, None)
        elif (
            isinstance(value, Mapping)
            and isinstance(result.get(key), Mapping)
            and not _is_form(value)
            and not _is_form(result[key])
        ):
            result[key] = merge(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def _is_form(value: Mapping[str, Any]) -> bool:
    return any(str(key).startswith("$") for key in value)


def _schema_issues(data: Any, document: Document) -> list[ConfigIssue]:
    issues: list[ConfigIssue] = []
    for error in sorted(
        _validator().iter_errors(data), key=lambda e: list(map(str, e.absolute_path))
    ):
        issues.extend(_describe(error, document))
    return issues


def _describe(error: ValidationError, document: Document) -> list[ConfigIssue]:
    path: Path = tuple(error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        schema = error.schema if isinstance(error.schema, Mapping) else {}
        allowed = sorted(schema.get("properties", {}))
        extras = [key for key in error.instance if key not in allowed]
        return [
            ConfigIssue(
                f"unknown key '{key}'" + (f" (allowed: {', '.join(allowed)})" if allowed else ""),
                (*path, key),
                document.locate((*path, key)),
            )
            for key in extras
        ]
    if error.validator == "oneOf" and error.context:
        # Report the branch that got furthest, not "is not valid under any of the given schemas".
        deepest = max(error.context, key=lambda e: (len(e.absolute_path), e.validator != "type"))
        if len(deepest.absolute_path) > len(error.absolute_path) or deepest.validator not in (
            "type",
            "required",
        ):
            return _describe(deepest, document)
        kinds = sorted(
            {
                str(e.schema.get("type", e.validator))
                for e in error.context
                if isinstance(e.schema, Mapping)
            }
        )
        shown = (
            _show(error.instance)
            if shows_value(error.instance) and not is_secret_path(path)
            else "this value"
        )
        return [
            ConfigIssue(
                f"{shown} is not valid here (expected one of: {', '.join(kinds)})",
                path,
                document.locate(path),
            )
        ]
    message = hide_long_value(error.message, error.instance)  # a misplaced key, perhaps
    if is_secret_path(path):  # never repeat a key's value
        message = safe_schema_message(str(error.validator), error.validator_value)
    elif error.validator == "required":
        message = error.message.replace("is a required property", "is required")
    return [ConfigIssue(message, path, document.locate(path))]


def _in_file_order(issues: list[ConfigIssue]) -> list[ConfigIssue]:
    def key(issue: ConfigIssue) -> tuple[str, int, int]:
        where = issue.location
        return (where.file, where.line, where.column) if where else ("", 0, 0)

    return sorted(issues, key=key)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# --------------------------------------------------------------------------- build


def load_runtime(path: str | FilePath, environ: Mapping[str, str] | None = None) -> Runtime:
    """Build a runtime from a file; raise ``ConfigError`` with every issue found."""
    file_path = FilePath(path)
    document = read_yaml(file_path, display_name=_display_name(file_path))
    return build_runtime(
        document, source=str(file_path), environ=environment_for(file_path, environ)
    )


def _display_name(path: FilePath) -> str:
    try:
        return str(path.resolve().relative_to(FilePath.cwd().resolve()))
    except ValueError:
        return str(path)


def _raw_secrets(document: Document, *, source: str, environ: Mapping[str, str]) -> set[str]:
    return config_secrets(document.data, environ)


#: The request bounds a config leaves out.
LIMITS: Final = RequestLimits()


@scrubbed_errors(_raw_secrets)
def build_runtime(document: Document, *, source: str, environ: Mapping[str, str]) -> Runtime:
    sources = key_sources(document.data)  # as written: a key must come from the environment
    secrets = provider_secrets(document.data, environ)  # for redacting upstream echoes
    issues = interpolate(document, environ)
    data = document.data
    if not isinstance(data, dict):
        raise ConfigError(
            [ConfigIssue("the config must be a mapping of sections", (), document.locate(()))]
        )
    env_paths = {issue.path for issue in issues}
    issues.extend(issue for issue in _schema_issues(data, document) if issue.path not in env_paths)
    issues.extend(_default_provider_issues(data, document))
    issues.extend(_alias_target_issues(data, document))
    if issues:
        raise ConfigError(_in_file_order(issues))

    providers, fingerprints, missing = _compile_providers(data, document, issues)
    providers = {name: with_secrets(p, secrets.get(name, ())) for name, p in providers.items()}
    aliases = _compile_aliases(data)
    default_provider = data.get("default_provider")
    access = compile_access(data, sources, document.missing_secrets, document.locate, issues)
    try:
        agents = AgentsConfig.from_dict(data.get("agents"))
    except ValueError as exc:
        issues.append(ConfigIssue(str(exc), ("agents",), document.locate(("agents",))))
        agents = AgentsConfig()
    if issues:
        raise ConfigError(_in_file_order(issues))

    for alias, route in aliases.items():
        fingerprints[f"model {alias}"] = _hash(route)
    for name, channel in agents.channels.items():
        fingerprints[f"channel {name}"] = _hash(channel)
    for entry in data.get("keys") or ():
        fingerprints[f"key {entry['name']}"] = _hash(
            orjson.dumps(
                {"key": _without_secrets(entry), "secret": _secret_digest(entry)},
                option=orjson.OPT_SORT_KEYS,
            )
        )
    server = data.get("server") or {}
    routing = data.get("routing") or {}
    retry_default = RetryPolicy.from_dict(routing.get("retry"))
    breaker_default = BreakerPolicy.from_dict(routing.get("breaker"))
    provider_entries = data["providers"]
    raw = _without_secrets(data)
    version = hashlib.sha256(
        orjson.dumps({"config": raw, "secrets": _secret_digest(data)}, option=orjson.OPT_SORT_KEYS)
    ).hexdigest()[:12]
    return Runtime(
        version=version,
        loaded_at=time.time(),
        source=source,
        files=(source,),
        providers=MappingProxyType(providers),
        aliases=MappingProxyType(aliases),
        default_provider=default_provider,
        router=Router(
            {name: adapter.default_model for name, adapter in providers.items()},
            aliases,
            default_provider,
        ),
        agents=agents,
        limits=RequestLimits(
            max_body_bytes=int(server.get("max_body_bytes", LIMITS.max_body_bytes)),
            max_input_items=int(server.get("max_input_items", LIMITS.max_input_items)),
            max_depth=int(server.get("max_json_depth", LIMITS.max_depth)),
            max_string_chars=int(server.get("max_string_chars", LIMITS.max_string_chars)),
        ),
        server=ServerSettings(
            hot_reload=bool(server.get("hot_reload", True)),
            reload_poll_interval=server.get("reload_poll_interval"),
            reload_debounce=float(server.get("reload_debounce", 0.3)),
            redis_url=server.get("redis_url"),
        ),
        retry=MappingProxyType(
            {
                name: RetryPolicy.from_dict(provider_entries[name].get("retry"), retry_default)
                for name in providers
            }
        ),
        breakers=MappingProxyType(
            {
                name: BreakerPolicy.from_dict(
                    provider_entries[name].get("breaker"), breaker_default
                )
                for name in providers
            }
        ),
        fingerprints=MappingProxyType(fingerprints),
        missing_keys=MappingProxyType(missing),
        access=access,
        raw=raw,
    )


def _default_provider_issues(data: dict[str, Any], document: Document) -> list[ConfigIssue]:
    default = data.get("default_provider")
    providers = data.get("providers")
    if not isinstance(default, str) or not isinstance(providers, dict) or default in providers:
        return []
    return [
        ConfigIssue(
            f"default provider '{default}' is not configured (providers: {', '.join(sorted(providers))})",
            ("default_provider",),
            document.locate(("default_provider",)),
        )
    ]


def _alias_entries(alias: str, spec: Any) -> list[tuple[Any, dict[str, Any], Path]]:
    """An alias's targets as ``(target text, target options, path)``, tolerant of bad shapes."""
    path: Path = ("models", alias)
    if isinstance(spec, str):
        return [(spec, {}, path)]
    if not isinstance(spec, dict):
        return []
    entries: list[tuple[Any, dict[str, Any], Path]] = []
    if "target" in spec:
        entries.append((spec["target"], {}, (*path, "target")))
    for index, item in enumerate(spec.get("targets") or []):
        detail = item if isinstance(item, dict) else {}
        entries.append((detail.get("target", item), detail, (*path, "targets", index)))
    return entries


def _alias_target_issues(data: dict[str, Any], document: Document) -> list[ConfigIssue]:
    """Alias targets naming no configured provider (checked even when the schema failed)."""
    providers = data.get("providers")
    models = data.get("models")
    if not isinstance(providers, dict) or not isinstance(models, dict):
        return []
    issues: list[ConfigIssue] = []
    for alias, spec in models.items():
        for text, _, item_path in _alias_entries(alias, spec):
            parsed = parse_target(text) if isinstance(text, str) else None
            if parsed is not None and parsed[0] not in providers:
                issues.append(
                    ConfigIssue(
                        f"alias target '{text}' names provider '{parsed[0]}', which is not configured "
                        f"(providers: {', '.join(sorted(providers))})",
                        item_path,
                        document.locate(item_path),
                    )
                )
    return issues


def _compile_providers(
    data: dict[str, Any], document: Document, issues: list[ConfigIssue]
) -> tuple[dict[str, ProviderAdapter], dict[str, str], dict[str, str]]:
    providers: dict[str, ProviderAdapter] = {}
    fingerprints: dict[str, str] = {}
    missing: dict[str, str] = {}
    for name, entry in data["providers"].items():
        entry_path: Path = ("providers", name)
        preset = entry.get("preset")
        merged: dict[str, Any]
        positions: dict[Path, Location] = {}
        if preset is not None:
            base, positions = _resolve_preset(str(preset))
            merged = merge(base, {key: value for key, value in entry.items() if key != "preset"})
        else:
            merged = dict(entry)
        routing_timeouts = (data.get("routing") or {}).get("timeouts")
        if routing_timeouts:  # gateway-wide defaults under each provider's own
            merged["timeouts"] = {**routing_timeouts, **(merged.get("timeouts") or {})}
        missing_variable = document.missing_secrets.get((*entry_path, "api_key"))
        if missing_variable:
            missing[name] = missing_variable
        if not merged.get("base_url"):
            issues.append(
                ConfigIssue(
                    "base_url is required (or a preset that has one)",
                    entry_path,
                    document.locate(entry_path),
                )
            )
            continue
        if not merged.get("request"):
            issues.append(
                ConfigIssue(
                    "request is required (or a preset that has one)",
                    entry_path,
                    document.locate(entry_path),
                )
            )
            continue
        try:
            providers[name] = compile_adapter(
                name, merged, make_auth(name, merged, missing_variable)
            )
        except TemplateError as exc:
            where = (*entry_path, *exc.path)
            location = (
                document.positions.get(where)
                or _preset_location(positions, exc.path)
                or document.locate(where)
            )
            issues.append(ConfigIssue(exc.message, where, location))
            continue
        fingerprints[f"provider {name}"] = hashlib.sha256(
            orjson.dumps(
                {"spec": _without_secrets(merged), "key": _secret_digest(merged)},
                option=orjson.OPT_SORT_KEYS,
            )
        ).hexdigest()
    return providers, fingerprints, missing


def _preset_location(positions: Mapping[Path, Location], path: Path) -> Location | None:
    while path:
        if path in positions:
            return positions[path]
        path = path[:-1]
    return None


def _compile_aliases(data: dict[str, Any]) -> dict[str, Route]:
    """Routes for ``models:``; the schema and ``_alias_target_issues`` have vetted every target."""
    aliases: dict[str, Route] = {}
    defaults = RetryPolicy.from_dict((data.get("routing") or {}).get("retry"))
    for alias, spec in (data.get("models") or {}).items():
        options: dict[str, Any] = spec if isinstance(spec, dict) else {}
        params = dict(options.get("params") or {})
        targets: list[Target] = []
        for text, detail, _ in _alias_entries(alias, spec):
            provider, model = parse_target(text) or ("", "")
            targets.append(
                Target(
                    provider,
                    model,
                    MappingProxyType({**params, **(detail.get("params") or {})}),
                    weight=float(detail.get("weight", 1.0)),
                    on=frozenset(detail["on"]) if "on" in detail else DEFAULT_FALLBACK_CLASSES,
                )
            )
        aliases[alias] = Route(
            alias,
            alias,
            tuple(targets),
            strategy=str(options.get("strategy", "fallback")),
            retry=RetryPolicy.from_dict(options["retry"], defaults)
            if options.get("retry")
            else None,
            timeouts={k: float(v) for k, v in (options.get("timeouts") or {}).items()},
        )
    return aliases


_SECRET_KEYS: Final = frozenset({"api_key", "key", "key_sha256", "token"})


def _without_secrets(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {
            key: ("***" if key in _SECRET_KEYS else _without_secrets(item))
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_without_secrets(item) for item in value]
    return value


def _secret_digest(value: Any) -> str:
    """A digest of every secret, so a rotated key changes the version without showing it."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, Mapping):
            for key, item in node.items():
                if key in _SECRET_KEYS and isinstance(item, str):
                    found.append(item)
                else:
                    walk(item)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(value)
    return hashlib.sha256("\x00".join(found).encode()).hexdigest()


def _hash(value: Any) -> str:
    return hashlib.sha256(repr(value).encode()).hexdigest()
