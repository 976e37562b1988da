"""Gateway keys: who may call, compiled once per config version from ``keys:`` and ``limits:``.

A key is never kept in memory as text: the runtime holds its SHA-256 digest only, so neither a
snapshot, a repr nor a traceback can show it. A presented key is hashed and compared with every
configured digest in constant time (``hmac.compare_digest``), so neither timing nor early exits
say how close a guess was.

The file must never hold a key in plain text: ``key:`` is accepted only as a whole
``${VARIABLE}`` reference (no literal, no ``:-default``), or ``key_sha256:`` holds its digest.
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType
from typing import Any, Final

from gateway.config.errors import ConfigIssue, Path
from gateway.routing import parse_target

#: A key field must be exactly one environment reference: ``${TEAM_A_KEY}``.
_ENV_ONLY: Final = re.compile(r"^\$\{[A-Za-z_][A-Za-z0-9_]*\}$")


@dataclass(frozen=True)
class Rate:
    """Requests and tokens per minute; ``None`` means unlimited."""

    rpm: int | None = None
    tpm: int | None = None

    def __bool__(self) -> bool:
        return self.rpm is not None or self.tpm is not None


@dataclass(frozen=True)
class ModelRate:
    """A limit on a model name pattern (an alias, ``provider:model`` or a glob of either)."""

    pattern: str
    matches: Callable[[str], object]
    rate: Rate


@dataclass(frozen=True)
class Patterns:
    """Glob patterns (``openai:*``, ``fast``) compiled into one matcher."""

    sources: tuple[str, ...]
    matches: Callable[[str], object]

    @classmethod
    def of(cls, sources: Sequence[str]) -> Patterns:
        return cls(tuple(sources), _matcher(sources))


def _matcher(patterns: Sequence[str]) -> Callable[[str], object]:
    if not patterns:
        return lambda name: None
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns)).match


@dataclass(frozen=True)
class Principal:
    """The caller of one request, as ``request.state.principal``.

    ``agent_ids``, ``models`` and ``providers`` are ``None`` when the key may use any.
    """

    name: str
    admin: bool = False
    agent_ids: frozenset[str] | None = None
    models: Patterns | None = None
    providers: frozenset[str] | None = None
    rate: Rate = Rate()
    model_rates: tuple[ModelRate, ...] = ()
    authenticated: bool = True

    @property
    def restricted(self) -> bool:
        return self.models is not None or self.providers is not None


@dataclass(frozen=True)
class AccessConfig:
    """Keys and limits of one config version. ``open``: no ``keys:``, anyone may call."""

    declared: bool = False  # a ``keys:`` section with at least one entry
    digests: tuple[tuple[bytes, Principal], ...] = ()
    disabled: Mapping[str, str] = field(default_factory=dict)  # key name → unset env variable
    anonymous: Principal = Principal("anonymous", authenticated=False)
    model_rates: tuple[ModelRate, ...] = ()  # shared by every caller of the model

    @property
    def open(self) -> bool:
        return not self.declared

    @cached_property  # asked on every request; the config is immutable
    def limited(self) -> bool:
        """Whether any rate limit exists at all (otherwise the limiter is never consulted)."""
        return bool(self.model_rates) or any(
            p.rate or p.model_rates for p in (self.anonymous, *(p for _, p in self.digests))
        )

    def authenticate(self, token: str) -> Principal | None:
        """The principal a presented key belongs to, compared in constant time."""
        presented = hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()
        found: Principal | None = None
        for digest, principal in self.digests:
            if hmac.compare_digest(presented, digest):
                found = principal
        return found


OPEN: Final = AccessConfig()


# --------------------------------------------------------------------------- compile


def key_sources(data: Any) -> dict[int, str]:
    """The ``keys[i].key`` strings as written, before ``${VAR}`` interpolation replaces them.

    ``build_runtime`` calls this on the raw document so ``compile_access`` can tell a key that
    came from the environment from one written in the file.
    """
    keys = data.get("keys") if isinstance(data, dict) else None
    if not isinstance(keys, list):
        return {}
    return {
        index: item["key"]
        for index, item in enumerate(keys)
        if isinstance(item, dict) and isinstance(item.get("key"), str)
    }


def _rate(spec: Mapping[str, Any] | None, fallback: Rate = Rate()) -> Rate:
    spec = spec or {}
    rpm, tpm = spec.get("rpm", fallback.rpm), spec.get("tpm", fallback.tpm)
    return Rate(None if rpm is None else int(rpm), None if tpm is None else int(tpm))


def _model_rates(spec: Mapping[str, Any] | None) -> tuple[ModelRate, ...]:
    return tuple(
        ModelRate(str(pattern), _matcher([str(pattern)]), _rate(rate))
        for pattern, rate in ((spec or {}).get("models") or {}).items()
    )


def compile_access(
    data: Mapping[str, Any],
    sources: Mapping[int, str],
    missing_secrets: Mapping[Path, str],
    locate: Callable[[Path], Any],
    issues: list[ConfigIssue],
) -> AccessConfig:
    """``keys:`` and ``limits:`` → an ``AccessConfig``; problems are appended to ``issues``.

    No message ever includes a key's value: they name the entry and what to write instead.
    """
    limits = data.get("limits") or {}
    default_rate = _rate(limits)
    providers = set(data.get("providers") or {})
    aliases = set(data.get("models") or {})
    entries = data.get("keys") or []
    digests: list[tuple[bytes, Principal]] = []
    disabled: dict[str, str] = {}
    seen_names: dict[str, int] = {}
    seen_digests: dict[bytes, str] = {}

    def issue(message: str, path: Path) -> None:
        issues.append(ConfigIssue(message, path, locate(path)))

    for index, entry in enumerate(entries):
        path: Path = ("keys", index)
        name = str(entry["name"])
        if name in seen_names:
            issue(f"key name '{name}' is already used by keys[{seen_names[name]}]", (*path, "name"))
        seen_names.setdefault(name, index)
        digest = _digest_of(entry, index, sources, missing_secrets, disabled, issue)
        for provider in entry.get("providers") or ():
            if provider not in providers:
                issue(
                    f"key '{name}' allows provider '{provider}', which is not configured "
                    f"(providers: {', '.join(sorted(providers))})",
                    (*path, "providers"),
                )
        for pattern in entry.get("models") or ():
            _check_model_pattern(str(pattern), providers, aliases, (*path, "models"), issue)
        principal = Principal(
            name=name,
            admin=bool(entry.get("admin", False)),
            agent_ids=frozenset(entry["agents"]) if "agents" in entry else None,
            models=Patterns.of([str(p) for p in entry["models"]]) if "models" in entry else None,
            providers=frozenset(entry["providers"]) if "providers" in entry else None,
            rate=_rate(entry.get("limits"), default_rate),
            model_rates=_model_rates(entry.get("limits")),
        )
        if digest is None:
            continue
        if digest in seen_digests:
            issue(f"key '{name}' has the same value as key '{seen_digests[digest]}'", path)
            continue
        seen_digests[digest] = name
        digests.append((digest, principal))
    for pattern in limits.get("models") or {}:
        _check_model_pattern(str(pattern), providers, aliases, ("limits", "models", pattern), issue)
    return AccessConfig(
        declared=bool(entries),
        digests=tuple(digests),
        disabled=MappingProxyType(disabled),
        anonymous=Principal("anonymous", rate=default_rate, authenticated=False),
        model_rates=_model_rates(limits),
    )


def _digest_of(
    entry: Mapping[str, Any],
    index: int,
    sources: Mapping[int, str],
    missing_secrets: Mapping[Path, str],
    disabled: dict[str, str],
    issue: Callable[[str, Path], None],
) -> bytes | None:
    name = str(entry["name"])
    path: Path = ("keys", index)
    key_path: Path = (*path, "key")
    source = sources.get(index)
    has_key = source is not None
    if has_key and "key_sha256" in entry:
        issue(f"key '{name}' sets both key and key_sha256; keep one", path)
        return None
    if has_key:
        if not _ENV_ONLY.match(str(source)):
            issue(
                f"key '{name}' is written in the file; write key: ${{VARIABLE}} and set the "
                "variable in the environment or .env, or store the key's hash in key_sha256",
                key_path,
            )
            return None
        if key_path in missing_secrets:
            disabled[name] = missing_secrets[key_path]
            return None
        value = str(entry.get("key", ""))
        if not value:
            disabled[name] = str(source)[2:-1]
            return None
        return hashlib.sha256(value.encode("utf-8", "surrogateescape")).digest()
    if "key_sha256" in entry:
        return bytes.fromhex(str(entry["key_sha256"]))
    issue(f"key '{name}' needs key: ${{VARIABLE}} or key_sha256", path)
    return None


def _check_model_pattern(
    pattern: str,
    providers: set[str],
    aliases: set[str],
    path: Path,
    issue: Callable[[str, Path], None],
) -> None:
    """A ``provider:model`` pattern must name a configured provider (typos refuse everything)."""
    if pattern in aliases:
        return
    parsed = parse_target(pattern)
    if parsed is None:
        return
    provider = parsed[0]
    if any(char in provider for char in "*?[") or provider in providers:
        return
    issue(
        f"'{pattern}' names provider '{provider}', which is not configured "
        f"(providers: {', '.join(sorted(providers))})",
        path,
    )
