"""Config hot reload: watch the config's directory, debounce, rebuild off the loop, swap.

Why a directory and a content digest rather than the file's own events: editors save by
writing a temp file and renaming it over the config, Kubernetes updates a mounted ConfigMap by
renaming the ``..data`` symlink to a new timestamped directory, and operators delete and
recreate files. A watch on the file itself loses track after any of these; a non-recursive
watch on its directory (and on the directory its symlinks resolve to) sees them all, and the
store's digest of the content decides whether there is anything to reload.

Bind mounts that deliver no events get a polling mode (``server.reload_poll_interval`` or
``GATEWAY_RELOAD_POLL``). In event mode a slow safety poll re-checks the digest too, so a lost
watch costs seconds, not correctness. ``SIGHUP`` forces a reload even when watching is off.

Each worker process runs its own reloader; the version is a digest of the content, so every
worker that read the same file serves the same version.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import threading
import weakref
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

from gateway.config.build import Runtime
from gateway.config.store import RuntimeStore, input_digest

if TYPE_CHECKING:
    from gateway.providers.transport import TransportPool

logger = logging.getLogger("gateway.config")

#: In event mode, re-check the digest this often even when no event arrives (a lost watch).
SAFETY_POLL_SECONDS: Final = 5.0

#: While a retired connection pool is still busy, how often to look whether it can be closed.
SWEEP_SECONDS: Final = 1.0

Mode = Literal["off", "events", "polling"]


def poll_interval_from_env(environ: dict[str, str] | None = None) -> float | None:
    """``GATEWAY_RELOAD_POLL``: seconds between polls; ``1``/``true`` mean one second."""
    value = (environ if environ is not None else os.environ).get("GATEWAY_RELOAD_POLL", "").strip()
    if value.lower() in ("", "0", "false", "no", "off"):
        return None
    if value.lower() in ("true", "yes", "on"):
        return 1.0
    try:
        seconds = float(value)
    except ValueError:
        logger.warning("GATEWAY_RELOAD_POLL=%r is not a number of seconds; using 1", value)
        return 1.0
    return seconds if seconds > 0 else None


@dataclass(frozen=True)
class WatchPlan:
    """How to watch, derived from the current snapshot; a change restarts the watch."""

    mode: Mode
    directories: tuple[str, ...] = ()
    interval: float = 1.0  # polling
    debounce: float = 0.3


def watched_directories(files: tuple[Path, ...]) -> tuple[str, ...]:
    """Each file's directory as named and as its symlinks resolve, when it exists."""
    directories: dict[str, None] = {}
    for path in files:
        try:
            resolved = path.resolve()
        except (OSError, RuntimeError):  # a symlink loop: watch where it is named
            resolved = path
        for candidate in (path.parent, resolved.parent):
            if candidate.is_dir():
                directories[str(candidate)] = None
    return tuple(directories)


class PoolRetention:
    """Close the HTTP pools no provider uses any more, without cutting anything in flight.

    A swap keeps the pools of providers whose connection settings did not change (they share a
    ``pool_key``). A pool whose key no current provider has is closed as soon as nothing can
    need it: once every older snapshot with a provider of that key is garbage, or earlier, once
    the pool has no request or response body open. A stream that started before the reload
    keeps its connection until it ends; a late retry of an old snapshot just opens a new
    pool, which the next reload's sweep closes in turn.
    """

    def __init__(
        self, store: RuntimeStore, transports: TransportPool, loop: asyncio.AbstractEventLoop
    ) -> None:
        self._store = store
        self._transports = transports
        self._loop = loop
        # Snapshots, not their adapters: a request holds its snapshot to the end, and an
        # adapter compiled by mypyc (gateway.native) cannot be weakly referenced.
        self._retired: weakref.WeakValueDictionary[int, Runtime] = weakref.WeakValueDictionary()
        self._sweeper: asyncio.Task[None] | None = None

    def on_swap(self, old: Runtime, new: Runtime) -> None:
        """A store listener; runs in the reloading thread, so it only schedules work."""
        keep = {adapter.pool_key for adapter in new.providers.values()}
        if any(adapter.pool_key not in keep for adapter in old.providers.values()):
            self._retired[id(old)] = old
        with contextlib.suppress(RuntimeError):  # the loop is closed: nothing left to close
            self._loop.call_soon_threadsafe(self._start_sweeping)

    def _start_sweeping(self) -> None:
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = self._loop.create_task(self._sweep_until_closed())

    async def _sweep_until_closed(self) -> None:
        while True:
            pending = await self.sweep()
            if not pending:
                return
            await asyncio.sleep(SWEEP_SECONDS)

    async def aclose(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper

    async def sweep(self) -> set[str]:
        """Close what can be closed now; return the retired keys still open (busy)."""
        current = {adapter.pool_key for adapter in self._store.current.providers.values()}
        retired = list(self._retired.values())
        alive = {adapter.pool_key for old in retired for adapter in old.providers.values()}
        alive -= current
        busy = {key for key in alive if key in self._transports and not self._transports.idle(key)}
        await self._transports.retain(current | busy)
        return busy | {key for key in alive if key in self._transports}


class ConfigReloader:
    """Runs in the app's lifespan: watches (or polls), reloads on SIGHUP, retains pools."""

    def __init__(
        self,
        store: RuntimeStore,
        transports: TransportPool | None = None,
        *,
        watch: bool = True,
        poll_interval: float | None = None,
    ) -> None:
        self.store = store
        self._transports = transports
        self._watch_allowed = watch
        self._poll_override = poll_interval
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._plan: WatchPlan | None = None
        self._replan = asyncio.Event()
        self._ready = asyncio.Event()
        self._watch_stop = asyncio.Event()
        self._sighup = False
        self._background: set[asyncio.Task[Any]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._retention: PoolRetention | None = None

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        if self._transports is not None:
            self._retention = PoolRetention(self.store, self._transports, self._loop)
            self.store.on_swap(self._retention.on_swap)
        self._install_sighup()
        self._task = asyncio.create_task(self._run(), name="gateway-config-reloader")
        # Serve once the watch is in place, so an edit right after startup is not missed.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), timeout=2.0)

    async def stop(self) -> None:
        if self._sighup and self._loop is not None:
            self._loop.remove_signal_handler(signal.SIGHUP)
            self._sighup = False
        self._watch_stop.set()
        for task in (self._task, *self._background):
            if task is not None:
                task.cancel()
        for task in (self._task, *self._background):
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if self._retention is not None:
            await self._retention.aclose()
        self.store.watching = "off"

    def _install_sighup(self) -> None:
        """SIGHUP → reload. Signal handlers exist only in the main thread (not in tests)."""
        if threading.current_thread() is not threading.main_thread() or self._loop is None:
            return
        sighup = getattr(signal, "SIGHUP", None)
        if sighup is None:
            return
        try:
            self._loop.add_signal_handler(sighup, self._on_sighup)
        except (NotImplementedError, RuntimeError, ValueError):
            return
        self._sighup = True

    def _on_sighup(self) -> None:
        logger.info("SIGHUP: reloading %s", self.store.path)
        self._spawn(self.reload(force=True))

    def _spawn(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # ------------------------------------------------------------------ reload

    async def reload(self, *, force: bool = False) -> bool | None:
        """Reload if the inputs changed (or ``force``); ``None`` when there was nothing to do.

        The build runs in a worker thread: compiling templates never blocks requests.
        """
        async with self._lock:
            if not force and not await asyncio.to_thread(self.store.changed):
                return None
            result = await asyncio.to_thread(self.store.reload)
        if self._plan is not None and self._plan != self.plan():
            self._replan.set()
            self._watch_stop.set()
        return result

    def plan(self) -> WatchPlan:
        server = self.store.current.server
        if not self._watch_allowed or not server.hot_reload:
            return WatchPlan("off")
        debounce = max(0.0, float(server.reload_debounce))
        interval = self._poll_override or server.reload_poll_interval
        directories = watched_directories(self.store.inputs())
        if interval or not directories:
            return WatchPlan("polling", directories, float(interval or 1.0), debounce)
        return WatchPlan("events", directories, SAFETY_POLL_SECONDS, debounce)

    # ------------------------------------------------------------------ watching

    async def _run(self) -> None:
        failures = 0
        while True:
            plan = self.plan()
            self._plan = plan
            self._replan.clear()
            self._watch_stop = asyncio.Event()
            self.store.watching = plan.mode
            try:
                if plan.mode == "off":
                    self._ready.set()
                    await self._replan.wait()
                elif plan.mode == "polling":
                    self._ready.set()
                    await self.reload()  # anything that changed while (re)starting
                    await self._poll(plan)
                else:
                    await self._watch(plan)
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception:
                failures += 1
                logger.exception("config watcher failed; restarting it")
                await asyncio.sleep(min(5.0, 0.1 * 2**failures))

    async def _watch(self, plan: WatchPlan) -> None:
        from watchfiles._rust_notify import RustNotify  # watchfiles' documented Rust backend

        quiet_ms = max(1, int(plan.debounce * 1000))
        logger.debug("watching %s for changes to %s", plan.directories, self.store.path)
        with RustNotify(list(plan.directories), False, False, 0, False, True) as notify:
            self._ready.set()
            await self.reload()  # checked once the watch exists: nothing slips in between
            while True:
                waiting = asyncio.ensure_future(
                    asyncio.to_thread(
                        notify.watch,
                        max(quiet_ms * 20, 2000),  # the longest a burst of writes is grouped
                        quiet_ms,  # this long without events ends a burst
                        int(plan.interval * 1000),  # the safety poll
                        self._watch_stop,
                    )
                )
                try:
                    result = await asyncio.shield(waiting)
                except asyncio.CancelledError:
                    # The thread must leave ``watch`` before the watcher is closed.
                    self._watch_stop.set()
                    with contextlib.suppress(Exception):
                        await waiting
                    raise
                if result == "stop":
                    return
                await self.reload()  # on events and on the safety poll's timeout alike
                if self._replan.is_set() or self.plan() != plan:
                    return  # e.g. a ConfigMap swap changed where the config resolves to

    def _digest(self) -> str:
        return input_digest(self.store.inputs())

    async def _poll(self, plan: WatchPlan) -> None:
        logger.debug("polling %s every %.2f s", self.store.path, plan.interval)
        while not self._replan.is_set():
            await asyncio.sleep(plan.interval)
            if not await asyncio.to_thread(self.store.changed):
                continue
            if plan.debounce:
                # Wait for the content to hold still, so a half-written file is not built.
                before = await asyncio.to_thread(self._digest)
                await asyncio.sleep(plan.debounce)
                if before != await asyncio.to_thread(self._digest):
                    continue
            await self.reload()
            if self.plan() != plan:
                return
