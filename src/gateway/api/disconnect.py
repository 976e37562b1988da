"""Stop work for a client that has gone away.

uvicorn does not cancel a request's task when its client disconnects; it only answers the
next ``receive()`` with ``http.disconnect`` and drops later writes. ``CancelOnDisconnect``
watches for that message and cancels the request's task, so an upstream call, a retry
back-off or a stream relay ends at once instead of running on for nobody. One small watcher
task per request: no task group, no task for the work itself.

The watcher is not cancelled when the block ends: uvicorn wakes a pending ``receive()`` with
``http.disconnect`` once the response is complete (or the connection is gone), and the
watcher then sees the work is over and returns. Cancelling it instead would leave a
``CancelledError`` whose traceback holds the watcher's frames in a reference cycle: garbage
for the cyclic collector on every request.
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
        self._watcher: asyncio.Task[None] | None = None  # held while the block runs
        self._over = False  # the block has ended: a later disconnect is nobody's business
        self.disconnected = False

    async def __aenter__(self) -> CancelOnDisconnect:
        self._task = asyncio.current_task()
        self._watcher = asyncio.get_running_loop().create_task(self._watch())
        return self

    async def _watch(self) -> None:
        while (await self._receive())["type"] != "http.disconnect":
            pass
        task, self._task = self._task, None
        if not self._over and task is not None:
            self.disconnected = True
            task.cancel()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._over = True
        self._watcher = None
        if not self.disconnected:
            self._task = None
            return
        task = asyncio.current_task()
        assert task is not None
        task.uncancel()  # the cancellation was ours: it must not count against the task
        if exc_type is not None and issubclass(exc_type, asyncio.CancelledError):
            raise ClientDisconnected from None
