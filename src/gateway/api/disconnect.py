"""Stop work for a client that has gone away.

uvicorn does not cancel a request's task when its client disconnects; it only answers the
next ``receive()`` with ``http.disconnect`` and drops later writes. ``CancelOnDisconnect``
watches for that message and cancels the request's task, so an upstream call, a retry
back-off or a stream relay ends at once instead of running on for nobody. One small watcher
task per request: no task group, no task for the work itself.

Most answers are over within milliseconds, so the watcher starts only once the block has run
``WATCH_AFTER_SECONDS``: a quick answer costs a timer, not a task. A client that leaves
sooner is noticed that much later, which for an LLM call (seconds) is nothing.

The watcher is not cancelled when the block ends: uvicorn wakes a pending ``receive()`` with
``http.disconnect`` once the response is complete (or the connection is gone), and the
watcher then sees the work is over and returns. Cancelling it instead would leave a
``CancelledError`` whose traceback holds the watcher's frames in a reference cycle: garbage
for the cyclic collector on every request.
"""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Final

from starlette.types import Receive


class ClientDisconnected(Exception):
    """The client went away before the work was done; nothing more is sent."""


#: Seconds a block runs before its client is watched.
WATCH_AFTER_SECONDS: Final = 0.05


class CancelOnDisconnect:
    """``async with CancelOnDisconnect(receive):`` — the block is cancelled if the client
    disconnects, and ``ClientDisconnected`` is raised in place of the cancellation."""

    def __init__(self, receive: Receive, watch_after: float = WATCH_AFTER_SECONDS) -> None:
        self._receive = receive
        self._watch_after = watch_after
        self._task: asyncio.Task[object] | None = None
        self._timer: asyncio.TimerHandle | None = None  # until the watcher starts
        self._watcher: asyncio.Task[None] | None = None  # held while the block runs
        self._over = False  # the block has ended: a later disconnect is nobody's business
        self.disconnected = False

    async def __aenter__(self) -> CancelOnDisconnect:
        self._task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        if self._watch_after > 0:
            self._timer = loop.call_later(self._watch_after, self._start_watching)
        else:
            self._start_watching()
        return self

    def _start_watching(self) -> None:
        self._timer = None
        if not self._over:
            self._watcher = asyncio.get_running_loop().create_task(self._watch())

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
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._watcher = None
        if not self.disconnected:
            self._task = None
            return
        task = asyncio.current_task()
        assert task is not None
        task.uncancel()  # the cancellation was ours: it must not count against the task
        if exc_type is not None and issubclass(exc_type, asyncio.CancelledError):
            raise ClientDisconnected from None
