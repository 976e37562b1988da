"""The holder of the current runtime snapshot, swapped atomically on reload.

Reading ``store.current`` is one attribute load: a request takes the snapshot once and keeps
it to the end, so a reload never changes a request or stream in flight.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from gateway.config.build import Runtime, load_runtime
from gateway.config.errors import ConfigError

logger = logging.getLogger("gateway.config")


@dataclass(frozen=True)
class ReloadError:
    at: float
    errors: tuple[str, ...]


def describe_changes(old: Runtime, new: Runtime) -> list[str]:
    """``+model fast``, ``~provider claude``, ``-channel x``: what a reload changed."""
    changes: list[str] = []
    for name in sorted(set(old.fingerprints) | set(new.fingerprints)):
        before, after = old.fingerprints.get(name), new.fingerprints.get(name)
        if before is None:
            changes.append(f"+{name}")
        elif after is None:
            changes.append(f"-{name}")
        elif before != after:
            changes.append(f"~{name}")
    return changes


class RuntimeStore:
    def __init__(
        self, path: str, runtime: Runtime, environ: Mapping[str, str] | None = None
    ) -> None:
        self.path = path
        self.current = runtime
        self.last_error: ReloadError | None = None
        self.reloads_ok = 0
        self.reloads_failed = 0
        self._environ = environ
        self._listeners: list[Callable[[Runtime, Runtime], None]] = []

    @classmethod
    def from_file(cls, path: str, environ: Mapping[str, str] | None = None) -> RuntimeStore:
        return cls(path, load_runtime(path, environ), environ)

    def on_swap(self, listener: Callable[[Runtime, Runtime], None]) -> None:
        self._listeners.append(listener)

    def reload(self) -> bool:
        """Build a new runtime from the file; swap it in, or keep the old one and record why."""
        started = time.perf_counter()
        try:
            runtime = load_runtime(self.path, self._environ)
        except ConfigError as exc:
            self.reloads_failed += 1
            self.last_error = ReloadError(time.time(), tuple(str(issue) for issue in exc.issues))
            for issue in exc.issues:
                logger.error(
                    "config reload failed, keeping version %s: %s", self.current.version, issue
                )
            return False
        old = self.current
        self.last_error = None
        self.reloads_ok += 1
        if runtime.version == old.version:
            logger.info("config reloaded: version %s unchanged", old.version)
            return True
        self.current = runtime
        changes = describe_changes(old, runtime)
        logger.info(
            "config reloaded: version %s -> %s (%s) in %.1f ms",
            old.version,
            runtime.version,
            ", ".join(changes) or "no visible change",
            (time.perf_counter() - started) * 1000,
        )
        for listener in self._listeners:
            listener(old, runtime)
        return True
