"""Config hot reload: watch the file, debounce, rebuild off the request path, swap.

Placeholder kept minimal until the hot-reload work lands: it polls the file's identity
(inode, size, mtime, through symlinks) so ConfigMap swaps and rename-saves are seen.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os

from gateway.config.store import RuntimeStore

logger = logging.getLogger("gateway.config")


def _identity(path: str) -> tuple[int, int, int, int] | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return (stat.st_ino, stat.st_dev, stat.st_size, stat.st_mtime_ns)


class ConfigWatcher:
    def __init__(self, store: RuntimeStore, interval: float | None = None) -> None:
        self.store = store
        self.interval = interval or store.current.server.reload_poll_interval or 1.0
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="config-watcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        last = _identity(self.store.path)
        while True:
            await asyncio.sleep(self.interval)
            current = _identity(self.store.path)
            if current != last and current is not None:
                last = current
                await asyncio.to_thread(self.store.reload)
