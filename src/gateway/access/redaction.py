"""Keeping secrets out of what the gateway says: config errors, URLs shown in /healthz.

Config errors are the easiest place to leak a key: a schema message echoes the offending value
(``'sk-…' is not of type 'object'``), a template error quotes its source, which may hold an
interpolated header. So every secret the config holds (values of secret fields, literal or from
``${VAR}``, and environment values interpolated into headers) is collected *before*
interpolation, and every issue message is scrubbed of them before anyone sees it.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any, Final, ParamSpec, TypeVar
from urllib.parse import urlsplit, urlunsplit

from gateway.config.errors import ConfigError, ConfigIssue, Path
from gateway.providers.adapter import ProviderAdapter
from gateway.providers.auth import Secret

#: Field names whose values are secrets wherever they sit in the config.
SECRET_NAMES: Final = frozenset({"api_key", "key", "token", "password", "secret", "key_sha256"})
_REFERENCE: Final = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}")
_MIN_SECRET: Final = 4  # shorter values would scrub ordinary words out of messages
MASK: Final = "***"


def is_secret_path(path: Path) -> bool:
    """A value at ``path`` is a secret: a secret field, or a header value."""
    return bool(path) and (str(path[-1]) in SECRET_NAMES or "headers" in path[:-1])


def config_secrets(data: Any, environ: Mapping[str, str]) -> set[str]:
    """Every secret a raw (not yet interpolated) config holds or will hold."""
    found: set[str] = set()

    def walk(node: Any, path: Path) -> None:
        if isinstance(node, Mapping):
            for key, value in node.items():
                walk(value, (*path, str(key)))
        elif isinstance(node, list):
            for index, value in enumerate(node):
                walk(value, (*path, index))
        elif is_secret_path(path) and node is not None and not isinstance(node, bool):
            text = str(node)
            references = list(_REFERENCE.finditer(text))
            if not references and str(path[-1]) in SECRET_NAMES:
                found.add(text)
            for match in references:
                found.add(environ.get(match.group("name"), ""))
                found.add(match.group("default") or "")

    walk(data, ())
    return {secret for secret in found if len(secret) >= _MIN_SECRET}


def provider_secrets(data: Any, environ: Mapping[str, str]) -> dict[str, set[str]]:
    """Per provider, the secrets its raw entry holds (its key, env values in its headers)."""
    providers = data.get("providers") if isinstance(data, Mapping) else None
    if not isinstance(providers, Mapping):
        return {}
    return {
        str(name): config_secrets(entry, environ)
        for name, entry in providers.items()
        if isinstance(entry, Mapping)
    }


def with_secrets(adapter: ProviderAdapter, secrets: Iterable[str]) -> ProviderAdapter:
    """The adapter whose ``redact`` also masks ``secrets`` (a key passed in a header)."""
    known = set(adapter.auth.secret_values())
    extra = tuple(Secret(value) for value in sorted(set(secrets) - known))
    if not extra:
        return adapter
    return replace(adapter, auth=replace(adapter.auth, extra=adapter.auth.extra + extra))


def scrub(text: str, secrets: Iterable[str]) -> str:
    for secret in sorted(secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def scrub_issues(issues: Iterable[ConfigIssue], secrets: set[str]) -> list[ConfigIssue]:
    return [
        ConfigIssue(scrub(issue.message, secrets), issue.path, issue.location) if secrets else issue
        for issue in issues
    ]


P = ParamSpec("P")
R = TypeVar("R")


def scrubbed_errors(
    secrets_of: Callable[..., set[str]],
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a config builder: ``secrets_of(*args, **kwargs)`` runs first (on the raw
    document), and a ``ConfigError`` the builder raises leaves with those secrets masked."""

    def decorate(build: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(build)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            secrets = secrets_of(*args, **kwargs)
            try:
                return build(*args, **kwargs)
            except ConfigError as exc:
                raise ConfigError(scrub_issues(exc.issues, secrets)) from None

        return wrapper

    return decorate


def safe_schema_message(validator: str, expected: Any) -> str:
    """A schema message for a secret's path that does not repeat the value."""
    if validator == "type":
        return f"must be of type {expected}"
    if validator == "pattern":
        return f"does not match the pattern {expected}"
    if validator in ("minLength", "maxLength"):
        return "is too short" if validator == "minLength" else "is too long"
    return f"is not valid ({validator})"


#: Schema messages repeat the offending value (``'x' is not of type 'object'``). A mistyped
#: identifier is short and worth showing; a long string may be a secret in the wrong place.
SHOWN_VALUE_CHARS: Final = 16


def hide_long_value(message: str, instance: Any) -> str:
    """``message`` with a long string ``instance`` replaced by "this value"."""
    if isinstance(instance, str) and len(instance) > SHOWN_VALUE_CHARS:
        return message.replace(repr(instance), "this value")
    return message


def shows_value(instance: Any) -> bool:
    """Whether a schema message may show ``instance`` (a scalar that is not a long string)."""
    if isinstance(instance, str):
        return len(instance) <= SHOWN_VALUE_CHARS
    return isinstance(instance, int | float | bool) or instance is None


def public_url(url: str) -> str:
    """A URL without user info or query string, which may carry credentials."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid url>"
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))
