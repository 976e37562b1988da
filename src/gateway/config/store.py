"""The holder of the current runtime snapshot, swapped atomically on reload.

Reading ``store.current`` is one attribute load: a request takes the snapshot once and keeps
it to the end, so a reload never changes a request or stream in flight.

Whether to reload is decided by a digest of the *content* of every input file (the config as
its path resolves now, and the ``.env`` files it reads), not by file events or mtimes: a
Kubernetes ConfigMap swap, an editor's rename-save and a touch all look different as events,
and only the content says whether anything changed.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from gateway.config.build import Runtime, load_runtime
from gateway.config.errors import ConfigError

logger = logging.getLogger("gateway.config")


@dataclass(frozen=True)
class ReloadError:
    at: float
    errors: tuple[str, ...]


def describe_changes(old: Runtime, new: Runtime) -> list[str]:
    """``+model fast``, ``~provider local``, ``-channel x``: what a reload changed."""
    changes: list[str] = []
    for name in sorted(set(old.fingerprints) | set(new.fingerprints)):
        before, after = old.fingerprints.get(name), new.fingerprints.get(name)
        if before is None:
            changes.append(f"+{name}")
        elif after is None:
            changes.append(f"-{name}")
        elif before != after:
            changes.append(f"~{name}")
    covered = {"providers", "models", "agents", "version"}  # reported item by item above
    for section in sorted((set(old.raw) | set(new.raw)) - covered):
        if old.raw.get(section) != new.raw.get(section):
            changes.append(f"~{section}")
    return changes


def input_files(config_path: str, included: tuple[str, ...] = ()) -> tuple[Path, ...]:
    """The files a build reads: the config, files it includes, and the ``.env`` files."""
    path = Path(config_path).absolute()
    candidates = (
        path,
        *(Path(name).absolute() for name in included),
        Path.cwd().absolute() / ".env",
        path.parent / ".env",
    )
    return tuple(dict.fromkeys(candidates))


def input_digest(files: tuple[Path, ...]) -> str:
    """A digest of what the files hold now (through symlinks); a missing file counts."""
    digest = hashlib.sha256()
    for path in files:
        digest.update(str(path).encode() + b"\x00")
        try:
            digest.update(path.read_bytes())
        except OSError:
            digest.update(b"\x00<missing>")
        digest.update(b"\x00")
    return digest.hexdigest()


class RuntimeStore:
    def __init__(
        self,
        path: str,
        runtime: Runtime,
        environ: Mapping[str, str] | None = None,
        digest: str | None = None,
    ) -> None:
        self.path = path
        self.current = runtime
        self.last_error: ReloadError | None = None
        self.reloads_ok = 0
        self.reloads_failed = 0
        self.digest = digest  # the input digest the last (attempted) build read
        self.watching = "off"  # off | events | polling, set by the reloader, shown in /healthz
        self._environ = environ
        self._listeners: list[Callable[[Runtime, Runtime], None]] = []
        self._lock = threading.Lock()

    @classmethod
    def from_file(cls, path: str, environ: Mapping[str, str] | None = None) -> RuntimeStore:
        digest = input_digest(input_files(path))  # before reading: a change during it is seen
        runtime = load_runtime(path, environ)
        if len(runtime.files) > 1:
            digest = input_digest(input_files(path, runtime.files))
        return cls(path, runtime, environ, digest)

    def inputs(self) -> tuple[Path, ...]:
        """The files to watch: what the current snapshot was built from."""
        return input_files(self.path, self.current.files)

    def on_swap(self, listener: Callable[[Runtime, Runtime], None]) -> None:
        """Call ``listener(old, new)`` after each swap, in the thread that reloaded."""
        self._listeners.append(listener)

    def changed(self) -> bool:
        """Whether the input files hold something else than what the last build read."""
        return input_digest(self.inputs()) != self.digest

    def reload(self) -> bool:
        """Build a new runtime from the file; swap it in, or keep the old one and record why.

        Blocking (it reads and compiles): call it off the event loop. Reloads are serialized.
        """
        with self._lock:
            return self._reload()

    def _reload(self) -> bool:
        started = time.perf_counter()
        self.digest = input_digest(self.inputs())
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
            try:
                listener(old, runtime)
            except Exception:  # a listener's bug must not undo or hide the swap
                logger.exception("config swap listener %r failed", listener)
        return True
