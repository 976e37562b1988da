"""The hot path, compiled: the modules ``scripts/compile_native.py`` builds with mypyc, and
whether this process runs them compiled.

Every request and stream chunk runs through a few modules: the template engine and its
expressions, the provider adapter, request parsing, the Responses emitter, SSE framing. They
are plain typed Python that mypyc compiles into C extensions beside their sources (``make
install`` does it), and Python imports an extension in preference to the source of the same
name: the same code, with a third to two fifths fewer instructions in those stages
(docs/benchmark.md).

The sources stay the truth. Without a C compiler the gateway runs them as they are, only
slower. An extension built from an older source would run stale code, so the build records a
digest of each source (``native.json``) and ``status()`` compares them.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

#: The compiled modules: typed for mypy strict, and within what mypyc asks of the code (the
#: README's "The hot path, compiled" lists it).
COMPILED: Final = (
    "gateway.expressions",
    "gateway.templating",
    "gateway.providers.decoding",
    "gateway.responses.emitter",
    "gateway.responses.normalize",
    "gateway.responses.sse",
    "gateway.providers.adapter",
    "gateway.routing",
    "gateway.resilience",
    "gateway.ids",
    "gateway.api.body",
    "gateway.api.disconnect",
    "gateway.api.json_answer",
    "gateway.api.event_stream",
    "gateway.access.guard",
    "gateway.access.middleware",
    "gateway.observability.context",
    "gateway.observability.record",
    "gateway.observability.hub",
    "gateway.observability.metrics",
    "gateway.observability.middleware",
    "gateway.providers.http1",
    "gateway.providers.call",
    "gateway.api.responses",
    "gateway.access.policy",
    "gateway.providers.auth",
)

PACKAGE_DIR: Final = Path(__file__).parent
DIGESTS: Final = PACKAGE_DIR / "native.json"  # written by the build, beside the extensions


@dataclass(frozen=True)
class NativeStatus:
    compiled: tuple[str, ...]  # running as C extensions built from the sources beside them
    source: tuple[str, ...]  # running from source: not built
    stale: tuple[str, ...]  # extensions built from another version of their source


def source_path(module: str) -> Path:
    """``gateway.responses.sse`` → ``<package>/responses/sse.py``."""
    return PACKAGE_DIR.joinpath(*module.split(".")[1:]).with_suffix(".py")


def source_digest(module: str) -> str:
    return hashlib.sha256(source_path(module).read_bytes()).hexdigest()


def recorded_digests() -> dict[str, str]:
    """What the last build compiled (module → source digest); empty if none ran."""
    try:
        recorded = json.loads(DIGESTS.read_text())
    except (OSError, ValueError):
        return {}
    return {str(key): str(value) for key, value in recorded.items()}


def status(
    modules: tuple[str, ...] = COMPILED, digests: Mapping[str, str] | None = None
) -> NativeStatus:
    """How each module runs; found without importing it (a module's spec names its file)."""
    recorded = recorded_digests() if digests is None else digests
    compiled: list[str] = []
    source: list[str] = []
    stale: list[str] = []
    for module in modules:
        spec = importlib.util.find_spec(module)
        origin = spec.origin if spec is not None else None
        if origin is None or origin.endswith(".py"):
            source.append(module)
        elif recorded.get(module) != source_digest(module):
            stale.append(module)
        else:
            compiled.append(module)
    return NativeStatus(tuple(compiled), tuple(source), tuple(stale))


def report(logger: logging.Logger, found: NativeStatus | None = None) -> NativeStatus:
    """Say at startup how the hot path runs: stale code is a warning, source an info."""
    found = status() if found is None else found
    if found.stale:
        logger.warning(
            "compiled modules older than their sources, running old code: %s; rebuild them "
            "with `make install` (scripts/compile_native.py)",
            ", ".join(found.stale),
        )
    if found.source:
        logger.info(
            "hot path partly or wholly from source (slower): %s; "
            "scripts/compile_native.py compiles it",
            ", ".join(found.source),
        )
    if found.compiled and not found.stale and not found.source:
        logger.info("hot path compiled: %d modules", len(found.compiled))
    return found
