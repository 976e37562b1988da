"""Garbage collection for a server that holds many open streams.

CPython runs a full collection whenever the objects promoted to the oldest generation grow by
a quarter. A gateway relaying 1,000 streams keeps ~150k objects alive in that generation and
turns them over every few seconds, so full collections come every few seconds and each one
stops the event loop for ~100 ms (measured in the slow-streams benchmark): every stream
waiting on the loop pays it as latency. Reference counting frees almost everything a request
allocates; the cyclic collector is only needed for the few cycles (exceptions and their
tracebacks, mostly), and they can wait a while.

So, once the app has loaded: everything loaded so far is frozen out of the collector's sight
(it lives as long as the process), the young generations are collected as usual, and the full
collection runs on a clock instead of on allocation growth: when the worker is idle (no
request in flight) and ``FULL_COLLECTION_SECONDS`` have passed, or after
``LONGEST_WITHOUT_FULL_COLLECTION`` whatever the load. A busy worker thus pauses its open
streams for a full collection once every ten minutes, not every minute.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable
from typing import Final

#: Seconds between full collections when the worker has a moment with nothing in flight.
FULL_COLLECTION_SECONDS: Final = 60.0
#: Seconds a busy worker goes without a full collection at most: cyclic garbage waits this long.
LONGEST_WITHOUT_FULL_COLLECTION: Final = 600.0
#: How often the clock looks for an idle moment once a collection is due.
_IDLE_CHECK_SECONDS: Final = 1.0
#: Young collections per middle one (CPython's default is 10): the middle generation stays
#: small, so collecting it pauses the loop ~1 ms rather than ~7 ms with 1,000 streams open.
_MIDDLE: Final = 2
#: A threshold for the oldest generation that allocation never reaches.
_NEVER: Final = 1 << 30


def settle() -> None:
    """Freeze what startup loaded and stop allocation-driven full collections."""
    gc.collect()
    gc.freeze()
    young, _, _ = gc.get_threshold()
    gc.set_threshold(young, _MIDDLE, _NEVER)


async def collect_on_a_clock(
    idle: Callable[[], bool] = lambda: True,
    interval: float = FULL_COLLECTION_SECONDS,
    longest: float = LONGEST_WITHOUT_FULL_COLLECTION,
) -> None:
    """For as long as the app runs: a full collection once ``interval`` has passed and
    ``idle()`` says nothing is in flight, or once ``longest`` has passed regardless."""
    check = min(_IDLE_CHECK_SECONDS, interval)
    while True:
        await asyncio.sleep(interval)
        for _ in range(int((longest - interval) / check)):  # looking for an idle moment
            if idle():
                break
            await asyncio.sleep(check)
        gc.collect()
