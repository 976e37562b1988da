"""Stop work for a client that has gone away.

uvicorn does not cancel a request's task when its client disconnects; it only answers the
next ``receive()`` with ``http.disconnect`` and drops later writes. ``CancelOnDisconnect``
watches for that message and cancels the request's task, so an upstream call, a retry
back-off or a stream relay ends at once instead of running on for nobody. One small watcher
task per request, cancelled when the block ends: no task group, no task for the work itself.
"""

from __future__ import annotations

import asyncio
from types import TracebackType

from starlette.types import Receive


class ClientDisconnected(Exception):
    """The client went away before the work was done; nothing more is sent."""


class CancelOnDisconnect:
    """``async with CancelOnDisconnect(receive):`` — the block is cancelled if the client
    disconnects, and ``ClientDisconnected`` is raised in place of the cancellation."""

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self._task: asyncio.Task[object] | None = None
        self._watcher: asyncio.Task[None] | None = None
        self.disconnected = False

    async def __aenter__(self) -> CancelOnDisconnect:
        self._task = asyncio.current_task()
        self._watcher = asyncio.get_running_loop().create_task(self._watch())
        return self

    async def _watch(self) -> None:
        while (await self._receive())["type"] != "http.disconnect":
            pass
        self.disconnected = True
        assert self._task is not None
        self._task.cancel()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        assert self._watcher is not None and self._task is not None
        self._watcher.cancel()
        if not self.disconnected:
            return
        self._task.uncancel()  # the cancellation was ours: it must not count against the task
        if exc_type is not None and issubclass(exc_type, asyncio.CancelledError):
            raise ClientDisconnected from None
